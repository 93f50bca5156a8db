import { chmod, chown, lstat, unlink } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, isIPv4, isIPv6, type Socket } from 'node:net';
import { ConflictError, ValidationError } from '@fleet/core';

/**
 * The listeners of the API: a unix socket (fleet's only way in, so access is
 * the socket's permissions) and optionally TCP — with TLS and required client
 * certificates, or plain HTTP bound to loopback when explicitly asked (R7).
 */

export interface UnixListenOptions {
  /** Socket path, e.g. `/var/run/fleet.sock`. A stale socket there is replaced; a live one is refused. */
  readonly path: string;
  /** Permissions of the socket; never world-writable. @default 0o660 */
  readonly mode?: number;
  /** Group that may use the socket (with mode 0660). @default the process's group */
  readonly gid?: number;
}

export interface TlsListenOptions {
  /** Server certificate and key (PEM). */
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  /** CA (PEM) that client certificates must chain to. Required: clients must present one. */
  readonly ca: string | Buffer;
}

export interface TcpListenOptions {
  readonly host: string;
  /** 0 picks a free port (see {@link ApiServer.tcpPort}). */
  readonly port: number;
  /** TLS with client certificates; required unless `allowPlaintextLoopback`. */
  readonly tls?: TlsListenOptions;
  /** Serve plain HTTP; only accepted for a loopback host. @default false */
  readonly allowPlaintextLoopback?: boolean;
}

export interface ApiServerOptions {
  readonly unix?: UnixListenOptions;
  readonly tcp?: TcpListenOptions;
  /** Sent as `Server: fleetd/<version>` on answers to malformed HTTP. @default 'unknown' */
  readonly version?: string;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
type ServerState = 'new' | 'starting' | 'listening' | 'closing' | 'closed';

/** True for `localhost`, 127.0.0.0/8 and ::1 (also as IPv4-mapped). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (h === 'localhost') return true;
  if (isIPv4(h)) return h.startsWith('127.');
  if (isIPv6(h)) return h === '::1' || /^::ffff:127\./.test(h) || h === '0:0:0:0:0:0:0:1';
  return false;
}

/**
 * Serves one request handler (see {@link createApiHandler}) on a unix
 * socket and/or TCP. Lifecycle: `start()` once, `close()` any number of times.
 */
export class ApiServer {
  private readonly servers: Server[] = [];
  private stateNow: ServerState = 'new';
  private closing: Promise<void> | undefined;
  private unixPath: string | undefined;
  private port: number | undefined;

  constructor(
    private readonly handler: Handler,
    private readonly options: ApiServerOptions,
  ) {
    if (options.unix === undefined && options.tcp === undefined) {
      throw new ValidationError('ApiServer needs a unix socket path or a TCP address');
    }
    if (options.unix !== undefined && ((options.unix.mode ?? 0o660) & 0o002) !== 0) {
      throw new ValidationError(`API socket mode ${(options.unix.mode ?? 0).toString(8)} is world-writable`);
    }
    const tcp = options.tcp;
    if (tcp !== undefined && tcp.tls === undefined) {
      if (!tcp.allowPlaintextLoopback) {
        throw new ValidationError(
          'a TCP API listener needs TLS with client certificates (cert, key, ca); ' +
            'plain HTTP is allowed only on a loopback address when explicitly enabled',
        );
      }
      if (!isLoopbackHost(tcp.host)) {
        throw new ValidationError(`plain HTTP API listener refused on non-loopback address ${tcp.host}`);
      }
    }
  }

  get state(): ServerState {
    return this.stateNow;
  }

  /** The TCP port actually bound (useful with port 0), once started. */
  get tcpPort(): number | undefined {
    return this.port;
  }

  /** Opens every listener; if one fails, the others are closed and the error is thrown. */
  async start(): Promise<void> {
    if (this.stateNow !== 'new') throw new Error(`ApiServer cannot start from state ${this.stateNow}`);
    this.stateNow = 'starting';
    try {
      if (this.options.unix !== undefined) await this.listenUnix(this.options.unix);
      if (this.options.tcp !== undefined) await this.listenTcp(this.options.tcp);
      this.stateNow = 'listening';
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** Stops accepting, ends open connections and removes the socket file. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing;
  }

  private async closeNow(): Promise<void> {
    this.stateNow = 'closing';
    await Promise.all(
      this.servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
    if (this.unixPath !== undefined) await unlink(this.unixPath).catch(() => undefined);
    this.stateNow = 'closed';
  }

  private configure(server: Server): void {
    // Slow or stuck clients must not hold a connection forever.
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    server.keepAliveTimeout = 5_000;
    const version = this.options.version ?? 'unknown';
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      // Malformed HTTP never reaches the handler; answer it in the API's own shape.
      if (err.code === 'ECONNRESET' || !socket.writable) {
        socket.destroy();
        return;
      }
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      const reason = status === 431 ? 'Request Header Fields Too Large' : 'Bad Request';
      const body = `${JSON.stringify({ error: { code: status, message: `malformed HTTP request: ${reason.toLowerCase()}` } })}\n`;
      socket.end(
        `HTTP/1.1 ${status} ${reason}\r\nServer: fleetd/${version}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    });
    this.servers.push(server);
  }

  private async listenUnix(opts: UnixListenOptions): Promise<void> {
    await removeStaleSocket(opts.path);
    const server = createHttpServer(this.handler);
    this.configure(server);
    const mode = opts.mode ?? 0o660;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // The socket is created inside listen(), synchronously: a restrictive
      // umask around that call means it never exists with wider permissions.
      let previous: number | undefined;
      try {
        previous = process.umask(0o777 & ~mode);
      } catch {
        // umask cannot be changed in a worker thread; chmod below still applies.
      }
      try {
        server.listen(opts.path, () => {
          server.off('error', reject);
          resolve();
        });
      } finally {
        if (previous !== undefined) process.umask(previous);
      }
    });
    this.unixPath = opts.path;
    await chmod(opts.path, mode);
    if (opts.gid !== undefined) await chown(opts.path, -1, opts.gid);
  }

  private async listenTcp(opts: TcpListenOptions): Promise<void> {
    const server: Server =
      opts.tls === undefined
        ? createHttpServer(this.handler)
        : createHttpsServer(
            {
              cert: opts.tls.cert,
              key: opts.tls.key,
              ca: opts.tls.ca,
              requestCert: true,
              rejectUnauthorized: true,
              minVersion: 'TLSv1.2',
            },
            this.handler,
          );
    this.configure(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address();
    this.port = typeof addr === 'object' && addr !== null ? addr.port : undefined;
  }
}

/**
 * Removes a socket file left by a fleetd that died, but never a live socket
 * (another fleetd serving) nor a file that is not a socket.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!isSocket) throw new ValidationError(`${path} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new ConflictError(`another process is already serving on ${path}`);
  await unlink(path);
}
