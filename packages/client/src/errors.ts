import { FleetError, UnavailableError, type FleetErrorKind, type FleetErrorOptions } from '@fleet/core';

function kindOfStatus(status: number): FleetErrorKind {
  if (status === 400 || status === 405 || status === 415) return 'validation';
  if (status === 404) return 'not-found';
  if (status === 409) return 'conflict';
  if (status === 503) return 'unavailable';
  return 'internal';
}

/**
 * fleetd answered with a non-2xx status. The message keeps the shape fleet's
 * fleetctl printed (`googleapi: Error 404: unit does not exist`) because users
 * grep for it; `status` and `apiMessage` carry the parts.
 */
export class ApiError extends FleetError {
  readonly kind: FleetErrorKind;
  override readonly retryable: boolean;

  constructor(
    /** The HTTP status (fleet's envelope repeats it as `error.code`). */
    readonly status: number,
    /** The envelope's `error.message`, or the status text when there was no envelope. */
    readonly apiMessage: string,
    options: FleetErrorOptions = {},
  ) {
    super(apiErrorText(status, apiMessage), options);
    this.kind = kindOfStatus(status);
    this.retryable = status === 503;
  }
}

function apiErrorText(status: number, message: string): string {
  let text = `googleapi: Error ${status}: ${message}`;
  // fleetd answers 503 only when it cannot reach etcd; say so even if the
  // server's own text does not.
  if (status === 503 && !/etcd/i.test(message)) text += ' (fleetd cannot reach etcd)';
  return text;
}

/**
 * No HTTP answer at all: the socket is missing or refused, the host is
 * unknown, or the request timed out. Distinct from ApiError so callers can
 * tell "fleetd said no" from "fleetd is not there".
 */
export class EndpointUnreachableError extends UnavailableError {
  constructor(
    /** The endpoint as configured, e.g. `unix:///var/run/fleet.sock`. */
    readonly endpoint: string,
    /** Why, in a few words (`connection refused`, `no answer within 3s`). */
    readonly reason: string,
    options: FleetErrorOptions = {},
  ) {
    super(`cannot reach fleetd at ${endpoint}: ${reason}`, options);
  }
}

/** fleetd answered 2xx with a body that is not what API v1 promises. */
export class ProtocolError extends FleetError {
  readonly kind = 'internal' as const;
}
