/**
 * A real etcd for the scale scenarios, and etcd's own /metrics read as
 * counters: every "write" the benchmarks report comes from here, not from
 * estimates.
 */
import { spawnSync } from 'node:child_process';
import type { EtcdKv, Kv } from '@fleet/registry';
import { sleep } from './stats.js';

/**
 * The scale scenarios use the tests' etcd: a single member on free loopback
 * ports, data in a temporary directory on the VM's disk (commits pay a real
 * fsync), etcd's defaults otherwise (128 operations per transaction, 1.5 MiB
 * requests, 2 GiB quota), so the numbers are what a default installation gives.
 */
export { startEtcd, type TestEtcd as BenchEtcd } from '../../test/support/etcd.js';

/** `etcd --version`'s first line, e.g. "etcd Version: 3.4.23" → "3.4.23". */
export function etcdVersion(): string {
  const r = spawnSync('/usr/bin/etcd', ['--version'], { encoding: 'utf8' });
  return /etcd Version:\s*(\S+)/.exec(r.stdout ?? '')?.[1] ?? 'unknown';
}

/** Every sample of a Prometheus text exposition: `name{labels}` → value. */
export async function scrape(metricsUrl: string): Promise<Map<string, number>> {
  const res = await fetch(metricsUrl);
  const text = await res.text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

function sum(samples: ReadonlyMap<string, number>, name: string, labels: readonly string[] = []): number {
  let total = 0;
  for (const [series, value] of samples) {
    if (series !== name && !series.startsWith(`${name}{`)) continue;
    if (labels.every((l) => series.includes(l))) total += value;
  }
  return total;
}

/**
 * The counters that say what etcd wrote. A **write** in these benchmarks is
 * one raft proposal committed by etcd (`etcd_server_proposals_committed_total`):
 * one Put, one DeleteRange or one transaction — however many keys it touches —
 * or one lease grant/revoke. A transaction whose compare fails is a proposal
 * too. Lease keepalives and linearizable reads are not proposals in etcd 3.4
 * (keepalives are answered by the leader's lessor; reads use ReadIndex).
 */
export interface EtcdCounters {
  /** Raft proposals committed: the writes. */
  readonly proposals: number;
  /** Keys put / deleted (mvcc level; a 128-op txn counts 128). */
  readonly keysPut: number;
  readonly keysDeleted: number;
  /** Client requests that end up as proposals, by gRPC method (OK answers). */
  readonly txnRequests: number;
  readonly putRequests: number;
  readonly deleteRangeRequests: number;
  readonly leaseGrants: number;
  readonly leaseRevokes: number;
  /** Lease keepalives answered (liveness; not writes). */
  readonly leaseRenewals: number;
  readonly rangeRequests: number;
}

export async function readCounters(metricsUrl: string): Promise<EtcdCounters> {
  const s = await scrape(metricsUrl);
  const grpc = (method: string): number =>
    sum(s, 'grpc_server_handled_total', [`grpc_method="${method}"`, 'grpc_code="OK"']);
  return {
    proposals: sum(s, 'etcd_server_proposals_committed_total'),
    keysPut: sum(s, 'etcd_mvcc_put_total'),
    keysDeleted: sum(s, 'etcd_mvcc_delete_total'),
    txnRequests: grpc('Txn'),
    putRequests: grpc('Put'),
    deleteRangeRequests: grpc('DeleteRange'),
    leaseGrants: sum(s, 'etcd_debugging_lease_granted_total'),
    leaseRevokes: sum(s, 'etcd_debugging_lease_revoked_total'),
    leaseRenewals: sum(s, 'etcd_debugging_lease_renewed_total'),
    rangeRequests: grpc('Range'),
  };
}

export function diffCounters(a: EtcdCounters, b: EtcdCounters): EtcdCounters {
  const out: Record<string, number> = {};
  for (const k of Object.keys(a) as Array<keyof EtcdCounters>) out[k] = b[k] - a[k];
  return out as unknown as EtcdCounters;
}

/**
 * Waits until etcd's proposal counter has not moved for `quietMs` (the writes
 * a command set off — engine, agents — are done), or `timeoutMs` passes.
 * @returns the counters at the end, and whether it went quiet.
 */
export async function settle(
  metricsUrl: string,
  options: { quietMs?: number; timeoutMs?: number } = {},
): Promise<{ counters: EtcdCounters; quiet: boolean }> {
  const quietMs = options.quietMs ?? 500;
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  let last = await readCounters(metricsUrl);
  let since = Date.now();
  for (;;) {
    await sleep(50);
    const now = await readCounters(metricsUrl);
    if (now.proposals !== last.proposals) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) {
      return { counters: now, quiet: true };
    }
    if (Date.now() > deadline) return { counters: now, quiet: false };
  }
}

/**
 * Attributes writes to their writers: a watch on the whole keyspace groups
 * events by revision (one committed write transaction = one revision) and
 * labels each revision with the key families it touched, e.g.
 * `unit+body` (the API's submit), `schedule` (the engine), `state` (an agent).
 * Failed transactions and lease operations make no revision; the proposal
 * counter of {@link readCounters} includes them.
 */
export function watchWrites(
  kv: Kv,
  prefix: string,
  fromRevision: number,
): { stop(): Promise<Record<string, number>> } {
  const byRevision = new Map<number, Set<string>>();
  const family = (key: string): string => key.slice(prefix.length).split('/')[0] ?? '?';
  const watch = kv.watchPrefix(prefix, fromRevision, {
    onEvents: (events) => {
      for (const e of events) {
        const rev = e.type === 'put' ? e.kv.modRevision : e.modRevision;
        const key = e.type === 'put' ? e.kv.key : e.key;
        let set = byRevision.get(rev);
        if (!set) byRevision.set(rev, (set = new Set()));
        set.add(`${family(key)}${e.type === 'delete' ? '(del)' : ''}`);
      }
    },
    onReset: () => undefined,
  });
  return {
    stop: async () => {
      await sleep(200); // let the last events arrive
      await watch.close();
      const out: Record<string, number> = {};
      for (const set of byRevision.values()) {
        const label = [...set].sort().join('+');
        out[label] = (out[label] ?? 0) + 1;
      }
      return out;
    },
  };
}

/** Number of keys under a prefix (count only: nothing is transferred). */
export async function countKeys(kv: EtcdKv, prefix: string): Promise<number> {
  return kv.client.getAll().prefix(prefix).count();
}

/**
 * etcd's WAL fsync latency since it started, from its histogram: the upper
 * bounds (ms) of the buckets holding the median and the 99th percentile.
 * Tells whether a slow run was etcd's disk.
 */
export async function walFsync(metricsUrl: string): Promise<{ count: number; p50Ms: number; p99Ms: number }> {
  const s = await scrape(metricsUrl);
  const buckets: Array<[number, number]> = [];
  for (const [series, value] of s) {
    const m = /^etcd_disk_wal_fsync_duration_seconds_bucket\{le="([^"]+)"\}$/.exec(series);
    if (m) buckets.push([m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1]) * 1000, value]);
  }
  buckets.sort((a, b) => a[0] - b[0]);
  const count = buckets[buckets.length - 1]?.[1] ?? 0;
  const at = (q: number): number => buckets.find(([, c]) => c >= q * count)?.[0] ?? Number.NaN;
  return { count, p50Ms: at(0.5), p99Ms: at(0.99) };
}
