import http from 'node:http';
import https from 'node:https';
import {
  ErrorEnvelopeSchema,
  MachinePageSchema,
  UnitPageSchema,
  UnitSchema,
  UnitStatePageSchema,
  UnitStateSchema,
  type JobState,
  type Machine,
  type MachinePatchOp,
  type Unit,
  type UnitOption,
  type UnitState,
} from '@fleet/core';
import { DEFAULT_ENDPOINT, parseEndpoint, type Endpoint } from './endpoint.js';
import { ApiError, EndpointUnreachableError, ProtocolError } from './errors.js';

/** Root of fleet's HTTP API v1. */
export const API_ROOT = '/fleet/v1/';

/**
 * Our route for running `systemctl status` / `journalctl` on a unit's machine
 * through fleetd (`{root}{UNIT_COMMANDS_RESOURCE}/{unit}/status|journal`).
 * Not part of fleet's API; kept in one place in case the server moves it.
 */
export const UNIT_COMMANDS_RESOURCE = 'x-unit-commands';

/** @default 3 s, fleetctl's `--request-timeout`. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 3000;

/** TLS material for `https://` endpoints (file contents, not paths). */
export interface FleetClientTls {
  readonly ca?: string | Buffer;
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
}

/** One finished HTTP exchange, for `--debug` logging. */
export interface RequestEvent {
  readonly method: string;
  readonly path: string;
  /** Undefined when no response arrived. */
  readonly status: number | undefined;
  readonly durationMs: number;
}

export interface FleetClientOptions {
  /**
   * `unix:///path`, `http://host:port[/prefix]` or `https://…`.
   * @default 'unix:///var/run/fleet.sock'
   */
  readonly endpoint?: string;
  /**
   * Time allowed for one request, connection to last byte.
   * @default 3000
   */
  readonly requestTimeoutMs?: number;
  readonly tls?: FleetClientTls;
  /** @default 'fleet-ts-client' */
  readonly userAgent?: string;
  /**
   * Dial this unix socket instead of the endpoint's address, keeping the
   * endpoint's Host header, path prefix and TLS. fleetctl's `--tunnel`
   * points it at a local socket that ssh forwards to the real endpoint.
   */
  readonly dialSocketPath?: string;
  /** Called after every request (fleetctl `--debug`). */
  readonly onRequest?: (event: RequestEvent) => void;
}

/** What `systemctl status` / `journalctl` printed on the unit's machine, and its exit code. */
export interface UnitCommandResult {
  readonly exitCode: number;
  readonly output: string;
}

/** Filters of `GET /state`. */
export interface UnitStateFilter {
  readonly machineID?: string;
  readonly unitName?: string;
}

/** Query of the journal route: `journalctl -n lines --output output`. */
export interface JournalQuery {
  /** @default 10 */
  readonly lines?: number;
  /** @default 'short' */
  readonly output?: string;
}

interface RawResponse {
  readonly status: number;
  readonly body: unknown;
}

type Query = Readonly<Record<string, string | undefined>>;

interface Schema<T> {
  safeParse(value: unknown): { success: true; data: T } | { success: false; error: { message: string } };
}

/** Guards against a server that keeps returning the same page token. */
const MAX_PAGES = 100_000;

/**
 * A client of fleet's HTTP API v1 that sends what fleet's own fleetctl sent
 * (fleet-compat §6): `?alt=json` on every request, percent-encoded unit names,
 * alphabetical JSON keys, `Host: domain-sock` over a unix socket. Responses
 * are validated with the shared zod schemas.
 *
 * Errors: ApiError for a non-2xx answer, EndpointUnreachableError when no
 * answer came, ProtocolError for an answer that is not API v1.
 */
export class FleetClient {
  /** The parsed endpoint this client talks to. */
  readonly endpoint: Endpoint;
  private readonly timeoutMs: number;
  private readonly agent: http.Agent;
  private readonly userAgent: string;
  private closed = false;

  constructor(private readonly options: FleetClientOptions = {}) {
    this.endpoint = parseEndpoint(options.endpoint ?? DEFAULT_ENDPOINT);
    this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.userAgent = options.userAgent ?? 'fleet-ts-client';
    // Keep-alive: fleetctl polls every 250 ms while it waits; one connection
    // serves the whole wait.
    const tlsEndpoint = this.endpoint.kind === 'tcp' && this.endpoint.tls;
    this.agent = tlsEndpoint
      ? new https.Agent({ keepAlive: true, ...options.tls })
      : new http.Agent({ keepAlive: true });
  }

  /** Every unit, following `nextPageToken` until it is absent. */
  async listUnits(): Promise<Unit[]> {
    return this.paged('units', {}, UnitPageSchema, (page) => page.units);
  }

  /** The unit, or undefined when fleetd answers 404. */
  async getUnit(name: string): Promise<Unit | undefined> {
    return this.getOptional(`units/${encodeURIComponent(name)}`, UnitSchema);
  }

