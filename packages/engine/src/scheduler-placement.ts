import type { LoadTree } from './scheduler-load-tree.js';

/** What the placement state needs to know about units to check conflicts, by unit index. */
export interface ConflictIndex {
  /** 1 for a global unit (placed on many machines). */
  readonly global: Uint8Array;
  /**
   * Units named by each unit's literal Conflicts/Replaces globs (never itself).
   * Replaces counts as a conflict: a unit and the one it replaces never share a machine.
   */
  readonly litTargets: readonly (readonly number[])[];
  /** Ids of each unit's wildcard Conflicts/Replaces globs. */
  readonly wildGlobs: readonly (readonly number[])[];
  /** Ids of the wildcard globs (of any unit) that match each unit's name. */
  readonly matchedBy: readonly (readonly number[])[];
}

/**
 * The placements of a decision in progress, with the indexes that make a
 * conflict check cost O(globs of the unit) instead of O(units on the machine):
 *
 * - a unit's literal glob `x` conflicts on machine m iff unit x is on m;
 * - its wildcard glob g conflicts iff some unit on m matches g (`matches[g,m]`);
 * - another unit's literal glob naming it: `litBlocked[u,m]`;
 * - another unit's wildcard glob matching it: `holders[g,m]` for g in matchedBy.
 *
 * Counters live in maps keyed by `x * machineCount + m`.
 */
export class PlacementState {
  /** Units placed per machine, including globals. */
  readonly load: Int32Array;
  /**
   * Units placed per machine, built on first use: only wording an unplaced
   * reason needs it, and keeping it for every placement costs a Set insert each.
   */
  private byMachine: Set<number>[] | undefined;
  /** Non-global unit → machine, or -1. */
  private readonly single: Int32Array;
  /** Global unit → its machines. */
  private readonly multi: (Set<number> | undefined)[];
  private readonly treesOf: LoadTree[][];
  private readonly litBlocked = new Map<number, number>();
  private readonly holders = new Map<number, number>();
  private readonly matches = new Map<number, number>();
  /**
   * How many machines have a nonzero counter, per unit (litBlocked) or glob
   * (holders, matches): when one reaches the machine count, a unit it concerns
   * conflicts everywhere, and {@link blockedEverywhere} says so without
   * visiting every machine (oversubscribed replicas, a conflicting global).
   */
  private readonly litBlockedOn = new Map<number, number>();
  private readonly holdersOn = new Map<number, number>();
  private readonly matchesOn = new Map<number, number>();

  constructor(
    private readonly units: ConflictIndex,
    private readonly unitCount: number,
    private readonly machineCount: number,
  ) {
    this.load = new Int32Array(machineCount);
    this.single = new Int32Array(unitCount).fill(-1);
    this.multi = new Array<Set<number> | undefined>(unitCount).fill(undefined);
    for (let u = 0; u < unitCount; u++) if (units.global[u] === 1) this.multi[u] = new Set();
    this.treesOf = Array.from({ length: machineCount }, () => []);
  }

  /** Keeps `tree` up to date with the loads of `machines` from now on. */
  track(tree: LoadTree, machines: readonly number[]): void {
    for (const m of machines) this.treesOf[m]!.push(tree);
  }

  isOn(u: number, m: number): boolean {
    const set = this.multi[u];
    return set === undefined ? this.single[u] === m : set.has(m);
  }

  isPlaced(u: number): boolean {
    const set = this.multi[u];
    return set === undefined ? this.single[u]! >= 0 : set.size > 0;
  }

  /** The machine of a non-global unit, or -1. */
  machineOf(u: number): number {
    return this.single[u]!;
  }

  /** Every machine of a unit, ascending. */
  machinesOf(u: number): number[] {
    const set = this.multi[u];
    if (set === undefined) {
      const m = this.single[u]!;
      return m >= 0 ? [m] : [];
    }
    return [...set].sort((a, b) => a - b);
  }

  /** True if unit `u` (not placed on `m`) would conflict with a unit placed on `m`. */
  conflicts(u: number, m: number): boolean {
    const units = this.units;
    for (const t of units.litTargets[u]!) if (this.isOn(t, m)) return true;
    const n = this.machineCount;
    for (const g of units.wildGlobs[u]!) if (this.matches.has(g * n + m)) return true;
    if (this.litBlocked.has(u * n + m)) return true;
    for (const g of units.matchedBy[u]!) if (this.holders.has(g * n + m)) return true;
    return false;
  }

