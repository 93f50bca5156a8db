import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  UnitPutBodySchema,
  decodePageToken,
  encodePageToken,
  isJobState,
  unitHash,
  unitNameInfo,
  unitNameProblem,
  validateUnitOptions,
  type JobState,
  type Machine,
  type Unit,
  type UnitState,
} from '@fleet/core';
import { API_ROOT, UNIT_COMMANDS_RESOURCE, type UnitCommandResult } from './client.js';

/** One request as the fake received it, for wire-level assertions. */
export interface RecordedRequest {
  readonly method: string;
  /** Path and query exactly as sent, e.g. `/fleet/v1/units/web%401.service?alt=json`. */
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

export interface FakeFleetdOptions {
  /**
   * Items per page (fleetd's `token_limit`).
   * @default 100
   */
  readonly pageSize?: number;
  /**
   * Serve the API under this prefix too (`http://h:p/prefix`).
   * @default ''
   */
  readonly pathPrefix?: string;
  /**
   * Make the "cluster" follow desired states: place units on the first
   * machine and report systemd states, as engine and agents would.
   * @default true
   */
  readonly converge?: boolean;
  /**
   * How many `GET units/{name}` a state change takes to show, to exercise
   * waiting.
   * @default 0
   */
  readonly convergeAfterPolls?: number;
}

/** Which of our unit-command routes was asked. */
export type UnitCommand = 'status' | 'journal';

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * An in-process fleetd that implements the HTTP API v1 contract (fleet-compat
 * §6) over an in-memory cluster, for testing clients. It records every
 * request, can fail every request with a chosen status (a 503 "etcd down"),
 * and by default plays engine and agents: desired states converge to current
 * states on the first machine, unless a unit is marked unplaceable.
 */
export class FakeFleetd {
  readonly units = new Map<string, Unit>();
  /** Reported states keyed by `name` and `machineID` (a global unit has one per machine); listed in insertion order. */
  readonly states = new Map<string, UnitState>();
  readonly machines = new Map<string, Machine>();
  readonly requests: RecordedRequest[] = [];
  /** Unit name → why no machine can take it; such units stay unplaced. */
  readonly unplaceable = new Map<string, string>();
  /** When set, every API request is answered with this error. */
  failure: { readonly status: number; readonly message: string } | undefined;
  /** ActiveState reported for launched units. */
  launchedActiveState = 'active';
  /** When false, launched units get no UnitState (`GET state/{n}` is 404). */
  publishStates = true;
  /** Answers our status/journal route; undefined = 404. */
  unitCommand: ((unit: Unit, command: UnitCommand, query: URLSearchParams) => UnitCommandResult) | undefined;

  private readonly server: http.Server;
  private readonly pageSize: number;
  private readonly prefix: string;
  private readonly converge: boolean;
  private readonly convergeAfterPolls: number;
  private readonly pending = new Map<string, number>();

