import { createHash } from 'node:crypto';
import {
  errorMessage,
  hasInstallSection,
  parseRequirements,
  serializeUnitOptions,
  type Metrics,
  type UnitOption,
} from '@fleet/core';
import { PrefixCache, type PlacementRecord, type Registry, type StateRecord } from '@fleet/registry';
import {
  computeTasks,
  isStartedState,
  type AgentTask,
  type AgentUnitState,
  type CurrentUnit,
  type DesiredUnit,
} from './reconcile.js';
import type { UnitFile, UnitManager, UnitStatus } from './unit-manager.js';

export type AgentState = 'new' | 'starting' | 'running' | 'stopped';

const KEPT_REASON =
  'can run only on this machine, and its placement is missing because the machine was away; waiting for the engine to place it here again';

/** Longest wait between attempts to reconnect to systemd. */
const MAX_RECONNECT_DELAY_MS = 5000;
/** Unit bodies read from etcd at once when a pass loads several new units. */
const BODY_READS_IN_FLIGHT = 16;

export interface AgentOptions {
  readonly registry: Registry;
  readonly machineID: string;
  readonly manager: UnitManager;
  /**
   * The lease that this machine's reported states hang on; undefined while the
   * machine is not registered (e.g. cut off from etcd). fleetd owns it.
   */
  readonly leaseID: () => string | undefined;
  /** Slow periodic resync in ms. @default 60000 */
  readonly resyncIntervalMs?: number;
  /** Retry delay after an etcd or systemd error, in ms. @default 500 */
  readonly retryDelayMs?: number;
  /**
   * How long after this machine registers (again) a unit that can run only
   * here (Global, or MachineID naming this machine) keeps running although
   * its placement is missing, waiting for the engine to place it here again,
   * in ms. While the machine is not registered such units are kept too.
   * @default 5000
   */
  readonly rejoinGraceMs?: number;
  readonly log?: (message: string) => void;
  readonly metrics?: Metrics;
}

/** A settled state is published this long after it was heard (coalescing a burst into one write). */
const REPORT_COALESCE_MS = 5;
/**
 * A transitional state (activating, deactivating, reloading) waits up to this
 * long for the settled one, so a start or stop usually costs one etcd write,
 * not two (target P8); one that takes longer is published when the wait ends.
 */
const TRANSITION_HOLD_MS = 150;
const TRANSITIONAL_STATES: ReadonlySet<string> = new Set(['activating', 'deactivating', 'reloading']);

/** A unit this agent has written to disk, and what it made of it. */
interface LocalUnit extends CurrentUnit {
  readonly hash: string;
  state: AgentUnitState;
}

/**
 * The per-machine reconciler. Desired = this machine's placements (one watch
 * on its own `schedule/<machine>/` prefix); current = the files it wrote plus
 * what it commanded (adopted from systemd after a restart). A pure
 * {@link computeTasks} decides; the executor batches links and reloads once.
 *
 * Safety: it acts only on positive knowledge. If etcd is unreachable the
 * placement view simply stops changing, so nothing is stopped; units are
 * unloaded only when a synced view says they are no longer placed here.
 */
export class Agent {
  private stateNow: AgentState = 'new';
  private placements: PrefixCache<PlacementRecord> | undefined;
  private readonly local = new Map<string, LocalUnit>();
  private readonly bodies = new Map<string, readonly UnitOption[]>();
  private readonly reported = new Map<string, string>();
  private readonly pendingReports = new Map<string, StateRecord | undefined>();
  /** The batch of state reports being written now (encoded; undefined = withdrawn). */
  private readonly inflight = new Map<string, string | undefined>();
  private readonly latest = new Map<string, UnitStatus>();
  /** Status changes heard from the unit manager so far, and the number of the last one per unit. */
  private heardCount = 0;
  private readonly heardAt = new Map<string, number>();
  private dirty = false;
  private reconciling: Promise<void> | undefined;
  private flushing: Promise<void> | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  /** When the pending flush timer fires (to move it earlier, never later). */
  private flushAt = 0;
  /** Units whose pending report is a transitional state, and since when it waits. */
  private readonly heldSince = new Map<string, number>();
  /** The flush failed: wait before trying etcd again. */
  private flushFailed = false;
  private resyncTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private startLoop: Promise<void> | undefined;
  private reconnecting: Promise<void> | undefined;
  /** This machine has registered since start: its machine ID is its own. */
  private claimed = false;
  private waitingLogged = false;
  /** When this machine last registered (performance.now()), for {@link rejoinGraceMs}. */
  private registeredAt: number | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private readonly keptLogged = new Set<string>();
  private readonly waiters: Array<() => void> = [];
  reconcileCount = 0;
  private closed = false;

