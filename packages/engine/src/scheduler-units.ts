import { isLiteralGlob, type Requirements } from '@fleet/core';
import { GlobIndex } from './scheduler-glob-index.js';
import { stronglyConnected } from './scheduler-graph.js';
import type { MachineIndex, MetadataSelector } from './scheduler-machines.js';
import type { ConflictIndex } from './scheduler-placement.js';
import type { SchedulerUnit } from './scheduler-types.js';

const NONE: readonly number[] = [];

/**
 * The loaded/launched units of one decision, indexed 0..n-1 in name order,
 * with everything decide derives from their requirements: conflict globs
 * resolved to units and glob ids, MachineOf peers and followers, Replaces
 * targets, MachineOf cycles, and the processing order.
 *
 * Stored as parallel arrays rather than one object per unit: with 100,000
 * units, long-lived per-unit objects make the garbage collector copy them
 * around for the whole decision, and that cost grew faster than the units.
 */
export class UnitTable implements ConflictIndex {
  /** Every unit's name (any state), sorted; the table follows this order. */
  readonly sortedNames: readonly string[];
  /** Position in {@link sortedNames} → unit index, or -1 for an inactive unit. */
  readonly activeAt: Int32Array;
  /** Number of loaded/launched units. */
  readonly count: number;
  readonly names: string[] = [];
  readonly requirements: Requirements[] = [];
  readonly global: Uint8Array;
  readonly litTargets: (readonly number[])[];
  readonly wildGlobs: (readonly number[])[];
  readonly matchedBy: (readonly number[])[];
  /** MachineOf units that are loaded/launched, deduplicated, never the unit itself. */
  readonly peers: (readonly number[])[];
  /** 1 if some MachineOf unit does not exist or is inactive: the unit cannot be placed. */
  readonly missingPeer: Uint8Array;
  /** Units whose MachineOf names this one. */
  readonly followers: (readonly number[])[];
  /** Units this one may take the machine of (Replaces minus cycles); empty for globals. */
  readonly replaceTargets: (readonly number[])[];
  readonly selector: (MetadataSelector | undefined)[];
  /** Machines named by MachineID (possibly none live); undefined without MachineID. */
  readonly pinned: (readonly number[] | undefined)[];
  /** Names of the units of the MachineOf cycle a unit is part of. */
  readonly cycle: (readonly string[] | undefined)[];
  /**
   * Processing order: globals without peers by name, then the other units by
   * MachineOf depth (peers before followers) and name. Unit → rank, rank → unit.
   */
  readonly rank: Int32Array;
  readonly byRank: Int32Array;
  /** Global units, by name. */
  readonly globals: number[] = [];

  constructor(units: ReadonlyMap<string, SchedulerUnit>, machines: MachineIndex) {
    // Sort positions by name rather than names followed by a lookup each: no
    // random-order lookups in the caller's map, no per-entry pair objects. Order
    // is by UTF-16 code units (`<`), which lookup() and the task walk rely on.
    const keys = [...units.keys()];
    const values = [...units.values()];
    const order = Array.from({ length: keys.length }, (_, i) => i);
    order.sort((a, b) => (keys[a]! < keys[b]! ? -1 : keys[a]! > keys[b]! ? 1 : 0));
    const sortedNames = new Array<string>(keys.length);
    this.activeAt = new Int32Array(keys.length).fill(-1);
    for (let i = 0; i < order.length; i++) {
      const name = keys[order[i]!]!;
      const unit = values[order[i]!]!;
      sortedNames[i] = name;
      if (unit.desiredState === 'inactive') continue;
      this.activeAt[i] = this.names.length;
      this.names.push(name);
      this.requirements.push(unit.requirements);
    }
    this.sortedNames = sortedNames;
    const n = (this.count = this.names.length);
    this.global = new Uint8Array(n);
    this.litTargets = new Array<readonly number[]>(n).fill(NONE);
    this.wildGlobs = new Array<readonly number[]>(n).fill(NONE);
    this.matchedBy = new Array<readonly number[]>(n).fill(NONE);
    this.peers = new Array<readonly number[]>(n).fill(NONE);
    this.missingPeer = new Uint8Array(n);
    this.followers = new Array<readonly number[]>(n).fill(NONE);
    this.replaceTargets = new Array<readonly number[]>(n).fill(NONE);
    this.selector = new Array<MetadataSelector | undefined>(n).fill(undefined);
    this.pinned = new Array<readonly number[] | undefined>(n).fill(undefined);
    this.cycle = new Array<readonly string[] | undefined>(n).fill(undefined);
    this.rank = new Int32Array(n);
    this.byRank = new Int32Array(n);

    const globs = new GlobIndex();
    const replace = this.readRequirements(globs, machines);
    this.matchGlobs(globs, replace);
    this.rankUnits();
  }

