import { isLiteralGlob, type Requirements } from '@fleet/core';
import { GlobIndex } from './scheduler-glob-index.js';
import { stronglyConnected } from './scheduler-graph.js';
import { LoadTree } from './scheduler-load-tree.js';
import { MachineIndex, type MetadataSelector } from './scheduler-machines.js';
import { PlacementState, type ConflictProfile } from './scheduler-placement.js';
import { REASONS, UNPLACED, type Reason } from './scheduler-reasons.js';
import type { Decision, SchedulerSnapshot, SchedulerTask } from './scheduler-types.js';

const NONE: readonly number[] = [];
/** Up to this many candidate machines a linear scan is cheaper than keeping a LoadTree current. */
const SCAN_LIMIT = 32;
/** An unplaced reason lists at most this many conflicting units. */
const MAX_NAMES = 5;
/** An unplaced reason looks for conflicting units on at most this many machines. */
const EXPLAIN_MACHINES = 64;

/** A loaded or launched unit, with everything decide derives from its requirements. */
interface UnitRecord extends ConflictProfile {
  readonly name: string;
  readonly requirements: Requirements;
  /** MachineOf units that are loaded/launched, deduplicated, never itself. */
  readonly peers: readonly number[];
  /** Some MachineOf unit does not exist or is inactive: the unit cannot be placed. */
  readonly missingPeer: boolean;
  /** Units whose MachineOf names this one. */
  followers: readonly number[];
  /** Units this one may take the machine of (Replaces, minus cycles); empty for globals. */
  replaceTargets: readonly number[];
  readonly selector: MetadataSelector | undefined;
  /** Machines named by MachineID (possibly none live), or undefined without MachineID. */
  readonly pinned: readonly number[] | undefined;
  /** Names of the units of the MachineOf cycle this unit is part of. */
  cycle: readonly string[] | undefined;
}

/**
 * One run of the scheduling algorithm over a snapshot (see docs/scheduler.md):
 *
 * 1. index units (sorted by name) and live machines (sorted by ID);
 * 2. keep every current placement that is still valid ("stay" pass), in a fixed
 *    order so that when two current placements conflict the outcome is
 *    deterministic;
 * 3. place everything else from a queue ordered by rank: globals first, then
 *    non-globals by MachineOf depth (peers before followers) and name;
 * 4. diff final against initial placements into sorted tasks.
 */
export class Planner {
  private readonly machines: MachineIndex;
  private readonly machineCount: number;
  private readonly units: UnitRecord[] = [];
  /** Every unit's name, sorted; units are indexed in this order (inactive ones skipped). */
  private readonly sortedNames: string[];
  /** Position in {@link sortedNames} → unit index, or -1 for inactive units. */
  private readonly activeAt: Int32Array;
  /** Position in {@link sortedNames} → the unit's placements in the snapshot. */
  private readonly before: (ReadonlySet<string> | undefined)[];
  /** Sorted names of units that are placed but no longer exist. */
  private readonly gone: string[] = [];
  private readonly state: PlacementState;
  /** Unit → position in processing order; unit by position. */
  private readonly rank: Int32Array;
  private readonly byRank: Int32Array;
  private readonly globals: number[] = [];
  private globalTree: LoadTree | undefined;
  private readonly selectorTrees = new Map<MetadataSelector, LoadTree>();
  /** Live machines each unit was on at the start (after dropping duplicates). */
  private readonly initial: (readonly number[] | undefined)[];
  /** `u * machineCount + m` of current placements that a replacer pushes off. */
  private readonly replacedAtStart = new Set<number>();
  private readonly stayDone: Uint8Array;
  /** Why a unit left a machine, by `name\nmachineID`. */
  private readonly removals = new Map<string, Reason>();
  private readonly scheduleReason: Reason[];
  private readonly failed = new Set<number>();
  private readonly queue: number[] = [];
  private readonly queued: Uint8Array;
  private takeoversLeft: number;

