import { ValidationError } from '@fleet/core';

/** Where fleetd's API listens by default: fleet's socket-activated unix socket. */
export const DEFAULT_ENDPOINT = 'unix:///var/run/fleet.sock';

/** fleetd's API over a unix domain socket. */
export interface UnixEndpoint {
  readonly kind: 'unix';
  readonly socketPath: string;
  /** The endpoint as the user wrote it, for messages. */
  readonly display: string;
}

/** fleetd's API over TCP, plain or TLS, optionally under a path prefix. */
export interface TcpEndpoint {
  readonly kind: 'tcp';
  readonly tls: boolean;
  /** Host name or address, IPv6 without brackets. */
  readonly host: string;
  readonly port: number;
  /** `/prefix` from `http://h:p/prefix`, without a trailing slash; '' if none. */
  readonly pathPrefix: string;
  readonly display: string;
}

export type Endpoint = UnixEndpoint | TcpEndpoint;

function invalid(value: string, why: string): ValidationError {
  return new ValidationError(`invalid endpoint ${JSON.stringify(value)}: ${why}`, {
    fields: { endpoint: value },
  });
}

/**
 * Parses one fleetctl `--endpoint` value: `unix:///path` (or `file:///path`),
 * `http://host[:port][/prefix]` or `https://…`. A bare absolute path is taken
 * as a unix socket (ours; fleet refused it with "URL scheme undefined").
 *
 * @throws ValidationError naming the value and what is wrong with it.
 */
export function parseEndpoint(value: string): Endpoint {
  const text = value.trim();
  if (text === '') throw invalid(value, 'endpoint cannot be empty');
  if (text.startsWith('/')) return { kind: 'unix', socketPath: text, display: text };
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(text)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    throw invalid(value, 'URL scheme undefined (use unix:///path, http://host:port or https://host:port)');
  }
  if (scheme === 'unix' || scheme === 'file') {
    const rest = text.slice(scheme.length + 3);
    if (!rest.startsWith('/')) {
      // Fleet's check: "unix://var/run/fleet.sock" parses as host "var".
      const host = rest.split('/')[0] ?? '';
      throw invalid(
        value,
        `unable to connect to host ${JSON.stringify(host)} with scheme ${JSON.stringify(scheme)} ` +
          `(a socket path needs three slashes: ${scheme}:///${rest})`,
      );
    }
    return { kind: 'unix', socketPath: decodeURIComponent(rest), display: text };
  }
  if (scheme !== 'http' && scheme !== 'https') {
    throw invalid(value, `unsupported scheme ${JSON.stringify(scheme)} (use unix, http or https)`);
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid(value, 'not a valid URL');
  }
  if (url.hostname === '') throw invalid(value, 'no host');
  const tls = scheme === 'https';
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return {
    kind: 'tcp',
    tls,
    host,
    port: url.port === '' ? (tls ? 443 : 80) : Number(url.port),
    pathPrefix: url.pathname.replace(/\/+$/, ''),
    display: text,
  };
}
