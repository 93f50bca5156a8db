import { LoadTree } from './scheduler-load-tree.js';
import { MachineIndex, type MetadataSelector } from './scheduler-machines.js';
import { PlacementState } from './scheduler-placement.js';
import { RankQueue } from './scheduler-queue.js';
import { REASONS, UNPLACED, type Reason } from './scheduler-reasons.js';
import type { Decision, SchedulerSnapshot, SchedulerTask } from './scheduler-types.js';
import { UnitTable } from './scheduler-units.js';

const NONE: readonly number[] = [];
/** Up to this many candidate machines a linear scan is cheaper than keeping a LoadTree current. */
const SCAN_LIMIT = 32;
/** An unplaced reason lists at most this many conflicting units. */
const MAX_NAMES = 5;
/**
 * An unplaced reason looks for conflicting units on at most this many machines:
 * wording a reason must stay cheap when thousands of units wait.
 */
const EXPLAIN_MACHINES = 16;

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
  private readonly units: UnitTable;
  /** Position in the sorted unit names → the unit's placements in the snapshot. */
  private readonly before: (ReadonlySet<string> | undefined)[];
  /** Sorted names of units that are placed but no longer exist. */
  private readonly gone: string[] = [];
  private readonly state: PlacementState;
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
  private readonly queue: RankQueue;
  private takeoversLeft: number;
  /** Shared one-element machine lists, by machine. */
  private readonly singletons: (readonly number[] | undefined)[] = [];
  private everyMachine: readonly number[] | undefined;
  /** The unit {@link choose} is placing, for {@link fits} and {@link free}. */
  private choosing = -1;
  private readonly fits = (m: number): boolean => this.canGo(this.choosing, m);
  /** Enough when candidates already satisfy MachineID, MachineMetadata and MachineOf. */
  private readonly free = (m: number): boolean => !this.state.conflicts(this.choosing, m);

  constructor(private readonly snapshot: SchedulerSnapshot) {
    this.machines = new MachineIndex(snapshot.machines);
    this.machineCount = this.machines.count;
    this.units = new UnitTable(snapshot.units, this.machines);
    const n = this.units.count;
    this.before = new Array<ReadonlySet<string> | undefined>(this.units.sortedNames.length).fill(undefined);
    this.state = new PlacementState(this.units, n, this.machineCount);
    this.initial = new Array<readonly number[] | undefined>(n).fill(undefined);
    this.stayDone = new Uint8Array(n);
    this.scheduleReason = new Array<Reason>(n).fill(REASONS.placed);
    this.queue = new RankQueue(this.units.rank, this.units.byRank);
    // A safety net against loops in input that submit refuses (Replaces cycles
    // mixed with MachineOf), not a semantic limit.
    this.takeoversLeft = n + 1;
  }

  run(): Decision {
    this.readPlacements();
    this.stayPass();
    const { byRank, global } = this.units;
    for (let r = 0; r < byRank.length; r++) {
      const u = byRank[r]!;
      if (global[u] === 1 || !this.state.isPlaced(u)) this.queue.addInOrder(u);
    }
    for (let u = this.queue.take(); u >= 0; u = this.queue.take()) {
      if (global[u] === 1) this.fillGlobal(u);
      else if (!this.state.isPlaced(u)) this.placeOne(u);
    }
    return this.decision();
  }

  // -------------------------------------------------------- current placements

  /** A shared one-element list `[m]`. */
  private justMachine(m: number): readonly number[] {
    let list = this.singletons[m];
    if (list === undefined) this.singletons[m] = list = [m];
    return list;
  }

  private readPlacements(): void {
    const placements = this.snapshot.placements;
    let seen = 0;
    for (let i = 0; i < this.units.sortedNames.length; i++) {
      const name = this.units.sortedNames[i]!;
      const ids = placements.get(name);
      if (ids === undefined) continue;
      seen++;
      this.before[i] = ids;
      const u = this.units.activeAt[i]!;
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
      if (this.units.global[u] === 0 && live.length > 1) {
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
    for (let r = 0; r < this.units.count; r++) {
      const targets = this.units.replaceTargets[r]!;
      if (targets.length === 0) continue;
      for (const m of this.initial[r] ?? NONE) {
        if (this.staticProblem(r, m) !== undefined) continue;
        for (const t of targets) {
          if (this.initial[t]?.includes(m)) {
            this.replacedAtStart.add(t * this.machineCount + m);
            this.removed(this.units.names[t]!, this.machines.ids[m]!, REASONS.replaced);
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
        this.removed(this.units.names[u]!, this.machines.ids[m]!, problem);
        // A follower may have stayed on the strength of this global staying too.
        if (this.units.global[u] === 1) {
          for (const f of this.evictFollowers(u, m)) {
            this.removed(this.units.names[f]!, this.machines.ids[m]!, REASONS.peerNotHere);
          }
        }
      }
    };
    for (const u of this.units.byRank) if (this.units.global[u] === 0) visit(u);
    for (const u of this.units.globals) visit(u);
  }

  private stayProblem(u: number, m: number): Reason | undefined {
    const staticProblem = this.staticProblem(u, m);
    if (staticProblem !== undefined) return staticProblem;
    const units = this.units;
    if (units.cycle[u] !== undefined) return REASONS.machineOfCycle;
    if (units.missingPeer[u] === 1) return REASONS.peerNotHere;
    for (const p of units.peers[u]!) {
      const here =
        this.state.isOn(p, m) ||
        // Globals stay after non-globals: trust that a global peer keeps this machine
        // for now; if it does not, its followers here are evicted with it.
        (units.global[p] === 1 &&
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
    const machineID = this.units.requirements[u]!.machineID;
    if (machineID !== undefined && !this.machines.matchesMachineID(m, machineID)) {
      return REASONS.machineIDMismatch;
    }
    const selector = this.units.selector[u];
    if (selector !== undefined && selector.member[m] !== 1) return REASONS.metadataMismatch;
    return undefined;
  }

  // ------------------------------------------------------------ new placements

  private canGo(u: number, m: number): boolean {
    return this.staticProblem(u, m) === undefined && this.peersOn(u, m) && !this.state.conflicts(u, m);
  }

  private peersOn(u: number, m: number): boolean {
    if (this.units.missingPeer[u] === 1) return false;
    for (const p of this.units.peers[u]!) if (!this.state.isOn(p, m)) return false;
    return true;
  }

  /** Puts a global on every eligible machine it is not on yet. */
  private fillGlobal(u: number): void {
    if (this.machineCount > 0 && this.units.cycle[u] === undefined) {
      const candidates = this.units.pinned[u] ?? this.units.selector[u]?.machines;
      if (candidates !== undefined) {
        for (const m of candidates) if (!this.state.isOn(u, m) && this.canGo(u, m)) this.state.add(u, m);
      } else {
        for (let m = 0; m < this.machineCount; m++) {
          if (!this.state.isOn(u, m) && this.canGo(u, m)) this.state.add(u, m);
        }
      }
    }
    if (this.state.isPlaced(u)) this.failed.delete(u);
    else this.failed.add(u);
  }

  private placeOne(u: number): void {
    const units = this.units;
    // Why it fails is worded once the decision is complete (see explain).
    if (this.machineCount === 0 || units.cycle[u] !== undefined || this.unplacedPeer(u) !== undefined) {
      this.failed.add(u);
      return;
    }
    if (units.replaceTargets[u]!.length > 0 && this.takeoversLeft > 0 && this.takeOver(u)) return;
    const m = this.choose(u);
    if (m < 0) {
      this.failed.add(u);
      return;
    }
    this.state.add(u, m);
    this.scheduleReason[u] =
      units.pinned[u] !== undefined
        ? REASONS.pinned
        : units.peers[u]!.length > 0
          ? REASONS.followsPeer
          : REASONS.placed;
    this.failed.delete(u);
  }

  /** The first MachineOf peer (in the unit's order) that is on no machine. */
  private unplacedPeer(u: number): string | undefined {
    const units = this.units;
    if (units.missingPeer[u] === 0) {
      let all = true;
      for (const p of units.peers[u]!) all &&= this.state.isPlaced(p);
      if (all) return undefined;
    }
    for (const peer of units.requirements[u]!.machineOf) {
      const p = units.lookup(peer);
      if (peer !== units.names[u] && (p === undefined || !this.state.isPlaced(p))) return peer;
    }
    return undefined;
  }

  /** The least-loaded machine (ties: lowest ID) the unit may go to, or -1. */
  private choose(u: number): number {
    const units = this.units;
    if (this.state.blockedEverywhere(u)) return -1;
    // The predicates read the unit from a field so that no closure is made per unit.
    this.choosing = u;
    const pinned = units.pinned[u];
    if (pinned !== undefined) return this.leastLoaded(pinned, this.fits);
    const peers = units.peers[u]!;
    if (peers.length > 0) return this.leastLoaded(this.state.machinesOf(peers[0]!), this.fits);
    const selector = units.selector[u];
    if (selector === undefined) return this.allMachinesTree().first(this.free);
    if (selector.machines.length <= SCAN_LIMIT) return this.leastLoaded(selector.machines, this.free);
    return this.selectorTree(selector).first(this.free);
  }

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
      this.globalTree = new LoadTree(this.allMachines(), this.state.load);
      this.state.track(this.globalTree, this.allMachines());
    }
    return this.globalTree;
  }

  /** Every machine index, ascending (one shared list). */
  private allMachines(): readonly number[] {
    return (this.everyMachine ??= Array.from({ length: this.machineCount }, (_, m) => m));
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
    const targets = this.units.replaceTargets[u]!;
    const candidates = new Set<number>();
    for (const t of targets) for (const m of this.state.machinesOf(t)) candidates.add(m);
    const load = this.state.load;
    const ordered = [...candidates].sort((a, b) => load[a]! - load[b]! || a - b);
    for (const m of ordered) {
      if (this.staticProblem(u, m) !== undefined) continue;
      const evicted: number[] = [];
      for (const t of targets) {
        if (!this.state.isOn(t, m)) continue;
        this.state.remove(t, m);
        evicted.push(t, ...this.evictFollowers(t, m));
      }
      if (this.peersOn(u, m) && !this.state.conflicts(u, m)) {
        this.takeoversLeft--;
        this.state.add(u, m);
        this.scheduleReason[u] = REASONS.takesOver;
        this.failed.delete(u);
        const id = this.machines.ids[m]!;
        for (const v of evicted) {
          this.removed(
            this.units.names[v]!,
            id,
            targets.includes(v) ? REASONS.replaced : REASONS.peerNotHere,
          );
          this.queue.add(v);
        }
        // Units that failed earlier in this decision, and globals that skipped a
        // machine, may fit now that units moved: retry them so that the result is
        // a fixpoint (deciding again changes nothing).
        for (const f of this.failed) this.queue.add(f);
        for (const g of this.units.globals) this.queue.add(g);
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
      for (const f of this.units.followers[v]!) {
        if (!this.state.isOn(f, m)) continue;
        this.state.remove(f, m);
        evicted.push(f);
        pending.push(f);
      }
    }
    return evicted;
  }

  // ----------------------------------------------------------------- reasons

  private removed(unit: string, machineID: string, reason: Reason): void {
    this.removals.set(`${unit}\n${machineID}`, reason);
  }

  /**
   * Words why `u` fits on no machine, naming the constraint that rules the last
   * ones out. Called on the final placements, so that deciding again gives the
   * same text (the engine rewrites a reason only when it changes).
   */
  private explain(u: number): string {
    const units = this.units;
    const req = units.requirements[u]!;
    const cycle = units.cycle[u];
    const pinned = units.pinned[u];
    const peers = units.peers[u]!;
    const selector = units.selector[u];
    if (this.machineCount === 0) return UNPLACED.noLiveMachines;
    if (cycle !== undefined) return UNPLACED.machineOfCycle(cycle);
    const waitingFor = this.unplacedPeer(u);
    if (waitingFor !== undefined) return UNPLACED.waitingForPeer(waitingFor);

    let candidates: readonly number[];
    let narrowed = false;
    if (pinned !== undefined) {
      if (pinned.length === 0) return UNPLACED.machineIDNotLive(req.machineID!);
      candidates = pinned;
      narrowed = true;
    } else if (peers.length > 0) {
      const first = peers[0]!;
      candidates = this.state.machinesOf(first);
      for (const p of peers) {
        const together = candidates.filter((m) => this.state.isOn(p, m));
        if (together.length === 0) return UNPLACED.peersApart(units.names[first]!, units.names[p]!);
        candidates = together;
      }
      narrowed = true;
    } else candidates = this.allMachines();

    if (selector !== undefined) {
      const member = selector.member;
      candidates = narrowed ? candidates.filter((m) => member[m] === 1) : selector.machines;
      if (candidates.length === 0) {
        const metadata = [...req.machineMetadata]
          .flatMap(([key, values]) => values.map((v) => `${key}=${v}`))
          .join(' ');
        if (pinned !== undefined) return UNPLACED.pinnedMetadata(req.machineID!, metadata);
        if (peers.length > 0) return UNPLACED.peerMetadata(units.names[peers[0]!]!, metadata);
        return UNPLACED.noMetadataMatch(metadata);
      }
    }
    if (pinned !== undefined && peers.length > 0) {
      candidates = candidates.filter((m) => this.peersOn(u, m));
      if (candidates.length === 0) return UNPLACED.pinnedPeer(req.machineID!, units.names[peers[0]!]!);
    }

    const names = new Set<string>();
    let examined = 0;
    for (const m of candidates) {
      if (names.size > MAX_NAMES || examined++ >= EXPLAIN_MACHINES) break;
      for (const v of this.state.conflictingUnitsOn(u, m, MAX_NAMES + 1)) names.add(this.units.names[v]!);
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
    for (let i = 0; i < this.units.sortedNames.length; i++) {
      const name = this.units.sortedNames[i]!;
      for (; g < gone.length && gone[g]! < name; g++)
        unschedule(gone[g]!, this.snapshot.placements.get(gone[g]!)!, undefined);
      const before = this.before[i];
      const u = this.units.activeAt[i]!;
      if (u < 0) {
        if (before !== undefined) unschedule(name, before, undefined);
        continue;
      }
      if (this.units.global[u] === 0) {
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
}