  constructor(private readonly snapshot: SchedulerSnapshot) {
    this.machines = new MachineIndex(snapshot.machines);
    this.machineCount = this.machines.count;
    this.sortedNames = [...snapshot.units.keys()].sort();
    this.activeAt = new Int32Array(this.sortedNames.length).fill(-1);
    this.before = new Array<ReadonlySet<string> | undefined>(this.sortedNames.length);
    this.buildUnits();
    const n = this.units.length;
    this.state = new PlacementState(this.units, this.machineCount);
    this.rank = new Int32Array(n);
    this.byRank = new Int32Array(n);
    this.rankUnits();
    this.initial = new Array<readonly number[] | undefined>(n);
    this.stayDone = new Uint8Array(n);
    this.scheduleReason = new Array<Reason>(n).fill(REASONS.placed);
    this.queued = new Uint8Array(n);
    // A safety net, not a semantic limit: with acyclic Replaces every takeover
    // pushes a unit strictly down the Replaces order, so this is never reached.
    this.takeoversLeft = n + 1;
  }

  run(): Decision {
    this.readPlacements();
    this.stayPass();
    for (let r = 0; r < this.byRank.length; r++) {
      const u = this.byRank[r]!;
      if (this.units[u]!.global || !this.state.isPlaced(u)) this.enqueue(u);
    }
    for (let u = this.dequeue(); u >= 0; u = this.dequeue()) {
      if (this.units[u]!.global) this.fillGlobal(u);
      else if (!this.state.isPlaced(u)) this.placeOne(u);
    }
    return this.decision();
  }

  // ---------------------------------------------------------------- indexing

  private buildUnits(): void {
    const active: string[] = [];
    const requirements: Requirements[] = [];
    for (let i = 0; i < this.sortedNames.length; i++) {
      const name = this.sortedNames[i]!;
      const unit = this.snapshot.units.get(name)!;
      if (unit.desiredState !== 'inactive') {
        this.activeAt[i] = active.length;
        active.push(name);
        requirements.push(unit.requirements);
      }
    }
    const globs = new GlobIndex();
    const replaceGlobs = new Set<number>();
    // Per unit with Replaces: the units its literal globs name, and its wildcard glob ids.
    const replaceLiterals: (number[] | undefined)[] = [];
    const replaceWild: (number[] | undefined)[] = [];

    for (let u = 0; u < active.length; u++) {
      const name = active[u]!;
      const req = requirements[u]!;
      let litTargets: number[] | readonly number[] = NONE;
      let wildGlobs: number[] | readonly number[] = NONE;
      const conflicts = req.conflicts;
      const replaces = req.replaces;
      // Conflicts first, then Replaces: both keep units apart. (No closure here:
      // this loop runs once per unit.)
      for (let i = 0; i < conflicts.length + replaces.length; i++) {
        const replace = i >= conflicts.length;
        const glob = replace ? replaces[i - conflicts.length]! : conflicts[i]!;
        if (replace && replaceLiterals[u] === undefined) {
          replaceLiterals[u] = [];
          replaceWild[u] = [];
        }
        if (isLiteralGlob(glob)) {
          const t = this.lookup(glob);
          if (t === undefined || t === u) continue;
          if (!litTargets.includes(t)) litTargets = [...litTargets, t];
          if (replace) replaceLiterals[u]!.push(t);
        } else {
          const g = globs.idOf(glob);
          if (!wildGlobs.includes(g)) wildGlobs = [...wildGlobs, g];
          if (replace) {
            replaceGlobs.add(g);
            replaceWild[u]!.push(g);
          }
        }
      }

      let peers: number[] | readonly number[] = NONE;
      let missingPeer = false;
      for (const peer of req.machineOf) {
        if (peer === name) continue; // a unit is always on its own machine
        const p = this.lookup(peer);
        if (p === undefined) missingPeer = true;
        else if (!peers.includes(p)) peers = [...peers, p];
      }

      this.units.push({
        name,
        requirements: req,
        global: req.global,
        litTargets,
        wildGlobs,
        matchedBy: NONE,
        peers,
        missingPeer,
        followers: NONE,
        replaceTargets: NONE,
        selector: req.machineMetadata.size > 0 ? this.machines.selector(req.machineMetadata) : undefined,
        pinned: req.machineID === undefined ? undefined : this.machines.matchMachineID(req.machineID),
        cycle: undefined,
      });
    }

    // Which wildcard globs match each name; and, for Replaces globs, the reverse.
    const matchingUnits = new Map<number, number[]>();
    if (globs.size > 0) {
      for (let u = 0; u < this.units.length; u++) {
        const unit = this.units[u]!;
        const matchedBy = globs.matching(unit.name);
        (unit as { matchedBy: readonly number[] }).matchedBy = matchedBy;
        if (replaceGlobs.size === 0) continue;
        for (const g of matchedBy) {
          if (!replaceGlobs.has(g)) continue;
          const list = matchingUnits.get(g);
          if (list === undefined) matchingUnits.set(g, [u]);
          else list.push(u);
        }
      }
    }

    for (let u = 0; u < this.units.length; u++) {
      const unit = this.units[u]!;
      for (const p of unit.peers) {
        const peer = this.units[p]!;
        peer.followers = peer.followers === NONE ? [u] : [...peer.followers, u];
      }
      const literals = replaceLiterals[u];
      if (literals === undefined || unit.global) continue;
      const targets = new Set(literals);
      for (const g of replaceWild[u] ?? NONE) {
        for (const t of matchingUnits.get(g) ?? NONE) if (t !== u) targets.add(t);
      }
      if (targets.size > 0) unit.replaceTargets = [...targets].sort((a, b) => a - b);
    }

    // Circular Replaces is refused at submit time; if one gets here anyway, the
    // units of the cycle do not take each other's machines (they only stay apart).
    const replaces = stronglyConnected(this.units.length, (u) => this.units[u]!.replaceTargets);
    for (let u = 0; u < this.units.length; u++) {
      const unit = this.units[u]!;
      if (unit.replaceTargets.length === 0) continue;
      const c = replaces.component[u];
      if (replaces.size[c!]! > 1) {
        const kept = unit.replaceTargets.filter((t) => replaces.component[t] !== c);
        unit.replaceTargets = kept.length > 0 ? kept : NONE;
      }
    }
  }