  constructor(private readonly options: AgentOptions) {}

  get state(): AgentState {
    return this.stateNow;
  }

  private isStopped(): boolean {
    return this.stateNow === 'stopped';
  }

  private log(message: string): void {
    this.options.log?.(`agent: ${message}`);
  }

  /**
   * Adopts what is already on disk and running, then starts watching this
   * machine's placements (retrying until etcd answers). Resolves once the
   * adoption is done; reconciling begins when the placement view is synced.
   */
  async start(): Promise<void> {
    if (this.stateNow !== 'new') return;
    this.stateNow = 'starting';
    const { manager } = this.options;
    await manager.start();
    await this.adopt();
    this.startLoop = this.syncPlacements();
  }

  /** Reads units_directory and systemd: running units are taken over as they are (R4). */
  private async adopt(): Promise<void> {
    const { manager } = this.options;
    const files = await manager.readUnitFiles();
    const statuses = await manager.statuses([...files.keys()]);
    for (const [name, text] of files) {
      const status = statuses.get(name);
      const started = status !== undefined && isStartedState(status.activeState);
      this.local.set(name, { hash: hashOfText(text), state: started ? 'launched' : 'loaded' });
      if (status) this.latest.set(name, status);
    }
    if (files.size > 0) this.log(`adopted ${files.size} unit(s) already on this machine`);
    this.watchStatuses();
    for (const name of this.local.keys()) this.queueReport(name);
  }

  private async syncPlacements(): Promise<void> {
    const { registry, machineID } = this.options;
    for (;;) {
      if (this.stateNow === 'stopped') return;
      const cache = new PrefixCache(registry.kv, registry.keys.machineSchedulePrefix(machineID), {
        decode: (_k, kv) => registry.decodePlacement(kv.value),
        onWarning: (m) => this.log(m),
      });
      try {
        await cache.start();
      } catch (err) {
        await cache.close();
        this.log(`cannot read placements yet (${errorMessage(err)}); running units are left alone`);
        await new Promise((r) => setTimeout(r, this.options.retryDelayMs ?? 500));
        continue;
      }
      if (this.isStopped()) {
        await cache.close();
        return;
      }
      this.placements = cache;
      cache.onChange(() => this.trigger());
      this.stateNow = 'running';
      this.resyncTimer = setInterval(() => this.trigger(), this.options.resyncIntervalMs ?? 60_000);
      this.resyncTimer.unref();
      this.trigger();
      return;
    }
  }

  /**
   * Tells the agent that the unit manager lost its connection (systemd's bus
   * restarted): no status change is heard until it connects again, which it
   * does only on its next call — and an idle agent makes none. So connect
   * again now (retrying, with backoff, until systemd answers): the manager
   * then resyncs every watched unit, and the states published for this
   * machine's units become true again. A reconcile follows, for anything
   * that failed meanwhile. fleetd wires this to SystemdManager's `onDisconnect`.
   */
  unitManagerLost(error: unknown): void {
    if (this.isStopped() || this.reconnecting) return;
    this.log(`lost the connection to systemd (${errorMessage(error)}); reconnecting`);
    this.reconnecting = this.reconnectManager().finally(() => {
      this.reconnecting = undefined;
    });
  }

