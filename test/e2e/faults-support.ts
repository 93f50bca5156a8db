import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Machine } from '@fleet/lab';
import { EtcdKv, Keyspace, currentLeader } from '@fleet/registry';
import { converge, type FleetCluster } from './harness.js';

/**
 * Helpers shared by the fault tests (faults-*.test.ts): unit files written to
 * a scratch directory, what systemd in each machine says (MainPID, journal),
 * the engine leader read from etcd, and the "exactly once" picture.
 */

/**
 * For fleetctl start/stop: give up after 15 attempts (30 s) instead of waiting forever (the
 * default), so that a unit that never reports its state fails the test instead of hanging CI.
 */
export const BOUNDED = '--block-attempts=15';

export interface UnitSpec {
  readonly name: string;
  /** Globs for `Conflicts=` in [X-Fleet]. */
  readonly conflicts?: string;
  readonly global?: boolean;
  /** `MachineID=` in [X-Fleet]: the unit can run only there. */
  readonly machineID?: string;
}

/** A long-running service whose MainPID stays the same as long as it is not restarted. */
export function unitText(spec: UnitSpec): string {
  const xfleet = [
    ...(spec.conflicts ? [`Conflicts=${spec.conflicts}`] : []),
    ...(spec.global ? ['Global=true'] : []),
    ...(spec.machineID ? [`MachineID=${spec.machineID}`] : []),
  ];
  return [
    '[Unit]',
    `Description=fault test ${spec.name}`,
    '',
    '[Service]',
    'ExecStart=/bin/sleep infinity',
    ...(xfleet.length > 0 ? ['', '[X-Fleet]', ...xfleet] : []),
    '',
  ].join('\n');
}

/** A scratch directory holding unit files, to run fleetctl in (`cwd`). */
export class UnitDir {
  readonly path = mkdtempSync(join(tmpdir(), 'fleet-faults-'));

  add(...specs: UnitSpec[]): string[] {
    for (const s of specs) writeFileSync(join(this.path, s.name), unitText(s));
    return specs.map((s) => s.name);
  }

  remove(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}

/** `systemctl show -p MainPID` of a unit inside a machine (0 when not running). */
export async function mainPID(c: FleetCluster, m: Machine, unit: string): Promise<number> {
  const out = await c.systemctl(m, ['show', '-p', 'MainPID', '--value', unit]);
  return Number(out.trim() || '0');
}

/** MainPID of each unit in a machine. */
export async function mainPIDs(
  c: FleetCluster,
  m: Machine,
  units: readonly string[],
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const u of units) out.set(u, await mainPID(c, m, u));
  return out;
}

/** Lines of systemd's journal in a machine about the unit stopping (there must be none while it should run). */
export async function stopLines(c: FleetCluster, m: Machine, unit: string): Promise<string[]> {
  const r = await c.lab.exec(m, ['journalctl', '--no-pager', '-o', 'short-monotonic', '-u', unit]);
  return r.stdout.split('\n').filter((l) => /\b(Stopping|Stopped|Deactivated|Killing|Failed)\b/.test(l));
}

/** Asserts that the units run in `m` with the given MainPIDs and never stopped there. */
export async function assertUntouched(
  c: FleetCluster,
  m: Machine,
  pids: ReadonlyMap<string, number>,
  when: string,
): Promise<void> {
  for (const [unit, pid] of pids) {
    assert.ok(pid > 0, `${unit} had no MainPID in ${m.name} to begin with`);
    assert.equal(await mainPID(c, m, unit), pid, `${unit} in ${m.name}: MainPID changed ${when}`);
    assert.deepEqual(await stopLines(c, m, unit), [], `${unit} in ${m.name}: journal shows a stop ${when}`);
  }
}

/**
 * unit → machines (names) where systemd itself runs it, over every running
 * machine, for units whose name starts with `prefix`.
 */