  /**
   * Creates (or, for an existing unit with different options, replaces) a
   * unit: `PUT units/{name}` with `{"name","options"}` as fleet's fleetctl
   * sent it; `desiredState` is added only when given.
   */
  async createUnit(name: string, options: readonly UnitOption[], desiredState?: JobState): Promise<void> {
    const body: Record<string, unknown> = {};
    if (desiredState !== undefined) body.desiredState = desiredState;
    body.name = name;
    body.options = options.map((o) => ({ name: o.name, section: o.section, value: o.value }));
    await this.send('PUT', `units/${encodeURIComponent(name)}`, {}, body);
  }

  /** `PUT units/{name}` with `{"desiredState","name"}`. */
  async setUnitTargetState(name: string, desiredState: JobState): Promise<void> {
    await this.send('PUT', `units/${encodeURIComponent(name)}`, {}, { desiredState, name });
  }

  /** `DELETE units/{name}`; a 404 is an ApiError the caller may ignore. */
  async destroyUnit(name: string): Promise<void> {
    await this.send('DELETE', `units/${encodeURIComponent(name)}`);
  }

  /** Reported unit states, optionally filtered, following every page. */
  async listUnitStates(filter: UnitStateFilter = {}): Promise<UnitState[]> {
    return this.paged(
      'state',
      { machineID: filter.machineID, unitName: filter.unitName },
      UnitStatePageSchema,
      (page) => page.states,
    );
  }

  /** The unit's reported state, or undefined when fleetd answers 404. */
  async getUnitState(name: string): Promise<UnitState | undefined> {
    return this.getOptional(`state/${encodeURIComponent(name)}`, UnitStateSchema);
  }

  /** Live machines, following every page. */
  async listMachines(): Promise<Machine[]> {
    return this.paged('machines', {}, MachinePageSchema, (page) => page.machines);
  }

  /** `PATCH machines` with JSON-patch-like operations on dynamic metadata. */
  async patchMachineMetadata(ops: readonly MachinePatchOp[]): Promise<void> {
    const body = ops.map((op) => {
      const o: Record<string, unknown> = { op: op.op, path: op.path };
      if (op.value !== undefined && op.value !== null) o.value = op.value;
      return o;
    });
    await this.send('PATCH', 'machines', {}, body);
  }

  /** Ours: `systemctl status -l {unit}` run by fleetd on the unit's machine. */
  async unitStatus(name: string): Promise<UnitCommandResult> {
    const res = await this.send('GET', `${UNIT_COMMANDS_RESOURCE}/${encodeURIComponent(name)}/status`);
    return this.commandResult(res);
  }

  /** Ours: `journalctl --unit {unit} -n {lines} --output {output}` on the unit's machine. */
  async unitJournal(name: string, query: JournalQuery = {}): Promise<UnitCommandResult> {
    const res = await this.send('GET', `${UNIT_COMMANDS_RESOURCE}/${encodeURIComponent(name)}/journal`, {
      lines: String(query.lines ?? 10),
      output: query.output ?? 'short',
    });
    return this.commandResult(res);
  }

