import {
  type Agent,
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type Server,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseUnitFile, type JobState, type Metrics, type UnitOption } from '@fleet/core';
import { MemoryKv, Registry, type StateRecord } from '@fleet/registry';
import { createApiHandler, type ApiDeps, type UnitCommands } from '@fleet/api';

/** Where requests go: a TCP port on loopback or a unix socket. */
export type Target = { readonly port: number } | { readonly socketPath: string };

export interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
}

export interface RequestOptions {
  readonly headers?: Record<string, string>;
  readonly body?: string | Buffer;
  readonly agent?: Agent;
}

/** One HTTP request with exactly the given method, path and headers. */
export function request(
  target: Target,
  method: string,
  path: string,
  opts: RequestOptions = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        ...('port' in target ? { host: '127.0.0.1', port: target.port } : { socketPath: target.socketPath }),
        method,
        path,
        // node's client sends a GET/DELETE body without framing unless told its length.
        headers: {
          ...(opts.body !== undefined ? { 'Content-Length': String(Buffer.byteLength(opts.body)) } : {}),
          ...(opts.headers ?? {}),
        },
        agent: opts.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** A JSON PUT/PATCH as fleet's fleetctl sends it. */
export function jsonBody(body: unknown, extra: Record<string, string> = {}): RequestOptions {
  return { headers: { 'Content-Type': 'application/json', ...extra }, body: JSON.stringify(body) };
}

export function errorOf(a: Answer): { code: number; message: string } {
  const parsed = JSON.parse(a.text) as { error: { code: number; message: string } };
  return parsed.error;
}

export const options = (text: string): UnitOption[] => parseUnitFile(text);
export const simpleUnit = (cmd = '/bin/true'): UnitOption[] => options(`[Service]\nExecStart=${cmd}\n`);

/** A handler over an in-memory registry, served on a loopback port. */
export interface Harness {
  readonly kv: MemoryKv;
  readonly registry: Registry;
  readonly target: Target;
  readonly logs: string[];
  req(method: string, path: string, opts?: RequestOptions): Promise<Answer>;
  /** Writes a placement as the engine would. */
  place(machineID: string, unit: string, desiredState?: JobState, hash?: string): Promise<void>;
  /** Writes a reported state as an agent would. */
  report(machineID: string, unit: string, state: StateRecord): Promise<void>;
  unplaced(unit: string, reason: string): Promise<void>;
  close(): Promise<void>;
}

export async function startHarness(
  deps: Partial<Omit<ApiDeps, 'registry'>> & { unitCommands?: UnitCommands; metrics?: Metrics } = {},
): Promise<Harness> {
  const kv = new MemoryKv();
  const registry = new Registry(kv, { prefix: '/t/' });
  const logs: string[] = [];
  const handler = createApiHandler({ registry, version: '1.2.3', log: (m) => logs.push(m), ...deps });
  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const target = { port: (server.address() as AddressInfo).port };
  const put = async (key: string, value: unknown): Promise<void> => {
    await kv.txn([], [{ type: 'put', key, value: JSON.stringify(value) }]);
  };
  return {
    kv,
    registry,
    target,
    logs,
    req: (method, path, opts) => request(target, method, path, opts),
    place: async (machineID, unit, desiredState = 'launched', hash) => {
      const rec = await registry.getUnitRecord(unit);
      await put(registry.keys.placement(machineID, unit), {
        hash: hash ?? rec?.hash ?? '0'.repeat(40),
        desiredState,
      });
    },
    report: (machineID, unit, state) => put(registry.keys.state(unit, machineID), state),
    unplaced: (unit, reason) => put(registry.keys.unplaced(unit), { reason }),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await handler.close();
      await kv.close();
    },
  };
}
