import { parseRequirements, type JobState, type UnitOption } from '@fleet/core';
import type { MachineInfo, PlacementRecord, StateRecord, UnitStateInfo } from '@fleet/registry';

/**
 * Pure functions from registry records to fleet's JSON entities: what a
 * unit's current state and machine are (fleet-compat §4), and the JSON
 * objects themselves, built in fleet's (Go's) field order with empty fields
 * left out.
 */

/** `Unit` as served: fleet's fields in Go's order, plus our `unplacedReason`. */
export interface UnitJson {
  currentState?: JobState;
  desiredState?: JobState;
  machineID?: string;
  name: string;
  options?: Array<{ name: string; section: string; value: string }>;
  unplacedReason?: string;
}

/** `UnitState` as served. */
export interface UnitStateJson {
  hash?: string;
  machineID?: string;
  name: string;
  systemdActiveState?: string;
  systemdLoadState?: string;
  systemdSubState?: string;
}

/** `Machine` as served. */
export interface MachineJson {
  id: string;
  metadata?: Record<string, string>;
  primaryIP?: string;
}

/** What the API knows about one unit when it answers for it. */
export interface UnitFacts {
  readonly name: string;
  readonly hash: string;
  readonly desiredState: JobState;
  readonly options: readonly UnitOption[];
  /** This unit's placements: machine ID → what the engine told that machine. */
  readonly placements: ReadonlyMap<string, PlacementRecord>;
  /** States reported for this unit: machine ID → record. */
  readonly states: ReadonlyMap<string, StateRecord>;
  /** The engine's reason for not placing the unit, if it wrote one. */
  readonly unplacedReason: string | undefined;
}

/** systemd active states in which a unit counts as started (the agent's own rule too). */
const STARTED_ACTIVE_STATES: ReadonlySet<string> = new Set(['active', 'activating', 'reloading']);

/**
 * The current state of a unit on the machine it is placed on:
 * - `inactive` until that machine reports a state for it;
 * - `loaded` once it does;
 * - `launched` once systemd reports it active, activating or reloading — or
 *   `failed` while the engine wants it launched there: the agent did start it
 *   and it died. Showing that as `launched` (with `systemdActiveState` saying
 *   `failed`) lets a client that waits for `launched` report the failure
 *   instead of waiting forever, which is what fleet's fleetctl would do.
 */
export function currentStateOn(placement: PlacementRecord, state: StateRecord | undefined): JobState {
  if (state === undefined) return 'inactive';
  const active = state.activeState ?? '';
  if (STARTED_ACTIVE_STATES.has(active)) return 'launched';
  if (active === 'failed' && placement.desiredState === 'launched') return 'launched';
  return 'loaded';
}

const RANK: Readonly<Record<JobState, number>> = { inactive: 0, loaded: 1, launched: 2 };

/** True when the unit's `[X-Fleet]` says `Global=true` (a malformed section counts as not global). */
export function isGlobalUnit(name: string, options: readonly UnitOption[]): boolean {
  if (!options.some((o) => o.section === 'X-Fleet' && o.name === 'Global')) return false;
  try {
    return parseRequirements(options, name).global;
  } catch {
    return false;
  }
}

/**
 * The machine a (non-global) unit counts as placed on when the engine has
 * more than one placement for it for a moment (a move in progress): the one
 * that reports a state, then the one with the current hash, then the lowest ID.
 */
export function primaryPlacement(facts: UnitFacts): string | undefined {
  if (facts.placements.size === 1) return facts.placements.keys().next().value;
  let best: string | undefined;
  let bestScore = -1;
  for (const [machineID, placement] of [...facts.placements].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const score = (facts.states.has(machineID) ? 2 : 0) + (placement.hash === facts.hash ? 1 : 0);
    if (score > bestScore) {
      best = machineID;
      bestScore = score;
    }
  }
  return best;
}

/**
 * A unit as fleet's API shows it. `machineID` is the machine the engine placed
 * it on; a global unit has no single machine, so it has none (as in fleet) and
 * its current state is the least advanced one over its machines.
 * `unplacedReason` (ours) is set only for a unit that should run and runs nowhere.
 */
export function unitJson(facts: UnitFacts): UnitJson {
  let current: JobState = 'inactive';
  let machineID: string | undefined;
  if (facts.placements.size > 0) {
    if (isGlobalUnit(facts.name, facts.options)) {
      let least: JobState | undefined;
      for (const [m, placement] of facts.placements) {
        const s = currentStateOn(placement, facts.states.get(m));
        if (least === undefined || RANK[s] < RANK[least]) least = s;
      }
      current = least ?? 'inactive';
    } else {
      machineID = primaryPlacement(facts);
      const placement = machineID === undefined ? undefined : facts.placements.get(machineID);
      if (machineID !== undefined && placement !== undefined) {
        current = currentStateOn(placement, facts.states.get(machineID));
      }
    }
  }
  const unplaced =
    facts.placements.size === 0 && facts.desiredState !== 'inactive' && facts.unplacedReason
      ? facts.unplacedReason
      : undefined;
  // Assigned in fleet's key order (JSON keeps insertion order); empty fields left out.
  const out = { currentState: current, desiredState: facts.desiredState } as UnitJson;
  if (machineID !== undefined) out.machineID = machineID;
  out.name = facts.name;
  if (facts.options.length > 0) out.options = facts.options.map(optionJson);
  if (unplaced !== undefined) out.unplacedReason = unplaced;
  return out;
}

/**
 * One unit option. Unlike fleet (whose Go schema omitted empty strings), an
 * empty value is sent as `""`: Go clients read a missing and an empty value
 * alike, and strict clients need the field.
 */
function optionJson(o: UnitOption): { name: string; section: string; value: string } {
  return { name: o.name, section: o.section, value: o.value };
}

/** A reported unit state as fleet's `UnitState`. */
export function unitStateJson(s: UnitStateInfo): UnitStateJson {
  return {
    ...(s.hash ? { hash: s.hash } : {}),
    ...(s.machineID ? { machineID: s.machineID } : {}),
    name: s.unit,
    ...(s.activeState ? { systemdActiveState: s.activeState } : {}),
    ...(s.loadState ? { systemdLoadState: s.loadState } : {}),
    ...(s.subState ? { systemdSubState: s.subState } : {}),
  };
}

/** A machine as fleet's `Machine`; metadata keys sorted, as Go encodes maps. */
export function machineJson(m: MachineInfo): MachineJson {
  const out: MachineJson = { id: m.id };
  const keys = Object.keys(m.metadata).sort();
  if (keys.length > 0) {
    const metadata: Record<string, string> = {};
    for (const k of keys) metadata[k] = m.metadata[k] as string;
    out.metadata = metadata;
  }
  if (m.primaryIP) out.primaryIP = m.primaryIP;
  return out;
}

/** Orders reported states by unit, then machine (fleet's list-units order). */
export function compareStates(a: UnitStateInfo, b: UnitStateInfo): number {
  if (a.unit !== b.unit) return a.unit < b.unit ? -1 : 1;
  if (a.machineID !== b.machineID) return a.machineID < b.machineID ? -1 : 1;
  return 0;
}

/**
 * Of several machines reporting a unit, the one `GET state/{unit}` shows: the
 * machine it is placed on if that one reports it, else the lowest machine ID.
 */
export function chooseState(
  states: readonly UnitStateInfo[],
  placedOn: ReadonlySet<string>,
): UnitStateInfo | undefined {
  const sorted = [...states].sort(compareStates);
  return sorted.find((s) => placedOn.has(s.machineID)) ?? sorted[0];
}