  /** Drops kept-alive connections. Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.agent.destroy();
  }

  private commandResult(res: RawResponse): UnitCommandResult {
    const body = res.body as { exitCode?: unknown; output?: unknown } | undefined;
    if (
      typeof body !== 'object' ||
      body === null ||
      typeof body.exitCode !== 'number' ||
      !Number.isInteger(body.exitCode) ||
      typeof body.output !== 'string'
    ) {
      throw new ProtocolError(
        `unexpected response from fleetd at ${this.endpoint.display}: ` +
          'expected {"exitCode":<int>,"output":"<text>"}',
      );
    }
    return { exitCode: body.exitCode, output: body.output };
  }

  private async getOptional<T>(resource: string, schema: Schema<T>): Promise<T | undefined> {
    try {
      const res = await this.send('GET', resource);
      return this.decode(res.body, schema, resource);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  private async paged<P, T>(
    resource: string,
    query: Query,
    schema: Schema<P>,
    items: (page: P) => readonly T[] | undefined,
  ): Promise<T[]> {
    const all: T[] = [];
    const seen = new Set<string>();
    let token: string | undefined;
    for (let i = 0; i < MAX_PAGES; i++) {
      const res = await this.send('GET', resource, { ...query, nextPageToken: token });
      const page = this.decode(res.body, schema, resource);
      all.push(...(items(page) ?? []));
      token = (page as { nextPageToken?: string }).nextPageToken;
      if (token === undefined || token === '') return all;
      if (seen.has(token)) {
        throw new ProtocolError(
          `unexpected response from fleetd at ${this.endpoint.display}: ${resource} repeats page token ${token}`,
        );
      }
      seen.add(token);
    }
    throw new ProtocolError(`unexpected response from fleetd at ${this.endpoint.display}: too many pages`);
  }

  private decode<T>(body: unknown, schema: Schema<T>, resource: string): T {
    const parsed = schema.safeParse(body);
    if (!parsed.success) {
      throw new ProtocolError(
        `unexpected response from fleetd at ${this.endpoint.display} for ${resource}: ${oneLine(parsed.error.message)}`,
      );
    }
    return parsed.data;
  }

  private path(resource: string, query: Query): string {
    const prefix = this.endpoint.kind === 'tcp' ? this.endpoint.pathPrefix : '';
    // fleet's client put alt=json first and appended the page token.
    let qs = 'alt=json';
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== '') qs += `&${k}=${encodeURIComponent(v)}`;
    }
    return `${prefix}${API_ROOT}${resource}?${qs}`;
  }

  private send(method: string, resource: string, query: Query = {}, body?: unknown): Promise<RawResponse> {
    if (this.closed) return Promise.reject(new Error('FleetClient is closed'));
    const path = this.path(resource, query);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { 'User-Agent': this.userAgent };
    if (payload !== undefined) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(payload.length);
    }
    const ep = this.endpoint;
    const request: http.RequestOptions = { method, path, headers, agent: this.agent };
    if (ep.kind === 'unix') {
      request.socketPath = this.options.dialSocketPath ?? ep.socketPath;
      // What fleet's fleetctl sent over the socket; servers log it.
      headers.Host = 'domain-sock';
    } else if (this.options.dialSocketPath !== undefined) {
      request.socketPath = this.options.dialSocketPath;
      headers.Host = `${ep.host.includes(':') ? `[${ep.host}]` : ep.host}:${ep.port}`;
      (request as https.RequestOptions).servername = ep.host;
    } else {
      request.host = ep.host;
      request.port = ep.port;
    }
    const started = Date.now();
    const report = (status: number | undefined): void =>
      this.options.onRequest?.({ method, path, status, durationMs: Date.now() - started });

    return new Promise<RawResponse>((resolve, reject) => {
      const lib = ep.kind === 'tcp' && ep.tls ? https : http;
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        report(undefined);
        reject(err);
      };
      const req = lib.request(request, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => fail(this.unreachable(err)));
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          const status = res.statusCode ?? 0;
          report(status);
          try {
            resolve(this.interpret(status, Buffer.concat(chunks).toString('utf8'), method, resource));
          } catch (err) {
            reject(err as Error);
          }
        });
      });
      const timer = setTimeout(() => {
        const secs = this.timeoutMs / 1000;
        req.destroy(
          new EndpointUnreachableError(ep.display, `no answer within ${secs}s (--request-timeout)`),
        );
      }, this.timeoutMs);
      req.on('error', (err) => fail(err instanceof EndpointUnreachableError ? err : this.unreachable(err)));
      req.end(payload);
    });
  }

  private interpret(status: number, text: string, method: string, resource: string): RawResponse {
    let body: unknown;
    let parsedJson = false;
    if (text.trim() !== '') {
      try {
        body = JSON.parse(text);
        parsedJson = true;
      } catch {
        body = undefined;
      }
    }
    if (status < 200 || status > 299) {
      const envelope = ErrorEnvelopeSchema.safeParse(body);
      const message = envelope.success
        ? envelope.data.error.message
        : oneLine(text.trim()) || (http.STATUS_CODES[status] ?? 'unknown error');
      throw new ApiError(status, message, { fields: { method, resource } });
    }
    if (text.trim() !== '' && !parsedJson) {
      throw new ProtocolError(
        `unexpected response from fleetd at ${this.endpoint.display} for ${method} ${resource}: body is not JSON`,
      );
    }
    return { status, body };
  }

  private unreachable(err: Error): EndpointUnreachableError {
    const ep = this.endpoint;
    const code = (err as NodeJS.ErrnoException).code;
    const socket = this.options.dialSocketPath ?? (ep.kind === 'unix' ? ep.socketPath : undefined);
    let reason: string;
    switch (code) {
      case 'ENOENT':
        reason = `${socket ?? 'socket'} does not exist (is fleetd running?)`;
        break;
      case 'ECONNREFUSED':
        reason = 'connection refused (is fleetd running?)';
        break;
      case 'EACCES':
      case 'EPERM':
        reason = `permission denied${socket === undefined ? '' : ` on ${socket}`}`;
        break;
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        reason = `host ${ep.kind === 'tcp' ? ep.host : ''} not found`;
        break;
      case 'ECONNRESET':
      case 'EPIPE':
        reason = 'connection closed before a response arrived';
        break;
      default:
        reason = oneLine(err.message);
    }
    return new EndpointUnreachableError(ep.display, reason, { cause: err });
  }
}

/** zod's messages are multi-line JSON; a CLI error must be one line. */
function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}