  /** Globals by name, then non-globals by MachineOf depth (peers first) and name. Finds MachineOf cycles. */
  private rankUnits(): void {
    const n = this.units.length;
    const machineOf = stronglyConnected(n, (u) => this.units[u]!.peers);
    const cycles = new Map<number, string[]>();
    for (let u = 0; u < this.units.length; u++) {
      const unit = this.units[u]!;
      const c = machineOf.component[u]!;
      if (machineOf.size[c]! <= 1) continue;
      let members = cycles.get(c);
      if (members === undefined) cycles.set(c, (members = []));
      members.push(unit.name);
      unit.cycle = members;
    }
    const depth = new Int32Array(n);
    const buckets: number[][] = [];
    for (const u of machineOf.order) {
      let d = 0;
      const c = machineOf.component[u];
      for (const p of this.units[u]!.peers) {
        if (machineOf.component[p] !== c) d = Math.max(d, depth[p]! + 1);
      }
      depth[u] = d;
    }
    let r = 0;
    for (let u = 0; u < n; u++) {
      const unit = this.units[u]!;
      if (unit.global) this.globals.push(u);
      // A global with MachineOf peers is refused at submit; should one get here,
      // it is ranked after its peers like any follower.
      if (unit.global && unit.peers.length === 0) {
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

  /**
   * The index of the loaded/launched unit with this name. A binary search over
   * the sorted names rather than a Map: only MachineOf peers and literal globs
   * need it, and filling a Map with every name costs more than those searches.
   */
  private lookup(name: string): number | undefined {
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

  // -------------------------------------------------------- current placements

  /** A shared one-element list `[m]`. */
  private justMachine(m: number): readonly number[] {
    let list = this.singletons[m];
    if (list === undefined) this.singletons[m] = list = [m];
    return list;
  }
  private readonly singletons: (readonly number[] | undefined)[] = [];

  private readPlacements(): void {
    const placements = this.snapshot.placements;
    let seen = 0;
    for (let i = 0; i < this.sortedNames.length; i++) {
      const name = this.sortedNames[i]!;
      const ids = placements.get(name);
      if (ids === undefined) continue;
      seen++;
      this.before[i] = ids;
      const u = this.activeAt[i]!;
      if (u < 0) {
        for (const id of ids) this.removed(name, id, REASONS.unitInactive);
        continue;
      }
      if (ids.size === 1) {
        // The common case, without allocating: one machine, live or not.
        for (const id of ids) {
          const m = this.machines.indexOf(id);
          if (m === undefined) this.removed(name, id, REASONS.machineGone);
          else this.initial[u] = this.justMachine(m);
        }
        continue;
      }
      let live: number[] = [];
      for (const id of ids) {
        const m = this.machines.indexOf(id);
        if (m === undefined) this.removed(name, id, REASONS.machineGone);
        else live.push(m);
      }
      if (live.length === 0) continue;
      if (live.length > 1) live.sort((a, b) => a - b);
      if (!this.units[u]!.global && live.length > 1) {
        // Keep one: the first (by ID) that still satisfies MachineID/MachineMetadata.
        const keep = live.find((m) => this.staticProblem(u, m) === undefined) ?? live[0]!;
        for (const m of live) if (m !== keep) this.removed(name, this.machines.ids[m]!, REASONS.duplicate);
        live = [keep];
      }
      this.initial[u] = live;
    }
    if (seen < placements.size) {
      for (const [name, ids] of placements) {
        if (this.snapshot.units.has(name)) continue;
        this.gone.push(name);
        for (const id of ids) this.removed(name, id, REASONS.unitGone);
      }
      this.gone.sort();
    }

    // The unit named in Replaces= is the one that moves: if a replacer and a unit
    // it replaces are found on one machine, the replaced one leaves.
    for (let r = 0; r < this.units.length; r++) {
      const unit = this.units[r]!;
      if (unit.replaceTargets.length === 0) continue;
      for (const m of this.initial[r] ?? NONE) {
        if (this.staticProblem(r, m) !== undefined) continue;
        for (const t of unit.replaceTargets) {
          if (this.initial[t]?.includes(m)) {
            this.replacedAtStart.add(t * this.machineCount + m);
            this.removed(this.units[t]!.name, this.machines.ids[m]!, REASONS.replaced);
          }
        }
      }
    }
  }

  /**
   * Keeps valid current placements: non-globals by rank (so peers are settled
   * before their followers), then globals. When two current placements on one
   * machine conflict, the one processed first stays.
   */
  private stayPass(): void {
    const visit = (u: number): void => {
      this.stayDone[u] = 1;
      for (const m of this.initial[u] ?? NONE) {
        if (this.replacedAtStart.has(u * this.machineCount + m)) continue;
        const problem = this.stayProblem(u, m);
        if (problem === undefined) {
          this.state.add(u, m);
          continue;
        }
        this.removed(this.units[u]!.name, this.machines.ids[m]!, problem);
        // A follower may have stayed on the strength of this global staying too.
        if (this.units[u]!.global) {
          for (const f of this.evictFollowers(u, m)) {
            this.removed(this.units[f]!.name, this.machines.ids[m]!, REASONS.peerNotHere);
          }
        }
      }
    };
    for (const u of this.byRank) if (!this.units[u]!.global) visit(u);
    for (const u of this.globals) visit(u);
  }

  private stayProblem(u: number, m: number): Reason | undefined {
    const staticProblem = this.staticProblem(u, m);
    if (staticProblem !== undefined) return staticProblem;
    const unit = this.units[u]!;
    if (unit.cycle !== undefined) return REASONS.machineOfCycle;
    if (unit.missingPeer) return REASONS.peerNotHere;
    for (const p of unit.peers) {
      const here =
        this.state.isOn(p, m) ||
        // Globals stay after non-globals: trust that a global peer keeps this machine
        // for now; if it does not, its followers here are evicted with it.
        (this.units[p]!.global &&
          this.stayDone[p] === 0 &&
          this.initial[p]?.includes(m) === true &&
          !this.replacedAtStart.has(p * this.machineCount + m));
      if (!here) return REASONS.peerNotHere;
    }
    if (this.state.conflicts(u, m)) return REASONS.conflict;
    return undefined;
  }

  /** MachineID and MachineMetadata, which depend only on the machine. */
  private staticProblem(u: number, m: number): Reason | undefined {
    const unit = this.units[u]!;
    const machineID = unit.requirements.machineID;
    if (machineID !== undefined && !this.machines.matchesMachineID(m, machineID)) {
      return REASONS.machineIDMismatch;
    }
    if (unit.selector !== undefined && unit.selector.member[m] !== 1) return REASONS.metadataMismatch;
    return undefined;
  }

  // ------------------------------------------------------------ new placements

  private canGo(u: number, m: number): boolean {
    return this.staticProblem(u, m) === undefined && this.peersOn(u, m) && !this.state.conflicts(u, m);
  }

  private peersOn(u: number, m: number): boolean {
    const unit = this.units[u]!;
    if (unit.missingPeer) return false;
    for (const p of unit.peers) if (!this.state.isOn(p, m)) return false;
    return true;
  }

  /** Puts a global on every eligible machine it is not on yet. */
  private fillGlobal(u: number): void {
    const unit = this.units[u]!;
    if (this.machineCount > 0 && unit.cycle === undefined) {
      const candidates = unit.pinned ?? unit.selector?.machines;
      if (candidates !== undefined) {
        for (const m of candidates) if (!this.state.isOn(u, m) && this.canGo(u, m)) this.state.add(u, m);
      } else {
        for (let m = 0; m < this.machineCount; m++) {
          if (!this.state.isOn(u, m) && this.canGo(u, m)) this.state.add(u, m);
        }
      }
    }
    if (this.state.isPlaced(u)) this.succeeded(u);
    else this.failed.add(u);
  }

  private placeOne(u: number): void {
    const unit = this.units[u]!;
    // Why it fails is worded once the decision is complete (see explain).
    if (this.machineCount === 0 || unit.cycle !== undefined || this.unplacedPeer(u) !== undefined) {
      this.failed.add(u);
      return;
    }
    if (unit.replaceTargets.length > 0 && this.takeoversLeft > 0 && this.takeOver(u)) return;
    const m = this.choose(u);
    if (m < 0) {
      this.failed.add(u);
      return;
    }
    this.state.add(u, m);
    this.scheduleReason[u] =
      unit.pinned !== undefined
        ? REASONS.pinned
        : unit.peers.length > 0
          ? REASONS.followsPeer
          : REASONS.placed;
    this.succeeded(u);
  }

  /** The first MachineOf peer (in the unit's order) that is on no machine. */
  private unplacedPeer(u: number): string | undefined {
    const unit = this.units[u]!;
    if (!unit.missingPeer) {
      let all = true;
      for (const p of unit.peers) all &&= this.state.isPlaced(p);
      if (all) return undefined;
    }
    for (const peer of unit.requirements.machineOf) {
      const p = this.lookup(peer);
      if (peer !== unit.name && (p === undefined || !this.state.isPlaced(p))) return peer;
    }
    return undefined;
  }

  /** The least-loaded machine (ties: lowest ID) the unit may go to, or -1. */
  private choose(u: number): number {
    const unit = this.units[u]!;
    // The predicates read the unit from a field so that no closure is made per unit.
    this.choosing = u;
    if (unit.pinned !== undefined) return this.leastLoaded(unit.pinned, this.fits);
    if (unit.peers.length > 0) return this.leastLoaded(this.state.machinesOf(unit.peers[0]!), this.fits);
    const selector = unit.selector;
    if (selector === undefined) return this.allMachinesTree().first(this.free);
    if (selector.machines.length <= SCAN_LIMIT) return this.leastLoaded(selector.machines, this.free);
    return this.selectorTree(selector).first(this.free);
  }

  /** The unit {@link choose} is placing, for {@link fits} and {@link free}. */
  private choosing = -1;
  private readonly fits = (m: number): boolean => this.canGo(this.choosing, m);
  /** Enough when candidates already satisfy MachineID, MachineMetadata and MachineOf. */
  private readonly free = (m: number): boolean => !this.state.conflicts(this.choosing, m);

  private leastLoaded(candidates: readonly number[], ok: (m: number) => boolean): number {
    const load = this.state.load;
    let best = -1;
    for (const m of candidates) {
      if ((best < 0 || load[m]! < load[best]! || (load[m] === load[best] && m < best)) && ok(m)) best = m;
    }
    return best;
  }

  private allMachinesTree(): LoadTree {
    if (this.globalTree === undefined) {
      const all = Array.from({ length: this.machineCount }, (_, m) => m);
      this.globalTree = new LoadTree(all, this.state.load);
      this.state.track(this.globalTree, all);
    }
    return this.globalTree;
  }

  private selectorTree(selector: MetadataSelector): LoadTree {
    let tree = this.selectorTrees.get(selector);
    if (tree === undefined) {
      tree = new LoadTree(selector.machines, this.state.load);
      this.state.track(tree, selector.machines);
      this.selectorTrees.set(selector, tree);
    }
    return tree;
  }

  /**
   * Replaces: put `u` on the machine of a unit it replaces (least-loaded first
   * if several), moving that unit and its MachineOf followers elsewhere. False
   * if no such machine satisfies `u`'s other requirements.
   */
  private takeOver(u: number): boolean {
    const unit = this.units[u]!;
    const candidates = new Set<number>();
    for (const t of unit.replaceTargets) for (const m of this.state.machinesOf(t)) candidates.add(m);
    const load = this.state.load;
    const ordered = [...candidates].sort((a, b) => load[a]! - load[b]! || a - b);
    for (const m of ordered) {
      if (this.staticProblem(u, m) !== undefined) continue;
      const evicted: number[] = [];
      for (const t of unit.replaceTargets) {
        if (!this.state.isOn(t, m)) continue;
        this.state.remove(t, m);
        evicted.push(t, ...this.evictFollowers(t, m));
      }
      if (this.peersOn(u, m) && !this.state.conflicts(u, m)) {
        this.takeoversLeft--;
        this.state.add(u, m);
        this.scheduleReason[u] = REASONS.takesOver;
        this.succeeded(u);
        const id = this.machines.ids[m]!;
        for (const v of evicted) {
          this.removed(
            this.units[v]!.name,
            id,
            unit.replaceTargets.includes(v) ? REASONS.replaced : REASONS.peerNotHere,
          );
          this.enqueue(v);
        }
        // Units that failed earlier in this decision, and globals that skipped a
        // machine, may fit now that units moved: retry them so that the result is
        // a fixpoint (deciding again changes nothing).
        for (const f of this.failed) this.enqueue(f);
        for (const g of this.globals) this.enqueue(g);
        return true;
      }
      for (let i = evicted.length - 1; i >= 0; i--) this.state.add(evicted[i]!, m);
    }
    return false;
  }

  /**
   * Removes from `m` the MachineOf followers (transitively) of `u`, which has
   * just left `m`, and returns them in removal order.
   */
  private evictFollowers(u: number, m: number): number[] {
    const evicted: number[] = [];
    const pending = [u];
    for (let v = pending.pop(); v !== undefined; v = pending.pop()) {
      for (const f of this.units[v]!.followers) {
        if (!this.state.isOn(f, m)) continue;
        this.state.remove(f, m);
        evicted.push(f);
        pending.push(f);
      }
    }
    return evicted;
  }

  // ----------------------------------------------------------------- reasons

  private succeeded(u: number): void {
    this.failed.delete(u);
  }

  private removed(unit: string, machineID: string, reason: Reason): void {
    this.removals.set(`${unit}\n${machineID}`, reason);
  }

  /**
   * Words why `u` fits on no machine, naming the constraint that rules the last
   * ones out. Called on the final placements, so that deciding again gives the
   * same text (the engine rewrites a reason only when it changes).
   */
  private explain(u: number): string {
    const unit = this.units[u]!;
    const req = unit.requirements;
    if (this.machineCount === 0) return UNPLACED.noLiveMachines;
    if (unit.cycle !== undefined) return UNPLACED.machineOfCycle(unit.cycle);
    const waitingFor = this.unplacedPeer(u);
    if (waitingFor !== undefined) return UNPLACED.waitingForPeer(waitingFor);

    let candidates: readonly number[];
    let narrowed = false;
    if (unit.pinned !== undefined) {
      if (unit.pinned.length === 0) return UNPLACED.machineIDNotLive(req.machineID!);
      candidates = unit.pinned;
      narrowed = true;
    } else if (unit.peers.length > 0) {
      const first = unit.peers[0]!;
      candidates = this.state.machinesOf(first);
      for (const p of unit.peers) {
        const together = candidates.filter((m) => this.state.isOn(p, m));
        if (together.length === 0) return UNPLACED.peersApart(this.units[first]!.name, this.units[p]!.name);
        candidates = together;
      }
      narrowed = true;
    } else candidates = Array.from({ length: this.machineCount }, (_, m) => m);

    if (unit.selector !== undefined) {
      const member = unit.selector.member;
      candidates = candidates.filter((m) => member[m] === 1);
      if (candidates.length === 0) {
        const metadata = [...req.machineMetadata]
          .flatMap(([key, values]) => values.map((v) => `${key}=${v}`))
          .join(' ');
        if (unit.pinned !== undefined) return UNPLACED.pinnedMetadata(req.machineID!, metadata);
        if (unit.peers.length > 0) return UNPLACED.peerMetadata(this.units[unit.peers[0]!]!.name, metadata);
        return UNPLACED.noMetadataMatch(metadata);
      }
    }
    if (unit.pinned !== undefined && unit.peers.length > 0) {
      candidates = candidates.filter((m) => this.peersOn(u, m));
      if (candidates.length === 0) {
        return UNPLACED.pinnedPeer(req.machineID!, this.units[unit.peers[0]!]!.name);
      }
    }

    const names = new Set<string>();
    let examined = 0;
    for (const m of candidates) {
      if (names.size > MAX_NAMES || examined++ >= EXPLAIN_MACHINES) break;
      for (const v of this.state.conflictingUnitsOn(u, m, MAX_NAMES + 1)) names.add(this.units[v]!.name);
    }
    if (names.size === 0) return UNPLACED.noEligibleMachine;
    const listed = [...names].sort();
    const more = listed.length > MAX_NAMES || examined < candidates.length;
    const where =
      narrowed && candidates.length === 1
        ? `machine ${this.machines.ids[candidates[0]!]}`
        : candidates.length < this.machineCount
          ? 'every eligible machine'
          : 'every machine';
    return UNPLACED.conflicts(listed.slice(0, MAX_NAMES), more, where);
  }

  // ------------------------------------------------------------------ output

  private decision(): Decision {
    const unschedules: SchedulerTask[] = [];
    const schedules: SchedulerTask[] = [];
    const unplaced = new Map<string, string>();
    const ids = this.machines.ids;
    const unschedule = (
      unit: string,
      before: ReadonlySet<string>,
      after: ReadonlySet<string> | string | undefined,
    ): void => {
      for (const id of before.size > 1 ? [...before].sort() : before) {
        if (typeof after === 'string' ? id === after : after?.has(id) === true) continue;
        const reason = this.removals.get(`${unit}\n${id}`) ?? REASONS.invalid;
        unschedules.push({ kind: 'unschedule', unit, machineID: id, reason });
      }
    };
    // Placements of units that no longer exist, sorted, merged into the walk below.
    const gone = this.gone;
    let g = 0;
    for (let i = 0; i < this.sortedNames.length; i++) {
      const name = this.sortedNames[i]!;
      for (; g < gone.length && gone[g]! < name; g++)
        unschedule(gone[g]!, this.snapshot.placements.get(gone[g]!)!, undefined);
      const before = this.before[i];
      const u = this.activeAt[i]!;
      if (u < 0) {
        if (before !== undefined) unschedule(name, before, undefined);
        continue;
      }
      if (!this.units[u]!.global) {
        // The common case, kept free of allocations: at most one machine after.
        const m = this.state.machineOf(u);
        const after = m >= 0 ? ids[m]! : undefined;
        if (before !== undefined) unschedule(name, before, after);
        if (after === undefined) unplaced.set(name, this.explain(u));
        else if (before?.has(after) !== true) {
          schedules.push({ kind: 'schedule', unit: name, machineID: after, reason: this.scheduleReason[u]! });
        }
        continue;
      }
      const after = this.state.machinesOf(u).map((m) => ids[m]!);
      if (before !== undefined) unschedule(name, before, new Set(after));
      if (after.length === 0) unplaced.set(name, this.explain(u));
      for (const id of after) {
        if (before?.has(id) !== true)
          schedules.push({ kind: 'schedule', unit: name, machineID: id, reason: REASONS.global });
      }
    }
    for (; g < gone.length; g++) unschedule(gone[g]!, this.snapshot.placements.get(gone[g]!)!, undefined);
    return { tasks: unschedules.concat(schedules), unplaced };
  }

  // ------------------------------------------------------------------- queue

  /** Adds a unit to the work queue (a binary min-heap of ranks), once. */
  private enqueue(u: number): void {
    if (this.queued[u] === 1) return;
    this.queued[u] = 1;
    const heap = this.queue;
    let i = heap.push(this.rank[u]!) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]! <= heap[i]!) break;
      [heap[parent], heap[i]] = [heap[i]!, heap[parent]!];
      i = parent;
    }
  }

  /** Takes the unit of lowest rank off the queue, or -1 when it is empty. */
  private dequeue(): number {
    const heap = this.queue;
    if (heap.length === 0) return -1;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let min = i;
        if (l < heap.length && heap[l]! < heap[min]!) min = l;
        if (r < heap.length && heap[r]! < heap[min]!) min = r;
        if (min === i) break;
        [heap[min], heap[i]] = [heap[i]!, heap[min]!];
        i = min;
      }
    }
    const u = this.byRank[top]!;
    this.queued[u] = 0;
    return u;
  }
}