  /**
   * The index of the loaded/launched unit with this name. A binary search over
   * the sorted names rather than a Map: only MachineOf peers and literal globs
   * need it, and filling a Map with every name costs more than those searches.
   */
  lookup(name: string): number | undefined {
    const names = this.sortedNames;
    let lo = 0;
    let hi = names.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const here = names[mid]!;
      if (here === name) {
        const u = this.activeAt[mid]!;
        return u < 0 ? undefined : u;
      }
      if (here < name) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  /** Globs, peers, MachineID and MachineMetadata per unit. Returns the Replaces globs per unit. */
  private readRequirements(globs: GlobIndex, machines: MachineIndex): ReplaceGlobs {
    const replace: ReplaceGlobs = { literal: [], wild: [], globIds: new Set() };
    for (let u = 0; u < this.count; u++) {
      const name = this.names[u]!;
      const req = this.requirements[u]!;
      if (req.global) this.global[u] = 1;
      const conflicts = req.conflicts;
      const replaces = req.replaces;
      if (replaces.length > 0) {
        replace.literal[u] = [];
        replace.wild[u] = [];
      }
      // Conflicts, then Replaces: both keep units apart. (Plain loops, no
      // closures: this runs once per unit.)
      for (let i = 0; i < conflicts.length + replaces.length; i++) {
        const isReplace = i >= conflicts.length;
        const glob = isReplace ? replaces[i - conflicts.length]! : conflicts[i]!;
        if (isLiteralGlob(glob)) {
          const t = this.lookup(glob);
          if (t === undefined || t === u) continue;
          if (!this.litTargets[u]!.includes(t)) this.litTargets[u] = [...this.litTargets[u]!, t];
          if (isReplace) replace.literal[u]!.push(t);
        } else {
          const g = globs.idOf(glob);
          if (!this.wildGlobs[u]!.includes(g)) this.wildGlobs[u] = [...this.wildGlobs[u]!, g];
          if (isReplace) {
            replace.globIds.add(g);
            replace.wild[u]!.push(g);
          }
        }
      }
      for (const peer of req.machineOf) {
        if (peer === name) continue; // a unit is always on its own machine
        const p = this.lookup(peer);
        if (p === undefined) this.missingPeer[u] = 1;
        else if (!this.peers[u]!.includes(p)) this.peers[u] = [...this.peers[u]!, p];
      }
      if (req.machineMetadata.size > 0) this.selector[u] = machines.selector(req.machineMetadata);
      if (req.machineID !== undefined) this.pinned[u] = machines.matchMachineID(req.machineID);
    }
    return replace;
  }

  /** Which wildcard globs match each name; followers; Replaces targets, minus cycles. */
  private matchGlobs(globs: GlobIndex, replace: ReplaceGlobs): void {
    const matchingUnits = new Map<number, number[]>();
    if (globs.size > 0) {
      for (let u = 0; u < this.count; u++) {
        const matchedBy = globs.matching(this.names[u]!);
        this.matchedBy[u] = matchedBy;
        if (replace.globIds.size === 0) continue;
        for (const g of matchedBy) {
          if (!replace.globIds.has(g)) continue;
          const list = matchingUnits.get(g);
          if (list === undefined) matchingUnits.set(g, [u]);
          else list.push(u);
        }
      }
    }

    for (let u = 0; u < this.count; u++) {
      for (const p of this.peers[u]!) {
        const followers = this.followers[p]!;
        this.followers[p] = followers === NONE ? [u] : [...followers, u];
      }
      const literals = replace.literal[u];
      if (literals === undefined || this.global[u] === 1) continue;
      const targets = new Set(literals);
      for (const g of replace.wild[u] ?? NONE) {
        for (const t of matchingUnits.get(g) ?? NONE) if (t !== u) targets.add(t);
      }
      if (targets.size > 0) this.replaceTargets[u] = [...targets].sort((a, b) => a - b);
    }

    // Circular Replaces is refused at submit time; if one gets here anyway, the
    // units of the cycle do not take each other's machines (they only stay apart).
    const components = stronglyConnected(this.count, (u) => this.replaceTargets[u]!);
    for (let u = 0; u < this.count; u++) {
      const targets = this.replaceTargets[u]!;
      if (targets.length === 0) continue;
      const c = components.component[u]!;
      if (components.size[c]! > 1) {
        const kept = targets.filter((t) => components.component[t] !== c);
        this.replaceTargets[u] = kept.length > 0 ? kept : NONE;
      }
    }
  }

  /** Finds MachineOf cycles and sets the processing order. */
  private rankUnits(): void {
    const n = this.count;
    const machineOf = stronglyConnected(n, (u) => this.peers[u]!);
    const cycles = new Map<number, string[]>();
    for (let u = 0; u < n; u++) {
      const c = machineOf.component[u]!;
      if (machineOf.size[c]! <= 1) continue;
      let members = cycles.get(c);
      if (members === undefined) cycles.set(c, (members = []));
      members.push(this.names[u]!);
      this.cycle[u] = members;
    }
    // Components come out peers first, so every peer's depth is known in time.
    const depth = new Int32Array(n);
    for (const u of machineOf.order) {
      let d = 0;
      const c = machineOf.component[u];
      for (const p of this.peers[u]!) {
        if (machineOf.component[p] !== c) d = Math.max(d, depth[p]! + 1);
      }
      depth[u] = d;
    }
    const buckets: number[][] = [];
    let r = 0;
    for (let u = 0; u < n; u++) {
      if (this.global[u] === 1) this.globals.push(u);
      // A global with MachineOf peers is refused at submit; should one get here,
      // it is ranked after its peers like any follower.
      if (this.global[u] === 1 && this.peers[u]!.length === 0) {
        this.rank[u] = r;
        this.byRank[r++] = u;
      } else (buckets[depth[u]!] ??= []).push(u);
    }
    for (const bucket of buckets) {
      for (const u of bucket ?? NONE) {
        this.rank[u] = r;
        this.byRank[r++] = u;
      }
    }
  }
}

/** Per unit with Replaces: the units its literal globs name and its wildcard glob ids. */
interface ReplaceGlobs {
  readonly literal: (number[] | undefined)[];
  readonly wild: (number[] | undefined)[];
  /** Ids of all wildcard globs used in Replaces. */
  readonly globIds: Set<number>;
}