  /**
   * True if one of `u`'s own conflict sources alone rules out every machine: a
   * cheap sufficient test for "nowhere to go". False does not promise a place.
   */
  blockedEverywhere(u: number): boolean {
    const n = this.machineCount;
    if (n === 0) return true;
    const units = this.units;
    for (const t of units.litTargets[u]!) if (this.multi[t]?.size === n) return true;
    for (const g of units.wildGlobs[u]!) if (this.matchesOn.get(g) === n) return true;
    if (this.litBlockedOn.get(u) === n) return true;
    for (const g of units.matchedBy[u]!) if (this.holdersOn.get(g) === n) return true;
    return false;
  }

  /** Places `u` on `m` (the caller has checked that it may go there). */
  add(u: number, m: number): void {
    const set = this.multi[u];
    if (set === undefined) this.single[u] = m;
    else set.add(m);
    this.byMachine?.[m]!.add(u);
    this.load[m]!++;
    for (const tree of this.treesOf[m]!) tree.update(m);
    this.index(u, m, 1);
  }

  /** Removes `u` from `m`. */
  remove(u: number, m: number): void {
    const set = this.multi[u];
    if (set === undefined) this.single[u] = -1;
    else set.delete(m);
    this.byMachine?.[m]!.delete(u);
    this.load[m]!--;
    for (const tree of this.treesOf[m]!) tree.update(m);
    this.index(u, m, -1);
  }

  /**
   * Units on `m` that conflict with `u`, in a deterministic order, stopping once
   * `limit` are found. Slow path: used only to word an unplaced reason.
   */
  conflictingUnitsOn(u: number, m: number, limit: number): number[] {
    const found: number[] = [];
    for (const t of this.units.litTargets[u]!) {
      if (found.length < limit && this.isOn(t, m)) found.push(t);
    }
    for (const v of this.unitsOn(m)) {
      if (found.length >= limit) break;
      if (v !== u && !found.includes(v) && this.pairConflicts(u, v)) found.push(v);
    }
    return found;
  }

  /** The units on machine `m`. */
  unitsOn(m: number): ReadonlySet<number> {
    if (this.byMachine === undefined) {
      const byMachine = Array.from({ length: this.machineCount }, () => new Set<number>());
      for (let u = 0; u < this.unitCount; u++) {
        const set = this.multi[u];
        if (set !== undefined) for (const on of set) byMachine[on]!.add(u);
        else if (this.single[u]! >= 0) byMachine[this.single[u]!]!.add(u);
      }
      this.byMachine = byMachine;
    }
    return this.byMachine[m]!;
  }

  private pairConflicts(u: number, v: number): boolean {
    const { litTargets, wildGlobs, matchedBy } = this.units;
    if (litTargets[v]!.includes(u)) return true;
    for (const g of wildGlobs[u]!) if (matchedBy[v]!.includes(g)) return true;
    for (const g of wildGlobs[v]!) if (matchedBy[u]!.includes(g)) return true;
    return false;
  }

  private index(u: number, m: number, delta: 1 | -1): void {
    const units = this.units;
    const n = this.machineCount;
    for (const t of units.litTargets[u]!) bump(this.litBlocked, t * n + m, delta, this.litBlockedOn, t);
    for (const g of units.wildGlobs[u]!) bump(this.holders, g * n + m, delta, this.holdersOn, g);
    for (const g of units.matchedBy[u]!) bump(this.matches, g * n + m, delta, this.matchesOn, g);
  }
}

/** Adds `delta` to `counts[key]`, and to `machines[of]` when that counter turns nonzero or zero. */
function bump(
  counts: Map<number, number>,
  key: number,
  delta: 1 | -1,
  machines: Map<number, number>,
  of: number,
): void {
  const next = (counts.get(key) ?? 0) + delta;
  if (next === 0) counts.delete(key);
  else counts.set(key, next);
  if (next === 0 || (next === 1 && delta === 1)) {
    const on = (machines.get(of) ?? 0) + delta;
    if (on === 0) machines.delete(of);
    else machines.set(of, on);
  }
}
