import {
  errorMessage,
  parseRequirements,
  validateRequirements,
  type JobState,
  type Metrics,
  type Requirements,
  type UnitOption,
} from '@fleet/core';
import {
  PrefixCache,
  Keyspace,
  MAX_TXN_OPS,
  campaign,
  fencedCommit,
  machineInfo,
  type Leadership,
  type MachinePresence,
  type Op,
  type PlacementRecord,
  type Registry,
  type UnitRecord,
} from '@fleet/registry';
import { decide, type Decision, type SchedulerSnapshot, type SchedulerUnit } from './decide.js';

/** Lifecycle of an {@link Engine}. */
export type EngineState = 'idle' | 'campaigning' | 'leading' | 'stopped';

export interface EngineOptions {
  readonly registry: Registry;
  /** This machine's ID: the candidate's name in the election. */
  readonly machineID: string;
  /** Leader lease TTL in seconds. @default 5 */
  readonly leaderTtlSeconds?: number;
  /** Slow periodic resync while leading, in ms (watches do the real work). @default 30000 */
  readonly resyncIntervalMs?: number;
  readonly log?: (message: string) => void;
  readonly metrics?: Metrics;
}

/** What one reconcile did, for logs, metrics and tests. */
export interface ReconcileResult {
  readonly decision: Decision;
  /** etcd operations committed (placements, updates, reasons, garbage). */
  readonly ops: number;
  readonly durationMs: number;
}

interface Caches {
  readonly units: PrefixCache<UnitRecord>;
  readonly bodies: PrefixCache<{ options: readonly UnitOption[]; modRevision: number }>;
  readonly machines: PrefixCache<MachinePresence>;
  readonly meta: PrefixCache<Record<string, string>>;
  readonly schedule: PrefixCache<PlacementRecord>;
  readonly unplaced: PrefixCache<string>;
}

/**
 * The leader-elected scheduler. Campaigns through etcd; while leading it keeps
 * watch-backed caches of units, bodies, machines and placements, and
 * reconciles level-triggered: any relevant change (or the slow resync) runs
 * the pure {@link decide} on a snapshot and commits the resulting actions in
 * fenced, batched transactions. A deposed leader's writes are rejected by etcd.
 */
export class Engine {
  private stateNow: EngineState = 'idle';
  private readonly abort = new AbortController();
  private leadership: Leadership | undefined;
  private caches: Caches | undefined;
  private running: Promise<void> | undefined;
  private dirty = false;
  private reconciling: Promise<void> | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private readonly requirementsCache = new Map<string, { hash: string; req: Requirements | string }>();
  private loop: Promise<void> | undefined;
  /** Resolves listeners waiting for the next completed reconcile (tests, bench). */
  private reconcileWaiters: Array<(r: ReconcileResult) => void> = [];
  lastResult: ReconcileResult | undefined;
  reconcileCount = 0;

  constructor(private readonly options: EngineOptions) {}

  get state(): EngineState {
    return this.stateNow;
  }
  get isLeader(): boolean {
    return this.stateNow === 'leading';
  }

  private log(message: string): void {
    this.options.log?.(`engine: ${message}`);
  }

  /** Starts campaigning in the background. */
  start(): void {
    if (this.loop) return;
    this.loop = this.campaignLoop();
  }

  private async campaignLoop(): Promise<void> {
    const { registry, machineID } = this.options;
    while (!this.abort.signal.aborted) {
      this.stateNow = 'campaigning';
      let leadership: Leadership;
      try {
        leadership = await campaign({
          kv: registry.kv,
          key: registry.keys.leader,
          candidateID: machineID,
          ttlSeconds: this.options.leaderTtlSeconds ?? 5,
          signal: this.abort.signal,
        });
      } catch (err) {
        if (this.abort.signal.aborted) break;
        this.log(`campaign failed: ${errorMessage(err)}`);
        continue;
      }
      this.leadership = leadership;
      this.stateNow = 'leading';
      this.options.metrics
        ?.counter({ name: 'fleet_engine_leadership_acquired_total', help: 'Times this engine became leader' })
        .inc();
      this.log(`became leader (fence revision ${leadership.fence.createRevision})`);
      try {
        await this.lead(leadership);
      } catch (err) {
        this.log(`leading ended: ${errorMessage(err)}`);
      }
      await this.stopLeading();
    }
    this.stateNow = 'stopped';
  }