  private async reconnectManager(): Promise<void> {
    let delay = this.options.retryDelayMs ?? 500;
    while (!this.isStopped()) {
      try {
        await this.options.manager.start();
        this.log('connected to systemd again');
        this.trigger();
        return;
      } catch (err) {
        this.log(`cannot reconnect to systemd yet: ${errorMessage(err)}`);
        await new Promise((r) => setTimeout(r, delay).unref());
        delay = Math.min(delay * 2, MAX_RECONNECT_DELAY_MS);
      }
    }
  }

  /**
   * Asks for a reconcile (level-triggered; coalesced with one in flight).
   * Nothing is reconciled before this machine has registered once: until
   * then the machine ID may be another live machine's (a copied
   * /etc/machine-id, which fleet refused to serve), and acting on its
   * placements would run that machine's units here too. fleetd calls
   * {@link machineRegistered} when it registers.
   */
  trigger(): void {
    if (this.stateNow !== 'running') return;
    if (!this.claimed) {
      if (this.options.leaseID() === undefined) {
        if (!this.waitingLogged) this.log('placements are not acted on until this machine is registered');
        this.waitingLogged = true;
        return;
      }
      this.claimed = true;
    }
    this.dirty = true;
    if (this.reconciling) return;
    this.reconciling = this.drain().finally(() => {
      this.reconciling = undefined;
    });
  }

