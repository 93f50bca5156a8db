/**
 * The scale scenarios' units: the mix of targets P6/P7 — 20% replicas with
 * `Conflicts` (groups of 5 that must not share a machine), 10% `MachineOf` a
 * plain unit, 10% `MachineMetadata=region=…`, the rest plain — written to
 * etcd exactly as the API writes them (`unit/<name>` and `body/<hash>`), in
 * as few transactions as etcd allows.
 */
import { MAX_TXN_OPS, type Kv, type Op, type Registry } from '@fleet/registry';
import { unitHash, type JobState, type UnitOption } from '@fleet/core';
import { random } from '../../test/support/random.js';
import { REGIONS } from './sim.js';

export interface WorkloadUnit {
  readonly name: string;
  readonly options: readonly UnitOption[];
}

function unit(name: string, fleet: ReadonlyArray<[string, string]>): WorkloadUnit {
  return {
    name,
    options: [
      { section: 'Unit', name: 'Description', value: `bench ${name}` },
      { section: 'Service', name: 'ExecStart', value: '/bin/sleep infinity' },
      ...fleet.map(([k, v]) => ({ section: 'X-Fleet', name: k, value: v })),
    ],
  };
}

/** `count` units of the mix, deterministic for a given count. */
export function workload(count: number): WorkloadUnit[] {
  const rnd = random(count * 31 + 1);
  const conflicted = Math.round(count * 0.2);
  const followers = Math.round(count * 0.1);
  const regional = Math.round(count * 0.1);
  const plain = count - conflicted - followers - regional;
  const out: WorkloadUnit[] = [];
  for (let i = 0; i < conflicted; i++) {
    const group = Math.floor(i / 5);
    out.push(unit(`web-${group}.${i % 5}.service`, [['Conflicts', `web-${group}.*.service`]]));
  }
  for (let i = 0; i < plain; i++) out.push(unit(`app-${i}.service`, []));
  for (let i = 0; i < followers; i++) {
    out.push(unit(`sidecar-${i}.service`, [['MachineOf', `app-${Math.floor(rnd() * plain)}.service`]]));
  }
  for (let i = 0; i < regional; i++) {
    const region = REGIONS[Math.floor(rnd() * REGIONS.length)] as string;
    out.push(unit(`regional-${i}.service`, [['MachineMetadata', `region=${region}`]]));
  }
  return out;
}

/** etcd refuses requests over 1.5 MiB by default; stay well below. */
const MAX_TXN_BYTES = 1_000_000;

/**
 * Writes units (and their bodies) with `desiredState`, several transactions
 * in flight, each within etcd's 128-operation and request-size limits.
 */
export async function writeUnits(
  registry: Registry,
  units: readonly WorkloadUnit[],
  desiredState: JobState,
  concurrency = 4,
): Promise<void> {
  const keys = registry.keys;
  const batches: Op[][] = [];
  let ops: Op[] = [];
  let bytes = 0;
  const bodies = new Set<string>();
  for (const u of units) {
    const hash = unitHash(u.options);
    const unitOp: Op = {
      type: 'put',
      key: keys.unit(u.name),
      value: JSON.stringify({ name: u.name, hash, desiredState }),
    };
    const add: Op[] = [unitOp];
    if (!bodies.has(hash)) {
      bodies.add(hash);
      add.push({ type: 'put', key: keys.body(hash), value: JSON.stringify({ options: u.options }) });
    }
    const size = add.reduce((n, op) => n + (op.type === 'put' ? op.key.length + op.value.length : 0), 0);
    if (ops.length + add.length > MAX_TXN_OPS || bytes + size > MAX_TXN_BYTES) {
      batches.push(ops);
      ops = [];
      bytes = 0;
    }
    ops.push(...add);
    bytes += size;
  }
  if (ops.length > 0) batches.push(ops);
  await runBatches(registry.kv, batches, concurrency);
}

/** Sets the desired state of every unit (unit records only), batched like {@link writeUnits}. */
export async function setDesiredStates(
  registry: Registry,
  units: readonly WorkloadUnit[],
  desiredState: JobState,
  concurrency = 4,
): Promise<void> {
  const batches: Op[][] = [];
  for (let i = 0; i < units.length; i += MAX_TXN_OPS) {
    batches.push(
      units.slice(i, i + MAX_TXN_OPS).map((u) => ({
        type: 'put' as const,
        key: registry.keys.unit(u.name),
        value: JSON.stringify({ name: u.name, hash: unitHash(u.options), desiredState }),
      })),
    );
  }
  await runBatches(registry.kv, batches, concurrency);
}

async function runBatches(kv: Kv, batches: readonly Op[][], concurrency: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < batches.length) {
        const batch = batches[next++] as Op[];
        await kv.txn([], batch);
      }
    }),
  );
}
