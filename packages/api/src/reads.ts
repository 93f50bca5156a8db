import type { PlacementRecord, Registry, StateRecord, UnitRecord, UnitStateInfo } from '@fleet/registry';
import type { ClusterMirror } from './mirror.js';
import { isGlobalUnit, unitJson, type UnitJson } from './views.js';

/**
 * How the API reads the cluster. Listings come from the keyspace mirror
 * (see mirror.ts); single units are read from etcd through the Registry with
 * a handful of key reads, never per unit in a loop.
 */

/** Above this many live machines, finding one unit's placement reads the schedule prefix instead of one key per machine. */
const PER_MACHINE_LOOKUP_LIMIT = 64;

/** Every unit as fleet's JSON, sorted by name, from the keyspace mirror (no etcd reads per listing). */
export async function readAllUnits(mirror: ClusterMirror): Promise<UnitJson[]> {
  const view = await mirror.read();
  const none = new Map<string, never>();
  return [...view.units.keys()]
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((name) => {
      const u = view.units.get(name) as UnitRecord;
      return unitJson({
        name,
        hash: u.hash,
        desiredState: u.desiredState,
        options: view.bodies.get(u.hash) ?? [],
        placements: view.placements.get(name) ?? none,
        states: view.states.get(name) ?? none,
        unplacedReason: view.unplaced.get(name),
      });
    });
}

function groupStates(states: readonly UnitStateInfo[]): Map<string, Map<string, StateRecord>> {
  const out = new Map<string, Map<string, StateRecord>>();
  for (const s of states) {
    let m = out.get(s.unit);
    if (m === undefined) out.set(s.unit, (m = new Map()));
    m.set(s.machineID, s);
  }
  return out;
}

/** The placement of `unit` on each of `machineIDs` that has one (one key read per machine, in parallel). */
async function placementsOn(
  registry: Registry,
  unit: string,
  machineIDs: readonly string[],
): Promise<Map<string, PlacementRecord>> {
  const found = new Map<string, PlacementRecord>();
  const kvs = await Promise.all(machineIDs.map((m) => registry.kv.get(registry.keys.placement(m, unit))));
  kvs.forEach((kv, i) => {
    const rec = kv === undefined ? undefined : registry.decodePlacement(kv.value);
    if (rec !== undefined) found.set(machineIDs[i] as string, rec);
  });
  return found;
}

/**
 * Where one unit is placed, cheaply. Placements are keyed by machine, so the
 * machines that report the unit are asked first (a running unit is reported
 * by the machine it is placed on). Only when that finds nothing for a unit
 * the engine may have placed (or for a global unit) are the other live
 * machines asked — one key each, or the whole schedule prefix when there are
 * many machines.
 */
export async function findPlacements(
  registry: Registry,
  unit: string,
  hints: {
    readonly reportingMachines: readonly string[];
    readonly mayBePlaced: boolean;
    readonly global: boolean;
  },
): Promise<Map<string, PlacementRecord>> {
  const found = await placementsOn(registry, unit, hints.reportingMachines);
  if (!hints.global && (found.size > 0 || !hints.mayBePlaced)) return found;
  const asked = new Set(hints.reportingMachines);
  const others = (await registry.listMachines()).map((m) => m.id).filter((id) => !asked.has(id));
  if (others.length <= PER_MACHINE_LOOKUP_LIMIT) {
    for (const [m, rec] of await placementsOn(registry, unit, others)) found.set(m, rec);
    return found;
  }
  for (const p of await registry.listPlacements()) {
    if (p.unit === unit && !found.has(p.machineID)) found.set(p.machineID, p);
  }
  return found;
}

/** One unit as fleet's JSON, or undefined if it does not exist: a handful of key reads. */
export async function readUnit(registry: Registry, name: string): Promise<UnitJson | undefined> {
  const [unit, states, unplacedReason] = await Promise.all([
    registry.getUnit(name),
    registry.listStates({ unitName: name }),
    registry.getUnplacedReason(name),
  ]);
  if (unit === undefined) return undefined;
  const global = isGlobalUnit(name, unit.options);
  const placements = await findPlacements(registry, name, {
    reportingMachines: states.map((s) => s.machineID),
    // The engine places only units that should be loaded or launched; a unit it
    // could not place has a reason recorded instead.
    mayBePlaced: unit.desiredState !== 'inactive' && unplacedReason === undefined,
    global,
  });
  return unitJson({
    name,
    hash: unit.hash,
    desiredState: unit.desiredState,
    options: unit.options,
    placements,
    states: groupStates(states).get(name) ?? new Map(),
    unplacedReason,
  });
}