  constructor(options: FakeFleetdOptions = {}) {
    this.pageSize = options.pageSize ?? 100;
    this.prefix = (options.pathPrefix ?? '').replace(/\/+$/, '');
    this.converge = options.converge ?? true;
    this.convergeAfterPolls = options.convergeAfterPolls ?? 0;
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => this.handle(req, res, Buffer.concat(chunks).toString('utf8')));
    });
  }

  /** Adds (or replaces) a live machine. */
  addMachine(machine: Machine): void {
    this.machines.set(machine.id, machine);
  }

  /** Adds or replaces the state a machine reports for a unit. */
  setState(state: UnitState): void {
    this.states.set(stateKey(state.name, state.machineID), state);
  }

  /** The first reported state of a unit (what `GET state/{name}` answers). */
  stateOf(name: string): UnitState | undefined {
    return [...this.states.values()].find((s) => s.name === name);
  }

  /** Adds a unit directly, as if submitted earlier. */
  addUnit(unit: Unit): void {
    this.units.set(unit.name, { ...unit });
  }

  /** Listens on a unix socket; returns the `unix://` endpoint. */
  async listenUnix(socketPath: string): Promise<string> {
    this.server.listen(socketPath);
    await once(this.server, 'listening');
    return `unix://${socketPath}`;
  }

  /** Listens on a free loopback TCP port; returns the `http://` endpoint (with the prefix). */
  async listenTcp(): Promise<string> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}${this.prefix}`;
  }

  /** Requests whose method and path (without query) match. */
  requestsTo(method: string, pathStart: string): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method && r.url.split('?')[0]?.startsWith(pathStart));
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
    const method = req.method ?? 'GET';
    const rawUrl = req.url ?? '/';
    this.requests.push({ method, url: rawUrl, headers: req.headers, body });
    res.setHeader('Server', 'fleetd/fake');
    try {
      const url = new URL(rawUrl, 'http://fake');
      let path = url.pathname;
      if (this.prefix !== '' && path.startsWith(`${this.prefix}/`)) path = path.slice(this.prefix.length);
      if (!path.startsWith(API_ROOT)) throw new HttpFailure(404, 'not found');
      if (this.failure) throw new HttpFailure(this.failure.status, this.failure.message);
      const parts = path.slice(API_ROOT.length).split('/').map(decodeURIComponent);
      const result = this.route(method, parts, url.searchParams, req.headers, body);
      if (result === undefined) {
        res.writeHead(204).end();
      } else {
        const text = JSON.stringify(result.body);
        res.writeHead(result.status, { 'Content-Type': 'application/json' }).end(text);
      }
    } catch (err) {
      const status = err instanceof HttpFailure ? err.status : 500;
      const message = err instanceof Error ? err.message : String(err);
      res
        .writeHead(status, { 'Content-Type': 'application/json' })
        .end(JSON.stringify({ error: { code: status, message } }));
    }
  }

  private route(
    method: string,
    parts: string[],
    query: URLSearchParams,
    headers: http.IncomingHttpHeaders,
    body: string,
  ): { status: number; body: unknown } | undefined {
    const [resource, name, extra] = parts;
    const ok = (value: unknown) => ({ status: 200, body: value });
    if (resource === 'units' && name === undefined) {
      if (method !== 'GET') throw new HttpFailure(405, 'only GET supported against this resource');
      return ok(this.page('units', [...this.units.values()].sort(byName), query));
    }
    if (resource === 'units' && name !== undefined) {
      if (method === 'GET') return ok(this.getUnit(name));
      if (method === 'DELETE') {
        if (!this.units.delete(name)) throw new HttpFailure(404, 'unit does not exist');
        this.pending.delete(name);
        this.deleteStates(name);
        return undefined;
      }
      if (method === 'PUT') return this.putUnit(name, headers, body);
      throw new HttpFailure(405, 'only GET, PUT and DELETE supported against this resource');
    }
    if (resource === 'state' && name === undefined) {
      if (method !== 'GET') throw new HttpFailure(405, 'only GET supported against this resource');
      const machineID = query.get('machineID');
      const unitName = query.get('unitName');
      const states = [...this.states.values()].filter(
        (s) =>
          (machineID === null || s.machineID === machineID) && (unitName === null || s.name === unitName),
      );
      return ok(this.page('states', states, query));
    }
    if (resource === 'state' && name !== undefined) {
      const state = this.stateOf(name);
      if (state === undefined) throw new HttpFailure(404, 'unit state does not exist');
      return ok(state);
    }
    if (resource === 'machines') {
      if (method === 'GET') {
        return ok(
          this.page(
            'machines',
            [...this.machines.values()].sort((a, b) => cmp(a.id, b.id)),
            query,
          ),
        );
      }
      if (method === 'PATCH') return this.patchMachines(body);
      throw new HttpFailure(405, 'only GET and PATCH supported against this resource');
    }
    if (
      resource === UNIT_COMMANDS_RESOURCE &&
      name !== undefined &&
      (extra === 'status' || extra === 'journal')
    ) {
      const unit = this.units.get(name);
      if (unit === undefined) throw new HttpFailure(404, 'unit does not exist');
      if (this.unitCommand === undefined) throw new HttpFailure(404, 'not found');
      return ok(this.unitCommand(unit, extra, query));
    }
    throw new HttpFailure(404, 'not found');
  }

  private getUnit(name: string): Unit {
    const pending = this.pending.get(name);
    if (pending !== undefined) {
      if (pending <= 1) {
        this.pending.delete(name);
        this.apply(name);
      } else {
        this.pending.set(name, pending - 1);
      }
    }
    const unit = this.units.get(name);
    if (unit === undefined) throw new HttpFailure(404, 'unit does not exist');
    return unit;
  }

  private putUnit(
    name: string,
    headers: http.IncomingHttpHeaders,
    body: string,
  ): { status: number; body: unknown } | undefined {
    if (!(headers['content-type'] ?? '').startsWith('application/json')) {
      throw new HttpFailure(415, 'Content-Type must be application/json');
    }
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      throw new HttpFailure(400, 'unable to decode body');
    }
    const parsed = UnitPutBodySchema.safeParse(json);
    if (!parsed.success) throw new HttpFailure(400, 'unable to decode body');
    const put = parsed.data;
    if (put.name !== undefined && put.name !== name) {
      throw new HttpFailure(400, 'name in URL and body do not match');
    }
    const problem = unitNameProblem(name);
    if (problem !== undefined) throw new HttpFailure(400, problem);
    let desired: JobState | undefined;
    if (put.desiredState !== undefined) {
      if (!isJobState(put.desiredState))
        throw new HttpFailure(400, `invalid desiredState: ${put.desiredState}`);
      desired = put.desiredState;
    }
    if (desired !== undefined && desired !== 'inactive' && unitNameInfo(name).isTemplate) {
      throw new HttpFailure(400, `cannot activate template ${JSON.stringify(name)}`);
    }
    const existing = this.units.get(name);
    const options = put.options ?? undefined;
    if (options !== undefined && options.length > 0) {
      try {
        validateUnitOptions(options, name);
      } catch (err) {
        throw new HttpFailure(400, err instanceof Error ? err.message : String(err));
      }
      if (existing === undefined || unitHash(existing.options ?? []) !== unitHash(options)) {
        const unit: Unit = {
          ...existing,
          name,
          options,
          desiredState: desired ?? existing?.desiredState ?? 'inactive',
          currentState: existing?.currentState ?? 'inactive',
        };
        this.units.set(name, unit);
        this.scheduleConverge(name);
        return { status: 201, body: unit };
      }
    } else if (existing === undefined) {
      throw new HttpFailure(409, 'unit does not exist and options field empty');
    }
    if (desired === undefined)
      throw new HttpFailure(409, 'must provide DesiredState to update existing unit');
    if (existing !== undefined) {
      this.units.set(name, { ...existing, desiredState: desired });
      this.scheduleConverge(name);
    }
    return undefined;
  }

  private patchMachines(body: string): undefined {
    let ops: unknown;
    try {
      ops = JSON.parse(body);
    } catch {
      throw new HttpFailure(400, 'unable to decode body');
    }
    if (!Array.isArray(ops)) throw new HttpFailure(400, 'unable to decode body');
    for (const op of ops as Array<{ op?: string; path?: string; value?: { value?: string } }>) {
      const m = /^\/([^/]+)\/metadata\/([A-Za-z0-9_.-]+)$/.exec(op.path ?? '');
      if (m === null) throw new HttpFailure(400, 'machine metadata path invalid');
      const machine = this.machines.get(m[1] as string);
      if (machine === undefined) throw new HttpFailure(400, 'machine metadata path invalid');
      const metadata = { ...machine.metadata };
      if (op.op === 'remove') delete metadata[m[2] as string];
      else if (op.op === 'add' || op.op === 'replace') {
        if (op.value?.value === undefined)
          throw new HttpFailure(400, 'invalid value: add and replace require a value');
        metadata[m[2] as string] = op.value.value;
      } else throw new HttpFailure(400, 'invalid op: expect add, remove, or replace');
      this.machines.set(machine.id, { ...machine, metadata });
    }
    return undefined;
  }

  private page<K extends string, T>(key: K, items: T[], query: URLSearchParams): Record<string, unknown> {
    const token = query.get('nextPageToken');
    let page = 1;
    if (token !== null) {
      try {
        page = decodePageToken(token).page;
      } catch (err) {
        throw new HttpFailure(400, err instanceof Error ? err.message : String(err));
      }
    }
    const start = (page - 1) * this.pageSize;
    const out: Record<string, unknown> = { [key]: items.slice(start, start + this.pageSize) };
    if (start + this.pageSize < items.length) {
      out.nextPageToken = encodePageToken({ limit: this.pageSize, page: page + 1 });
    }
    return out;
  }

  private deleteStates(name: string): void {
    for (const [key, state] of this.states) if (state.name === name) this.states.delete(key);
  }

  private scheduleConverge(name: string): void {
    if (!this.converge) return;
    if (this.convergeAfterPolls === 0) this.apply(name);
    else this.pending.set(name, this.convergeAfterPolls);
  }

  /** Plays engine and agent for one unit: current state := desired state. */
  private apply(name: string): void {
    const unit = this.units.get(name);
    if (unit === undefined) return;
    const desired = unit.desiredState ?? 'inactive';
    const reason = this.unplaceable.get(name);
    const machine = [...this.machines.keys()].sort()[0];
    const global = (unit.options ?? []).some(
      (o) => o.section === 'X-Fleet' && o.name === 'Global' && /^(true|yes|1|on|t)$/i.test(o.value),
    );
    if (global) return;
    if (desired === 'inactive' || reason !== undefined || machine === undefined) {
      const next: Unit = { ...unit, currentState: 'inactive' };
      delete next.machineID;
      delete next.unplacedReason;
      if (desired !== 'inactive') next.unplacedReason = reason ?? 'no machines in the cluster';
      this.units.set(name, next);
      this.deleteStates(name);
      return;
    }
    const next: Unit = { ...unit, currentState: desired, machineID: machine };
    delete next.unplacedReason;
    this.units.set(name, next);
    this.deleteStates(name);
    if (!this.publishStates) return;
    const launched = desired === 'launched';
    this.setState({
      name,
      hash: unitHash(unit.options ?? []),
      machineID: machine,
      systemdLoadState: 'loaded',
      systemdActiveState: launched ? this.launchedActiveState : 'inactive',
      systemdSubState: launched ? (this.launchedActiveState === 'active' ? 'running' : 'failed') : 'dead',
    });
  }
}

function stateKey(name: string, machineID: string | undefined): string {
  return `${name}\u0000${machineID ?? ''}`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function byName(a: { name: string }, b: { name: string }): number {
  return cmp(a.name, b.name);
}