  private async lead(leadership: Leadership): Promise<void> {
    const caches = this.makeCaches();
    this.caches = caches;
    const all = Object.values(caches) as Array<PrefixCache<unknown>>;
    await Promise.all(all.map((c) => c.start()));
    // Our own writes (schedule, unplaced) do not trigger reconciles; the rest do.
    for (const c of [caches.units, caches.bodies, caches.machines, caches.meta]) {
      c.onChange(() => this.trigger());
    }
    this.resyncTimer = setInterval(() => this.trigger(), this.options.resyncIntervalMs ?? 30_000);
    this.resyncTimer.unref();
    this.trigger();
    await new Promise<void>((resolve) => {
      if (leadership.signal.aborted) resolve();
      leadership.signal.addEventListener('abort', () => resolve(), { once: true });
    });
  }

  private makeCaches(): Caches {
    const { registry } = this.options;
    const keys = registry.keys;
    const warn = (m: string): void => this.log(m);
    return {
      units: new PrefixCache(registry.kv, keys.unitsPrefix, {
        decode: (_k, kv) => registry.decodeUnit(kv.value),
        onWarning: warn,
      }),
      bodies: new PrefixCache(registry.kv, keys.bodiesPrefix, {
        decode: (_k, kv) => {
          const options = registry.decodeBody(kv.value);
          return options ? { options, modRevision: kv.modRevision } : undefined;
        },
        onWarning: warn,
      }),
      machines: new PrefixCache(registry.kv, keys.machinesPrefix, {
        decode: (_k, kv) => registry.decodePresence(kv.value),
        onWarning: warn,
      }),
      meta: new PrefixCache(registry.kv, keys.machineMetaPrefix, {
        decode: (_k, kv) => registry.decodeDynamicMetadata(kv.value),
        onWarning: warn,
      }),
      schedule: new PrefixCache(registry.kv, keys.schedulePrefix, {
        decode: (_k, kv) => registry.decodePlacement(kv.value),
        onWarning: warn,
      }),
      unplaced: new PrefixCache(registry.kv, keys.unplacedPrefix, {
        decode: (_k, kv) => registry.decodeUnplaced(kv.value),
        onWarning: warn,
      }),
    };
  }

  /** Asks for a reconcile; coalesces with one in flight (level-triggered). */
  private trigger(): void {
    if (this.stateNow !== 'leading') return;
    this.dirty = true;
    if (this.reconciling) return;
    this.reconciling = this.drain().finally(() => {
      this.reconciling = undefined;
    });
  }

  private async drain(): Promise<void> {
    while (this.dirty && this.stateNow === 'leading') {
      this.dirty = false;
      // Let a burst of watch events land before deciding (no timer: one turn of the event loop).
      await new Promise((r) => setImmediate(r));
      try {
        const result = await this.reconcile();
        this.lastResult = result;
        this.reconcileCount++;
        for (const w of this.reconcileWaiters.splice(0)) w(result);
      } catch (err) {
        this.log(`reconcile failed: ${errorMessage(err)}`);
        this.options.metrics
          ?.counter({ name: 'fleet_engine_reconcile_errors_total', help: 'Failed engine reconciles' })
          .inc();
        if (this.stateNow === 'leading') {
          // Back off a little and look again; the cause (etcd blip, lost race) is usually transient.
          await new Promise((r) => setTimeout(r, 200));
          this.dirty = true;
        }
      }
    }
  }

  /** Resolves after the next reconcile completes (for tests and benchmarks). */
  nextReconcile(): Promise<ReconcileResult> {
    return new Promise((resolve) => this.reconcileWaiters.push(resolve));
  }

  private requirementsOf(rec: UnitRecord, options: readonly UnitOption[]): Requirements | string {
    const cached = this.requirementsCache.get(rec.name);
    if (cached && cached.hash === rec.hash) return cached.req;
    let req: Requirements | string;
    try {
      req = parseRequirements(options, rec.name);
      validateRequirements(req, rec.name);
    } catch (err) {
      req = `invalid requirements: ${errorMessage(err)}`;
    }
    this.requirementsCache.set(rec.name, { hash: rec.hash, req });
    return req;
  }