export async function runningInSystemd(c: FleetCluster, prefix: string): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const m of c.machines) {
    if (!m.running) continue;
    const list = await c.systemctl(m, [
      'list-units',
      '--plain',
      '--no-legend',
      '--state=active',
      `${prefix}*.service`,
    ]);
    for (const line of list.split('\n')) {
      const unit = line.trim().split(/\s+/)[0];
      if (!unit || !unit.startsWith(prefix)) continue;
      out.set(unit, [...(out.get(unit) ?? []), m.name].sort());
    }
  }
  return out;
}

/** A running machine that is not cut off: where fleetctl is aimed during faults. */
export function healthy(c: FleetCluster): Machine {
  const m = c.machines.find((x) => x.running && !x.partitioned);
  if (!m) throw new Error('no healthy machine');
  return m;
}

/** `fleetctl list-units` as unit → machine names where the unit is active. */
export async function activeByName(
  c: FleetCluster,
  machine: Machine = healthy(c),
): Promise<Map<string, string[]>> {
  const out = await c.ok(['list-units', '--fields=unit,machine,active', '--no-legend', '--full'], {
    machine,
  });
  const map = new Map<string, string[]>();
  for (const line of out.split('\n')) {
    const [unit, machineCell, active] = line.trim().split(/\s+/);
    if (!unit || !machineCell || active !== 'active') continue;
    const name = c.machineByID(machineCell.split('/')[0] as string).name;
    map.set(unit, [...(map.get(unit) ?? []), name].sort());
  }
  return map;
}

/** The machine whose engine leads now (read from etcd through the host's endpoints). */
export async function engineLeader(c: FleetCluster): Promise<Machine | undefined> {
  const kv = new EtcdKv({ endpoints: c.lab.hostEtcdEndpoints });
  try {
    const rec = await currentLeader(kv, new Keyspace().leader);
    return rec ? c.machineByID(rec.id) : undefined;
  } finally {
    await kv.close();
  }
}

/**
 * Waits until every unit of `expected` (unit → machine count, or machine
 * names) is active exactly there according to BOTH fleetctl list-units and
 * systemd in every machine, and nothing else with `prefix` runs anywhere.
 */
export async function convergeExactlyOnce(
  c: FleetCluster,
  prefix: string,
  expected: ReadonlyMap<string, number | readonly string[]>,
  options: { timeoutMs?: number; message?: string } = {},
): Promise<Map<string, string[]>> {
  return converge(
    c,
    async () => {
      const listed = await activeByName(c);
      const running = await runningInSystemd(c, prefix);
      for (const [unit, want] of expected) {
        const l = listed.get(unit) ?? [];
        const r = running.get(unit) ?? [];
        const ok = typeof want === 'number' ? l.length === want : l.join() === [...want].sort().join();
        if (!ok)
          throw new Error(`${unit}: list-units shows it active on [${l.join(' ')}], want ${String(want)}`);
        if (r.join() !== l.join())
          throw new Error(`${unit}: systemd runs it on [${r.join(' ')}], list-units says [${l.join(' ')}]`);
      }
      for (const unit of running.keys()) {
        if (!expected.has(unit)) throw new Error(`${unit} runs but was not launched`);
      }
      for (const unit of listed.keys()) {
        if (unit.startsWith(prefix) && !expected.has(unit))
          throw new Error(`${unit} listed active but not launched`);
      }
      return running;
    },
    { timeoutMs: 60_000, ...options },
  );
}

/** Holds a fault for `ms` (the scenario's duration, never a condition). */
export function hold(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Where each unit runs, as machine names, from a placement map. */
export function byMachine(placement: ReadonlyMap<string, readonly string[]>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [unit, machines] of placement) {
    for (const m of machines) out.set(m, [...(out.get(m) ?? []), unit].sort());
  }
  return out;
}

/** Machine names that `fleetctl list-machines` shows. */
export async function listedMachines(c: FleetCluster, via: Machine = healthy(c)): Promise<string[]> {
  const out = await c.ok(['list-machines', '--no-legend', '--full'], { machine: via });
  return out
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => c.machineByID(l.trim().split(/\s+/)[0] as string).name)
    .sort();
}
