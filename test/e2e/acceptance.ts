/**
 * Helpers shared by the acceptance files (scheduling, lifecycle, machines):
 * unit files written to a temp directory (used as fleetctl's cwd), and the
 * cluster's picture read back through fleetctl, the API and systemd.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FleetClient } from '@fleet/client';
import type { Unit } from '@fleet/core';
import type { Machine } from '@fleet/lab';
import { type FleetCluster, converge } from './harness.js';

/** A temp directory of unit files; pass `dir.path` as fleetctl's cwd. */
export class UnitDir {
  readonly path = mkdtempSync(join(tmpdir(), 'fleet-e2e-units-'));

  /** Writes `name` with `text` and returns the name (what fleetctl takes). */
  write(name: string, text: string): string {
    writeFileSync(join(this.path, name), text);
    return name;
  }

  close(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}

/** A service that runs until stopped and says who it is in its journal. */
export function serviceText(xfleet = '', description = 'acceptance test unit'): string {
  return (
    `[Unit]\nDescription=${description}\n\n[Service]\n` +
    `ExecStart=/bin/sh -c "echo started %n; exec sleep infinity"\n` +
    (xfleet === '' ? '' : `\n[X-Fleet]\n${xfleet}\n`)
  );
}

/** One row of `list-unit-files --full` as a record. */
export interface UnitFileRow {
  readonly unit: string;
  readonly dstate: string;
  readonly state: string;
  /** Full machine ID, `global`, or `-`. */
  readonly target: string;
}

export async function unitFiles(c: FleetCluster): Promise<Map<string, UnitFileRow>> {
  const rows = await c.rows(['list-unit-files', '--fields=unit,dstate,state,target']);
  const out = new Map<string, UnitFileRow>();
  for (const [unit, dstate, state, target] of rows) {
    if (unit === undefined || dstate === undefined || state === undefined || target === undefined) {
      throw new Error(`short list-unit-files row: ${[unit, dstate, state, target].join(' ')}`);
    }
    out.set(unit, { unit, dstate, state, target: target.split('/')[0] as string });
  }
  return out;
}

/** unit → machine IDs of every row of list-units with this ACTIVE value (any, by default). */
export async function unitsOn(c: FleetCluster, active?: string): Promise<Map<string, string[]>> {
  const rows = await c.rows(['list-units', '--fields=unit,machine,active']);
  const out = new Map<string, string[]>();
  for (const [unit, machine, state] of rows) {
    if (!unit || !machine || (active !== undefined && state !== active)) continue;
    out.set(unit, [...(out.get(unit) ?? []), machine.split('/')[0] as string].sort());
  }
  return out;
}

/** The one machine a unit is active on, or undefined while it is not exactly one. */
export function single(active: ReadonlyMap<string, string[]>, unit: string): string | undefined {
  const ms = active.get(unit);
  return ms?.length === 1 ? ms[0] : undefined;
}

/** A unit as the API gives it (with our `unplacedReason`), read through a machine's socket. */
export async function apiUnit(c: FleetCluster, name: string, machine?: Machine): Promise<Unit | undefined> {
  const client = new FleetClient({ endpoint: c.endpoint(machine) });
  try {
    return await client.getUnit(name);
  } finally {
    client.close();
  }
}

/** systemd's properties of units in one machine: unit → property → value. */
export async function systemdShow(
  c: FleetCluster,
  machine: Machine,
  units: readonly string[],
  props: readonly string[],
): Promise<Map<string, Record<string, string>>> {
  const r = await c.lab.exec(machine, [
    'systemctl',
    'show',
    '--no-pager',
    `--property=Id,${props.join(',')}`,
    ...units,
  ]);
  if (r.code !== 0) throw new Error(`systemctl show in ${machine.name} exited ${r.code}: ${r.stderr}`);
  const out = new Map<string, Record<string, string>>();
  for (const block of r.stdout.split(/\n\n+/)) {
    const rec: Record<string, string> = {};
    for (const line of block.split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) rec[line.slice(0, eq)] = line.slice(eq + 1);
    }
    if (rec.Id !== undefined) out.set(rec.Id, rec);
  }
  // systemctl show prints the blocks in argument order; an unknown unit still gets one.
  return out;
}

/** `ActiveState/SubState` of a unit in a machine (`inactive/dead` for units systemd does not know). */
export async function systemdState(c: FleetCluster, machine: Machine, unit: string): Promise<string> {
  const s = (await systemdShow(c, machine, [unit], ['ActiveState', 'SubState'])).get(unit);
  return `${s?.ActiveState ?? '?'}/${s?.SubState ?? '?'}`;
}

/** The machines that a machine ID (full or 8-char prefix) is not. */
export function othersThan(c: FleetCluster, id: string): Machine[] {
  return c.machines.filter((m) => m.running && !m.machineID.startsWith(id));
}

/** Destroys units (ignoring ones already gone) and waits until no listing shows them. */
export async function destroyAll(c: FleetCluster, units: readonly string[]): Promise<void> {
  if (units.length === 0) return;
  await c.ok(['destroy', ...units]);
  const gone = new Set(units);
  await converge(
    c,
    async () => {
      const files = await unitFiles(c);
      const states = await unitsOn(c);
      const left = [...gone].filter((u) => files.has(u) || states.has(u));
      if (left.length > 0) throw new Error(`still listed: ${left.join(', ')}`);
      return true;
    },
    { timeoutMs: 30_000, message: `units ${units.join(', ')} destroyed` },
  );
}