  private async drain(): Promise<void> {
    while (this.dirty && this.stateNow === 'running') {
      this.dirty = false;
      await new Promise((r) => setImmediate(r));
      try {
        await this.reconcile();
        this.reconcileCount++;
        for (const w of this.waiters.splice(0)) w();
      } catch (err) {
        this.log(`reconcile failed: ${errorMessage(err)}`);
        this.options.metrics
          ?.counter({ name: 'fleet_agent_reconcile_errors_total', help: 'Failed agent reconciles' })
          .inc();
        if (this.retryTimer === undefined && this.stateNow === 'running') {
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            this.trigger();
          }, this.options.retryDelayMs ?? 500);
        }
      }
    }
  }

  /** Resolves after the next completed reconcile (tests). */
  nextReconcile(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * Units to keep as they are although their placement is missing: while this
   * machine is not registered, and for a grace period after it registers
   * again, the engine has removed its placements only because it could not
   * see the machine. A unit that can run only here (Global, or MachineID
   * naming this machine) is placed here again as soon as the engine sees the
   * machine back, so stopping it now would only restart it moments later.
   * Units that can run elsewhere were moved and are unloaded at once; a unit
   * kept this way that the engine does not place again is unloaded when the
   * grace period ends.
   */
  private async keptForRejoin(desired: ReadonlyMap<string, DesiredUnit>): Promise<Map<string, DesiredUnit>> {
    const kept = new Map<string, DesiredUnit>();
    const graceMs = this.options.rejoinGraceMs ?? 5000;
    const registered = this.options.leaseID() !== undefined;
    const graceLeft =
      registered && this.registeredAt !== undefined ? this.registeredAt + graceMs - performance.now() : 0;
    if (registered && graceLeft <= 0) {
      this.keptLogged.clear();
      return kept;
    }
    for (const [unit, local] of this.local) {
      if (desired.has(unit)) continue;
      const body = await this.bodyOf(local.hash).catch(() => undefined);
      if (!body || !this.canRunOnlyHere(unit, body)) continue;
      kept.set(unit, { hash: local.hash, state: local.state });
      if (!this.keptLogged.has(unit)) {
        this.keptLogged.add(unit);
        this.log(`keep ${unit}: ${KEPT_REASON}`);
      }
    }
    if (kept.size > 0 && registered && this.graceTimer === undefined) {
      this.graceTimer = setTimeout(() => {
        this.graceTimer = undefined;
        this.trigger();
      }, graceLeft + 1);
      this.graceTimer.unref();
    }
    return kept;
  }

  private canRunOnlyHere(unit: string, body: readonly UnitOption[]): boolean {
    try {
      const req = parseRequirements(body, unit);
      const id = req.machineID;
      const me = this.options.machineID;
      return req.global || (id !== undefined && (id === me || (id.length === 8 && me.startsWith(id))));
    } catch {
      return false;
    }
  }

  /**
   * Reads the bodies not yet known, BODY_READS_IN_FLIGHT at a time instead of
   * one round trip after another (a burst of 33 new units per machine, P2).
   * Failures are left for bodyOf to report.
   */
  private async prefetchBodies(hashes: readonly string[]): Promise<void> {
    const missing = [...new Set(hashes)].filter((h) => !this.bodies.has(h));
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < missing.length) {
        await this.bodyOf(missing[next++] as string).catch(() => undefined);
      }
    };
    await Promise.all(Array.from({ length: Math.min(BODY_READS_IN_FLIGHT, missing.length) }, worker));
  }

  private async bodyOf(hash: string): Promise<readonly UnitOption[] | undefined> {
    const cached = this.bodies.get(hash);
    if (cached) return cached;
    const body = await this.options.registry.getBody(hash);
    if (body) this.bodies.set(hash, body);
    return body;
  }

  /** One pass: desired from the placement view, current from disk, tasks, execute. */
  async reconcile(): Promise<AgentTask[]> {
    const cache = this.placements;
    if (!cache || cache.state !== 'synced') return [];
    const started = performance.now();
    const desired = new Map<string, DesiredUnit>();
    for (const [unit, p] of cache.entries()) {
      if (p.desiredState === 'inactive') continue;
      desired.set(unit, { hash: p.hash, state: p.desiredState });
    }
    for (const [unit, kept] of await this.keptForRejoin(desired)) desired.set(unit, kept);
    const tasks = computeTasks(desired, this.local);
    if (tasks.length === 0) return tasks;

    // Bodies for units to (re)load; a unit whose body cannot be read now is left as it is.
    const files: UnitFile[] = [];
    const skipped = new Set<string>();
    await this.prefetchBodies(
      tasks.filter((t) => t.kind === 'load').map((t) => (desired.get(t.unit) as DesiredUnit).hash),
    );
    for (const t of tasks) {
      if (t.kind !== 'load') continue;
      const want = desired.get(t.unit) as DesiredUnit;
      const body = await this.bodyOf(want.hash);
      if (!body) {
        skipped.add(t.unit);
        continue;
      }
      files.push({ name: t.unit, text: serializeUnitOptions(body), install: hasInstallSection(body) });
    }
    const run = tasks.filter((t) => !skipped.has(t.unit) || t.kind === 'reload');
    for (const t of run) if (t.kind !== 'reload') this.log(`${t.kind} ${t.unit}: ${t.reason}`);

    const { manager } = this.options;
    const unloads = run.filter((t) => t.kind === 'unload').map((t) => t.unit);
    if (unloads.length > 0) {
      await manager.unload(unloads);
      for (const u of unloads) {
        this.local.delete(u);
        this.heardAt.delete(u);
      }
    }
    // A daemon reload costs ~150 ms (local-cluster.md) and is needed only when
    // systemd may hold an old definition: after unloads, for names it already
    // knows, or to apply [Install] enablement. A unit systemd does not know is
    // loaded on first use (systemd 252 retries not-found units once its unit
    // directories change), so a brand-new unit starts without one.
    let reload = unloads.length > 0 || files.some((f) => f.install);
    if (files.length > 0) {
      if (!reload) {
        const before = await manager.statuses(files.map((f) => f.name));
        reload = files.some((f) => (before.get(f.name)?.loadState ?? 'not-found') !== 'not-found');
      }
      await manager.writeAndLink(files);
      for (const f of files) this.local.set(f.name, { hash: hashOfText(f.text), state: 'loaded' });
    }
    if (reload) await manager.reload();
    this.watchStatuses();
    for (const t of run) {
      const unit = this.local.get(t.unit);
      if (t.kind === 'stop' && unit) {
        await manager.stopUnit(t.unit);
        unit.state = 'loaded';
      } else if (t.kind === 'start' && unit) {
        await manager.startUnit(t.unit);
        unit.state = 'launched';
      }
    }
    // Report the new picture: removed units vanish, loaded ones get systemd's view.
    for (const u of unloads) if (!this.local.has(u)) this.queueReport(u);
    const touched = [
      ...new Set(run.filter((t) => t.unit !== '' && this.local.has(t.unit)).map((t) => t.unit)),
    ];
    if (touched.length > 0) {
      const asked = this.heardCount;
      const statuses = await manager.statuses(touched);
      // A change heard after the question was sent is newer than the reply: keep it.
      for (const [name, s] of statuses) if ((this.heardAt.get(name) ?? 0) <= asked) this.latest.set(name, s);
      for (const name of touched) this.queueReport(name);
    }
    const m = this.options.metrics;
    if (m) {
      m.counter({ name: 'fleet_agent_tasks_total', help: 'Agent tasks executed' }).inc(undefined, run.length);
      m.gauge({ name: 'fleet_agent_units', help: 'Units on this machine' }).set(undefined, this.local.size);
      m.histogram({ name: 'fleet_agent_reconcile_seconds', help: 'Agent reconcile duration' }).observe(
        undefined,
        (performance.now() - started) / 1000,
      );
    }
    return run;
  }

  private watchStatuses(): void {
    this.options.manager.watch(new Set(this.local.keys()), (status) => {
      this.heardAt.set(status.name, ++this.heardCount);
      this.latest.set(status.name, status);
      this.queueReport(status.name);
    });
  }

  // ---- state reporting -----------------------------------------------------

  private queueReport(unit: string): void {
    const local = this.local.get(unit);
    const status = this.latest.get(unit);
    const record: StateRecord | undefined = local
      ? {
          hash: local.hash,
          loadState: status?.loadState ?? 'loaded',
          activeState: status?.activeState ?? 'inactive',
          subState: status?.subState ?? 'dead',
        }
      : undefined;
    const encoded = record ? JSON.stringify(record) : undefined;
    // Compare with what etcd will hold once the write in flight lands, not with what it held before it.
    const published = this.inflight.has(unit) ? this.inflight.get(unit) : this.reported.get(unit);
    if (encoded === published) {
      // Already published as it is (or never published and now gone): nothing to write.
      this.pendingReports.delete(unit);
      return;
    }
    this.pendingReports.set(unit, record);
    if (record !== undefined && TRANSITIONAL_STATES.has(record.activeState ?? '')) {
      // activating/deactivating usually settle within milliseconds: wait a
      // little for the settled state and publish one write instead of two.
      if (!this.heldSince.has(unit)) this.heldSince.set(unit, performance.now());
      this.scheduleFlush(TRANSITION_HOLD_MS);
    } else {
      this.heldSince.delete(unit);
      this.scheduleFlush(REPORT_COALESCE_MS);
    }
  }

  /**
   * This machine registered (at start, or again after its lease was lost):
   * states are re-published under the new lease, and units kept while it was
   * away get their grace period from now on. fleetd calls this.
   */
  machineRegistered(): void {
    this.registeredAt = performance.now();
    this.republishStates();
    this.trigger();
  }

  /** After the machine registered again (new lease), every state must be re-published under it. */
  republishStates(): void {
    this.reported.clear();
    this.inflight.clear(); // a write in flight went under the old lease: it does not count
    for (const name of this.local.keys()) this.queueReport(name);
  }

  private scheduleFlush(delayMs: number): void {
    if (this.flushing) return; // the running flush reschedules what is left
    const at = performance.now() + delayMs;
    if (this.flushTimer) {
      if (at >= this.flushAt) return;
      clearTimeout(this.flushTimer);
    }
    this.flushAt = at;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.flushing = this.flush().finally(() => {
        this.flushing = undefined;
        if (this.pendingReports.size === 0 || this.stateNow === 'stopped') return;
        if (this.flushFailed) this.scheduleFlush(this.options.retryDelayMs ?? 500);
        else this.scheduleFlush(this.nextHoldExpiry());
      });
    }, delayMs);
  }

  /** ms until the next pending report is due: unheld ones at once, held ones when their wait ends. */
  private nextHoldExpiry(): number {
    const now = performance.now();
    let next = Infinity;
    for (const unit of this.pendingReports.keys()) {
      const since = this.heldSince.get(unit);
      next = Math.min(next, since === undefined ? 0 : since + TRANSITION_HOLD_MS - now);
    }
    return Math.max(REPORT_COALESCE_MS, next);
  }

  private async flush(): Promise<void> {
    this.flushFailed = false;
    const leaseID = this.options.leaseID();
    if (leaseID === undefined || this.pendingReports.size === 0) return;
    const now = performance.now();
    const batch = new Map<string, StateRecord | undefined>();
    for (const [unit, rec] of this.pendingReports) {
      const since = this.heldSince.get(unit);
      if (since !== undefined && now - since < TRANSITION_HOLD_MS) continue; // still waiting to settle
      batch.set(unit, rec);
    }
    if (batch.size === 0) return;
    for (const unit of batch.keys()) {
      this.pendingReports.delete(unit);
      this.heldSince.delete(unit);
    }
    for (const [unit, rec] of batch) this.inflight.set(unit, rec ? JSON.stringify(rec) : undefined);
    try {
      await this.options.registry.putStates(this.options.machineID, leaseID, batch);
      for (const [unit, rec] of batch) {
        if (rec === undefined) this.reported.delete(unit);
        else this.reported.set(unit, JSON.stringify(rec));
      }
      this.options.metrics
        ?.counter({ name: 'fleet_agent_state_reports_total', help: 'Unit states published' })
        .inc(undefined, batch.size);
    } catch (err) {
      // Keep the newest value of each; retry later (coalesced).
      for (const [unit, rec] of batch) if (!this.pendingReports.has(unit)) this.pendingReports.set(unit, rec);
      this.flushFailed = true;
      this.log(`cannot publish unit states yet: ${errorMessage(err)}`);
    } finally {
      this.inflight.clear();
    }
  }

  /** Resolves when every queued state report has been published (tests). */
  async flushed(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.pendingReports.size > 0 || this.flushing || this.flushTimer) {
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 5));
    }
    return true;
  }

  /** What this agent runs now (for SIGUSR1 dumps and tests). */
  dump(): Record<string, { hash: string; state: AgentUnitState; activeState?: string; subState?: string }> {
    const out: Record<
      string,
      { hash: string; state: AgentUnitState; activeState?: string; subState?: string }
    > = {};
    for (const [name, u] of [...this.local].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const s = this.latest.get(name);
      out[name] = {
        hash: u.hash,
        state: u.state,
        ...(s ? { activeState: s.activeState, subState: s.subState } : {}),
      };
    }
    return out;
  }

  /**
   * Unloads every unit this agent placed on the machine (stop, disable,
   * remove, one reload): what a machine leaving the cluster does, as fleet's
   * agent did on shutdown. Call after the machine's presence is revoked.
   */
  async purge(): Promise<void> {
    const names = [...this.local.keys()];
    this.stateNow = 'stopped';
    await this.reconciling?.catch(() => undefined);
    if (names.length === 0) return;
    this.log(`leaving the cluster: unloading ${names.length} unit(s)`);
    await this.options.manager.unload(names);
    await this.options.manager.reload();
    this.local.clear();
  }

  /**
   * Stops reconciling and reporting. Never stops units: a fleetd restart must
   * not restart anything (R4); units leave only when placed elsewhere.
   */
  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stateNow = 'stopped';
    for (const t of [this.resyncTimer, this.retryTimer, this.graceTimer]) if (t) clearInterval(t);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    await this.startLoop;
    await this.reconciling?.catch(() => undefined);
    await this.flushing;
    await this.placements?.close();
    await this.options.manager.close();
  }
}

/** The file holds canonical text, so the SHA-1 of the text is the unit's hash. */
function hashOfText(text: string): string {
  return createHash('sha1').update(text, 'utf8').digest('hex');
}