  /** Builds the scheduler's input from the caches. */
  snapshot(): { snapshot: SchedulerSnapshot; invalid: Map<string, string> } {
    const c = this.caches;
    if (!c) throw new Error('engine is not leading');
    const units = new Map<string, SchedulerUnit>();
    const invalid = new Map<string, string>();
    for (const [name, rec] of c.units.entries()) {
      const body = c.bodies.get(rec.hash);
      if (!body) continue; // body not visible yet; its arrival triggers another reconcile
      const req = this.requirementsOf(rec, body.options);
      if (typeof req === 'string') invalid.set(name, req);
      else units.set(name, { name, desiredState: rec.desiredState, requirements: req });
    }
    for (const name of this.requirementsCache.keys())
      if (!c.units.has(name)) this.requirementsCache.delete(name);
    const machines = new Map<string, { id: string; metadata: Record<string, string> }>();
    for (const p of c.machines.entries().values()) {
      machines.set(p.id, { id: p.id, metadata: { ...machineInfo(p, c.meta.get(p.id) ?? {}).metadata } });
    }
    const placements = new Map<string, Set<string>>();
    for (const key of c.schedule.entries().keys()) {
      const pair = Keyspace.pair(key);
      if (!pair) continue;
      const [machineID, unit] = pair;
      let set = placements.get(unit);
      if (!set) placements.set(unit, (set = new Set()));
      set.add(machineID);
    }
    return { snapshot: { units, machines, placements }, invalid };
  }

  /** One level-triggered pass: snapshot → decide → commit the difference. */
  async reconcile(): Promise<ReconcileResult> {
    const started = performance.now();
    const c = this.caches;
    const leadership = this.leadership;
    if (!c || !leadership) throw new Error('engine is not leading');
    const { registry } = this.options;
    const keys = registry.keys;
    const { snapshot, invalid } = this.snapshot();
    const decision = decide(snapshot);

    const ops: Op[] = []; // schedule/ keys
    const reasonOps: Op[] = []; // unplaced/ keys
    const removed = new Set<string>();
    for (const task of decision.tasks) {
      const key = keys.placement(task.machineID, task.unit);
      if (task.kind === 'unschedule') {
        removed.add(key);
        ops.push({ type: 'delete', key });
      } else {
        const rec = c.units.get(task.unit);
        if (!rec) continue;
        removed.delete(key);
        ops.push({ type: 'put', key, value: JSON.stringify(placementOf(rec)) });
      }
      this.log(
        `${task.kind} ${task.unit} ${task.kind === 'schedule' ? 'on' : 'from'} ${task.machineID}: ${task.reason}`,
      );
    }
    const scheduled = new Set(
      decision.tasks.filter((t) => t.kind === 'schedule').map((t) => keys.placement(t.machineID, t.unit)),
    );
    // Placements that stay: keep their copy of the unit's hash and desired state current.
    for (const [rel, placement] of c.schedule.entries()) {
      const key = `${keys.schedulePrefix}${rel}`;
      if (removed.has(key) || scheduled.has(key)) continue;
      const pair = Keyspace.pair(rel);
      const rec = pair ? c.units.get(pair[1]) : undefined;
      if (!rec) continue; // decide() unschedules placements of units that are gone
      if (placement.hash !== rec.hash || placement.desiredState !== rec.desiredState) {
        ops.push({ type: 'put', key, value: JSON.stringify(placementOf(rec)) });
      }
    }
    // Reasons for units left unplaced: written only when they change.
    const reasons = new Map<string, string>([...decision.unplaced, ...invalid]);
    for (const [unit, reason] of reasons) {
      if (c.unplaced.get(unit) !== reason) {
        reasonOps.push({ type: 'put', key: keys.unplaced(unit), value: JSON.stringify({ reason }) });
      }
    }
    for (const unit of c.unplaced.entries().keys()) {
      if (!reasons.has(unit)) reasonOps.push({ type: 'delete', key: keys.unplaced(unit) });
    }

    // Placements first (they matter), reasons after. Each commit is followed by
    // waiting until our own cache shows it, so the next decision is never made
    // from a stale view (each cache only sees revisions of its own prefix).
    // Removals before additions when they cannot share one transaction:
    // fencedCommit's chunks go out concurrently, and an agent must never see
    // a moved unit placed on two machines, or next to a unit it conflicts with.
    const deletes = ops.filter((op) => op.type === 'delete');
    const phases =
      ops.length <= MAX_TXN_OPS || deletes.length === 0
        ? [ops]
        : [deletes, ops.filter((op) => op.type !== 'delete')];
    for (const phase of phases) {
      if (phase.length === 0) continue;
      const revision = await fencedCommit(registry.kv, leadership.fence, phase);
      await c.schedule.waitForRevision(revision);
    }
    if (reasonOps.length > 0) {
      const revision = await fencedCommit(registry.kv, leadership.fence, reasonOps);
      await c.unplaced.waitForRevision(revision);
    }
    const gc = await this.collectGarbageBodies(c, leadership);
    const durationMs = performance.now() - started;
    const m = this.options.metrics;
    if (m) {
      m.counter({ name: 'fleet_engine_reconciles_total', help: 'Engine reconcile passes' }).inc();
      m.counter({ name: 'fleet_engine_placements_total', help: 'Units scheduled onto machines' }).inc(
        undefined,
        decision.tasks.filter((t) => t.kind === 'schedule').length,
      );
      m.counter({ name: 'fleet_engine_unschedules_total', help: 'Units removed from machines' }).inc(
        undefined,
        decision.tasks.filter((t) => t.kind === 'unschedule').length,
      );
      m.gauge({ name: 'fleet_engine_unplaced_units', help: 'Units that no machine can take' }).set(
        undefined,
        reasons.size,
      );
      m.histogram({
        name: 'fleet_engine_reconcile_seconds',
        help: 'Duration of engine reconcile passes',
      }).observe(undefined, durationMs / 1000);
    }
    return { decision, ops: ops.length + reasonOps.length + gc, durationMs };
  }

