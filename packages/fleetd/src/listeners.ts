import { chmodSync, existsSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect } from 'node:net';
import { ValidationError, errorMessage } from '@fleet/core';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface ListenerSpec {
  /** Unix socket path (mode 0660). */
  readonly socketPath?: string;
  /** TCP listeners `host:port`. */
  readonly tcp?: readonly string[];
  /** TLS material for TCP listeners (required for any non-loopback address). */
  readonly tls?: { readonly cert: string; readonly key: string; readonly ca: string };
  /** Inherited sockets from systemd socket activation (LISTEN_FDS). */
  readonly inheritedFds?: readonly number[];
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host.startsWith('127.') || host === '[::1]';
}

/** Splits `host:port` / `[v6]:port`. */
function hostPort(spec: string): { host: string; port: number } {
  const i = spec.lastIndexOf(':');
  return { host: spec.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(spec.slice(i + 1)) };
}

/**
 * The file descriptors systemd passed us (socket activation, as fleet used):
 * LISTEN_PID must be us; fds start at 3.
 */
export function socketActivationFds(env: NodeJS.ProcessEnv = process.env): number[] {
  if (env['LISTEN_PID'] !== String(process.pid)) return [];
  const n = Number(env['LISTEN_FDS'] ?? '0');
  if (!Number.isInteger(n) || n <= 0) return [];
  return Array.from({ length: n }, (_, i) => 3 + i);
}

/** True if something accepts connections on the unix socket (another fleetd). */
function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/**
 * Opens every API listener. A TCP listener on a non-loopback address must use
 * TLS with client certificates (fleet's API had no authentication at all);
 * refusing to start is better than serving the cluster to the network.
 */
export async function openListeners(spec: ListenerSpec, handler: Handler): Promise<Server[]> {
  for (const t of spec.tcp ?? []) {
    const { host } = hostPort(t);
    if (!isLoopback(host) && !spec.tls) {
      throw new ValidationError(
        `refusing to listen on ${t} without TLS: set api_certfile, api_keyfile and api_cafile (client certificates are required), or listen on 127.0.0.1`,
      );
    }
  }
  const servers: Server[] = [];
  const listen = (server: Server, arg: Parameters<Server['listen']>[0]): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(arg, () => {
        server.off('error', reject);
        resolve();
      });
    });
  try {
    for (const fd of spec.inheritedFds ?? []) {
      const s = createHttpServer(handler);
      await listen(s, { fd });
      servers.push(s);
    }
    if (spec.socketPath) {
      const path = spec.socketPath;
      if (existsSync(path)) {
        if (!statSync(path).isSocket()) throw new ValidationError(`${path} exists and is not a socket`);
        if (await socketInUse(path))
          throw new ValidationError(`${path} is in use (is another fleetd running?)`);
        unlinkSync(path);
      }
      const s = createHttpServer(handler);
      await listen(s, { path });
      // Access to the API is access to the socket: not world-writable (R7).
      chmodSync(path, 0o660);
      servers.push(s);
    }
    for (const t of spec.tcp ?? []) {
      const { host, port } = hostPort(t);
      const s = spec.tls
        ? createHttpsServer(
            {
              cert: readFileSync(spec.tls.cert),
              key: readFileSync(spec.tls.key),
              ca: readFileSync(spec.tls.ca),
              requestCert: true,
              rejectUnauthorized: true,
            },
            handler,
          )
        : createHttpServer(handler);
      await listen(s, { host, port });
      servers.push(s);
    }
  } catch (err) {
    await closeListeners(servers);
    throw err instanceof ValidationError
      ? err
      : new ValidationError(`cannot open API listener: ${errorMessage(err)}`);
  }
  return servers;
}

export async function closeListeners(servers: readonly Server[]): Promise<void> {
  await Promise.all(
    servers.map(
      (s) =>
        new Promise<void>((resolve) => {
          s.close(() => resolve());
          s.closeAllConnections?.();
        }),
    ),
  );
}
