/**
 * The project's error hierarchy. Raw errors (etcd3, D-Bus, fs, HTTP) are
 * translated into one of these at the boundary where they occur; the API maps
 * them to fleet's error envelope and the CLI to one-line messages.
 */

/** Which kind of failure an error is; stable, used for mapping to HTTP codes. */
export type FleetErrorKind = 'validation' | 'not-found' | 'conflict' | 'unavailable' | 'internal';

export interface FleetErrorOptions {
  /** Structured context (unit name, key, value …) for logs and API consumers. */
  readonly fields?: Readonly<Record<string, unknown>>;
  readonly cause?: unknown;
}

/** Base class: a message meant for a user, plus a kind and structured fields. */
export abstract class FleetError extends Error {
  abstract readonly kind: FleetErrorKind;
  /** True when retrying the same operation later may succeed. */
  readonly retryable: boolean = false;
  readonly fields: Readonly<Record<string, unknown>>;

  constructor(message: string, options: FleetErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.fields = options.fields ?? {};
  }
}

/** Input that can never succeed as given (bad unit file, name, body, flag, config value). */
export class ValidationError extends FleetError {
  readonly kind = 'validation' as const;
}

/** The named thing (unit, machine, state) does not exist. */
export class NotFoundError extends FleetError {
  readonly kind = 'not-found' as const;
}

/** The request conflicts with current state (duplicate machine ID, lost leadership, compare failed). */
export class ConflictError extends FleetError {
  readonly kind = 'conflict' as const;
}

/** A dependency (etcd, systemd) cannot be reached now; the same request may succeed later. */
export class UnavailableError extends FleetError {
  readonly kind = 'unavailable' as const;
  override readonly retryable = true;
}

/** A bug or an unexpected condition; never a user's mistake. */
export class InternalError extends FleetError {
  readonly kind = 'internal' as const;
}

export function isFleetError(err: unknown): err is FleetError {
  return err instanceof FleetError;
}

/** A human-readable one-line message for any thrown value. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