  /**
   * Deletes unit bodies no unit refers to (fleet never collected them). Each
   * delete is conditional on the body being unchanged since we saw it, so a
   * concurrent submit of the same body (which re-writes it) wins the race.
   *
   * A body is written in the same transaction as the unit that uses it, but
   * the two caches are fed by separate watches: a body whose write the units
   * cache has not seen yet may belong to a unit this engine does not know
   * about yet, so it is left for a later pass.
   */
  private async collectGarbageBodies(c: Caches, leadership: Leadership): Promise<number> {
    const referenced = new Set<string>();
    for (const rec of c.units.entries().values()) referenced.add(rec.hash);
    const unitsSeen = c.units.revision;
    let deleted = 0;
    for (const [hash, body] of c.bodies.entries()) {
      if (referenced.has(hash) || body.modRevision > unitsSeen) continue;
      const key = this.options.registry.keys.body(hash);
      try {
        await fencedCommit(
          this.options.registry.kv,
          leadership.fence,
          [{ type: 'delete', key }],
          [{ key, target: 'modRevision', op: '==', value: body.modRevision }],
        );
        deleted++;
      } catch (err) {
        if (leadership.signal.aborted) throw err;
        // Re-written meanwhile (a new unit uses it): keep it.
      }
    }
    return deleted;
  }

  private async stopLeading(): Promise<void> {
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.resyncTimer = undefined;
    const wasLeading = this.stateNow === 'leading';
    if (this.stateNow === 'leading') this.stateNow = 'campaigning';
    await this.reconciling?.catch(() => undefined);
    const caches = this.caches;
    this.caches = undefined;
    if (caches) await Promise.all(Object.values(caches).map((cache: PrefixCache<unknown>) => cache.close()));
    const l = this.leadership;
    this.leadership = undefined;
    if (l && !l.signal.aborted) await l.resign();
    if (wasLeading) this.log('no longer leader');
  }

  /** Stops campaigning; a leader resigns at once so another engine takes over without waiting for the TTL. */
  async stop(): Promise<void> {
    if (this.stateNow === 'stopped' && !this.loop) return;
    this.abort.abort(new Error('engine stopped'));
    await this.leadership?.resign();
    await this.loop;
    this.loop = undefined;
    this.stateNow = 'stopped';
  }
}

function placementOf(rec: UnitRecord): PlacementRecord {
  return { hash: rec.hash, desiredState: rec.desiredState as JobState };
}
