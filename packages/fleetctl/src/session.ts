import { readFileSync } from 'node:fs';
import { FleetClient, parseEndpoint } from '@fleet/client';
import { errorMessage, type Machine } from '@fleet/core';
import type { CommandInfo } from './command.js';
import { UsageError } from './errors.js';
import type { GlobalOptions } from './global-options.js';
import type { Io } from './io.js';
import { openTunnel, type SshSettings, type Tunnel } from './ssh.js';
import { FLEETCTL_VERSION } from './version.js';

/** Default interval of every poll loop; one block attempt is 8 of them (2 s). */
export const DEFAULT_POLL_INTERVAL_MS = 250;

/**
 * What a command runs with: the io, the compiled global options, a lazily
 * created API client and a per-invocation cache of machines (fleet cached
 * them for the life of the command too).
 */
export class Session {
  private clientPromise: Promise<FleetClient> | undefined;
  private machinesPromise: Promise<Map<string, Machine>> | undefined;
  private tunnel: Tunnel | undefined;
  private fleetClient: FleetClient | undefined;
  private machinesRefetched = false;

  constructor(
    readonly io: Io,
    readonly globals: GlobalOptions,
    /** Every command, for `help`. */
    readonly commands: readonly CommandInfo[],
  ) {}

  /** Writes a line to stdout. */
  out(line: string): void {
    this.io.stdout.write(`${line}\n`);
  }

  /** Writes a line to stderr. */
  err(line: string): void {
    this.io.stderr.write(`${line}\n`);
  }

  debug(line: string): void {
    if (this.globals.debug) this.err(`DEBUG: ${line}`);
  }

  get pollIntervalMs(): number {
    return this.io.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  }

  /** Resolves after `ms`, or early (false) when the io's signal aborts. */
  sleep(ms: number): Promise<boolean> {
    const signal = this.io.signal;
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onAbort = (): void => {
        clearTimeout(timer);
        resolve(false);
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve(true);
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  get aborted(): boolean {
    return this.io.signal?.aborted ?? false;
  }

  /** `~/x` → `$HOME/x`. */
  expandHome(path: string): string {
    if (path !== '~' && !path.startsWith('~/')) return path;
    return `${this.io.env.HOME ?? ''}${path.slice(1)}`;
  }

  /** ssh settings from the global flags, with per-command port and agent forwarding. */
  ssh(port = 22, forwardAgent = false): SshSettings {
    const g = this.globals;
    return {
      binary: this.io.env.FLEETCTL_SSH_BINARY || 'ssh',
      username: g.sshUsername,
      port,
      strictHostKeyChecking: g.strictHostKeyChecking,
      knownHostsFile: this.expandHome(g.knownHostsFile),
      timeoutSec: g.sshTimeout,
      tunnel: g.tunnel,
      forwardAgent,
    };
  }

  /** The API client, created on first use (through the `--tunnel` if one is asked for). */
  client(): Promise<FleetClient> {
    this.clientPromise ??= this.createClient();
    return this.clientPromise;
  }

  private async createClient(): Promise<FleetClient> {
    const g = this.globals;
    const endpoints = g.endpoint.split(',').map((e) => e.trim());
    const first = endpoints[0] ?? '';
    if (endpoints.length > 1)
      this.err(`WARNING: multiple endpoints provided but only the first (${first}) is used`);
    let endpoint;
    try {
      endpoint = parseEndpoint(first);
    } catch (err) {
      throw new UsageError(`Unable to initialize client: ${errorMessage(err)}`);
    }
    const tls = {
      ca: this.readTlsFile('--ca-file', g.caFile),
      cert: this.readTlsFile('--cert-file', g.certFile),
      key: this.readTlsFile('--key-file', g.keyFile),
    };
    if (g.tunnel !== '') {
      const remote = endpoint.kind === 'unix' ? endpoint.socketPath : `${endpoint.host}:${endpoint.port}`;
      this.tunnel = await openTunnel(this.io, this.ssh(), remote);
      this.debug(`tunnel through ${g.tunnel}: ${this.tunnel.socketPath} → ${remote}`);
    }
    this.fleetClient = new FleetClient({
      endpoint: first,
      requestTimeoutMs: g.requestTimeout * 1000,
      tls,
      userAgent: `fleetctl/${FLEETCTL_VERSION}`,
      dialSocketPath: this.tunnel?.socketPath,
      onRequest: (e) =>
        this.debug(`${e.method} ${e.path} → ${e.status ?? 'no response'} (${e.durationMs} ms)`),
    });
    return this.fleetClient;
  }

  private readTlsFile(flag: string, path: string): Buffer | undefined {
    if (path === '') return undefined;
    try {
      return readFileSync(this.expandHome(path));
    } catch (err) {
      throw new UsageError(`Unable to initialize client: cannot read ${flag} ${path}: ${errorMessage(err)}`);
    }
  }

  /** Live machines by ID, fetched once per invocation. */
  machines(): Promise<Map<string, Machine>> {
    this.machinesPromise ??= this.client()
      .then((c) => c.listMachines())
      .then((list) => new Map(list.map((m) => [m.id, m])));
    // A failed fetch is not cached: the next caller tries again.
    this.machinesPromise.catch(() => (this.machinesPromise = undefined));
    return this.machinesPromise;
  }

  /**
   * One machine. An unknown ID refetches the list, once per invocation: the
   * machine may have joined after the first fetch.
   */
  async machine(id: string): Promise<Machine | undefined> {
    const known = (await this.machines()).get(id);
    if (known !== undefined || this.machinesRefetched) return known;
    this.machinesRefetched = true;
    this.machinesPromise = undefined;
    return (await this.machines()).get(id);
  }

  /** Closes the client and the tunnel. */
  close(): void {
    this.fleetClient?.close();
    this.tunnel?.close();
  }
}
