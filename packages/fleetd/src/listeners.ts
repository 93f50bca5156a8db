import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { ApiServer } from '@fleet/api';
import { ValidationError, errorMessage } from '@fleet/core';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface ListenerSpec {
  /** Unix socket path (mode 0660). */
  readonly socketPath?: string;
  /** TCP listeners `host:port`. */
  readonly tcp?: readonly string[];
  /** TLS material (file paths) for TCP listeners; required for any non-loopback address. */
  readonly tls?: { readonly cert: string; readonly key: string; readonly ca: string };
  /** Inherited sockets from systemd socket activation (LISTEN_FDS). */
  readonly inheritedFds?: readonly number[];
  readonly version?: string;
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

/** Splits `host:port` / `[v6]:port`. */
function hostPort(spec: string): { host: string; port: number } {
  const i = spec.lastIndexOf(':');
  return { host: spec.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(spec.slice(i + 1)) };
}

/** Every API listener of a fleetd, opened and closed together. */
export class Listeners {
  private readonly servers: ApiServer[] = [];
  private readonly inherited: Server[] = [];

  private constructor() {}

  /**
   * Opens the unix socket, the TCP listeners and any socket-activated fds.
   * TCP without TLS is refused off loopback (R7). If one fails, the others
   * are closed and a ValidationError names the listener.
   */
  static async open(spec: ListenerSpec, handler: Handler): Promise<Listeners> {
    const l = new Listeners();
    try {
      const tls = spec.tls
        ? {
            cert: readFileSync(spec.tls.cert),
            key: readFileSync(spec.tls.key),
            ca: readFileSync(spec.tls.ca),
          }
        : undefined;
      if (spec.socketPath) {
        l.servers.push(
          new ApiServer(handler, { unix: { path: spec.socketPath }, version: spec.version ?? '' }),
        );
      }
      for (const t of spec.tcp ?? []) {
        const { host, port } = hostPort(t);
        l.servers.push(
          new ApiServer(handler, {
            tcp: { host, port, ...(tls ? { tls } : { allowPlaintextLoopback: true }) },
            version: spec.version ?? '',
          }),
        );
      }
      for (const s of l.servers) await s.start();
      for (const fd of spec.inheritedFds ?? []) {
        const server = createServer(handler);
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ fd }, () => resolve());
        });
        l.inherited.push(server);
      }
    } catch (err) {
      await l.close();
      throw err instanceof ValidationError
        ? err
        : new ValidationError(`cannot open API listener: ${errorMessage(err)}`);
    }
    return l;
  }

  async close(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.close()));
    await Promise.all(
      this.inherited.splice(0).map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
  }
}
