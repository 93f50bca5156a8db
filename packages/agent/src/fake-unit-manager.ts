/**
 * An in-memory {@link UnitManager} with systemd's semantics where the agent
 * depends on them, for reconcile tests that run in milliseconds:
 *
 * - a units directory (name → text), runtime links and enablement;
 * - systemd's *loaded* definitions: a linked unit systemd does not know yet
 *   is loaded on first use (systemd 252 retries loading a not-found unit once
 *   its unit directories changed — measured in a lab machine), but a unit it
 *   already knows keeps its definition until {@link reload}: started after
 *   its file changed, it runs the OLD text (recorded in {@link staleStarts});
 *   an unlinked unit cannot be started (NotFoundError, like NoSuchUnit);
 * - jobs: start → activating/start, then on the next tick active/running (or
 *   failed/failed when {@link FakeUnitManagerOptions.fails} says so); stop →
 *   deactivating/stop, then inactive/dead; stopping a failed unit leaves it
 *   failed, as in systemd;
 * - the listener, like {@link SystemdManager}'s: a baseline for each newly
 *   watched unit, then every change of LoadState/ActiveState/SubState;
 * - call counters and an ordered operation log, so tests can assert "one
 *   reload per pass" and fleet's order (unload, load, reload, stop, start).
 *
 * Errors are the adapter's: ValidationError for invalid names, NotFoundError
 * for starting an unknown unit, UnavailableError after close() or while
 * {@link setUnavailable} is on. {@link disconnect} drops the connection as
 * the adapter's does when systemd's bus restarts: signals are lost until the
 * next call reconnects and resyncs.
 */
import { NotFoundError, UnavailableError, unitNameInfo, validateUnitName } from '@fleet/core';
import type { StatusListener, UnitFile, UnitManager, UnitStatus } from './unit-manager.js';

export interface FakeUnitManagerOptions {
  /**
   * Whether starting a unit with this (loaded) text fails, leaving it failed/failed.
   * @default a line `ExecStart=/bin/false` (or /usr/bin/false)
   */
  readonly fails?: (name: string, text: string) => boolean;
  /**
   * Delay before a job's transition (activating → active …) completes.
   * @default 0 (the next macrotask, via setImmediate)
   */
  readonly transitionDelayMs?: number;
  /** Called when {@link FakeUnitManager.disconnect} drops the connection, like the adapter's option. */
  readonly onDisconnect?: (error: UnavailableError) => void;
}

/** How often each method was called (a writeAndLink counts one link call, like the adapter's one LinkUnitFiles). */
export interface FakeUnitManagerCalls {
  start: number;
  readUnitFiles: number;
  writeAndLink: number;
  /** Files linked, summed over writeAndLink calls. */
  linkedFiles: number;
  /** writeAndLink calls that enabled at least one [Install] unit (the adapter's EnableUnitFiles). */
  enable: number;
  reload: number;
  startUnit: number;
  stopUnit: number;
  unload: number;
  statuses: number;
  mainPID: number;
  watch: number;
}

/** One entry of {@link FakeUnitManager.operations}. */
export interface FakeOperation {
  readonly op: 'writeAndLink' | 'reload' | 'startUnit' | 'stopUnit' | 'unload';
  readonly units: readonly string[];
}

const DEFAULT_FAILS = (_name: string, text: string) =>
  /^[ \t]*ExecStart=(?:\/usr)?\/bin\/false[ \t]*$/m.test(text);

interface RuntimeState {
  activeState: string;
  subState: string;
  mainPID: number;
  /** Bumped by every job; a scheduled transition applies only if it still matches. */
  token: number;
}

function newCalls(): FakeUnitManagerCalls {
  return {
    start: 0,
    readUnitFiles: 0,
    writeAndLink: 0,
    linkedFiles: 0,
    enable: 0,
    reload: 0,
    startUnit: 0,
    stopUnit: 0,
    unload: 0,
    statuses: 0,
    mainPID: 0,
    watch: 0,
  };
}

/** The state a successfully started unit settles in, by type. */
function activeStateFor(
  name: string,
  text: string,
): { activeState: string; subState: string; hasPID: boolean } {
  const type = unitNameInfo(name).type;
  switch (type) {
    case 'service': {
      if (/^[ \t]*Type=oneshot[ \t]*$/m.test(text)) {
        const remain = /^[ \t]*RemainAfterExit=(?:yes|true|on|1)[ \t]*$/im.test(text);
        return remain
          ? { activeState: 'active', subState: 'exited', hasPID: false }
          : { activeState: 'inactive', subState: 'dead', hasPID: false };
      }
      return { activeState: 'active', subState: 'running', hasPID: true };
    }
    case 'socket':
      return { activeState: 'active', subState: 'listening', hasPID: false };
    case 'timer':
    case 'path':
      return { activeState: 'active', subState: 'waiting', hasPID: false };
    case 'mount':
      return { activeState: 'active', subState: 'mounted', hasPID: false };
    default:
      return { activeState: 'active', subState: 'active', hasPID: false };
  }
}

export class FakeUnitManager implements UnitManager {
  /** Call counters; {@link resetCounters} zeroes them. */
  calls: FakeUnitManagerCalls = newCalls();
  /** Mutating operations in call order; {@link resetCounters} clears it. */
  readonly operations: FakeOperation[] = [];
  /** Units started while their file differed from the loaded definition (a reload was missing). */
  readonly staleStarts: string[] = [];
  /** Errors thrown by the status listener (the adapter would only log them). */
  readonly listenerErrors: unknown[] = [];

  private readonly fails: (name: string, text: string) => boolean;
  private readonly delayMs: number;
  /** The units directory. */
  private readonly files = new Map<string, string>();
  private readonly linked = new Set<string>();
  private readonly enabled = new Set<string>();
  /** Definitions as of the last reload: what "systemd" runs. */
  private readonly loaded = new Map<string, string>();
  private readonly runtime = new Map<string, RuntimeState>();
  private changedSinceReload = false;
  private nextPID = 1000;
  private pendingTransitions = 0;
  private idleWaiters: (() => void)[] = [];

  private watched: ReadonlySet<string> = new Set();
  private listener: StatusListener | undefined;
  private readonly known = new Map<string, UnitStatus>();
  private closed = false;
  private unavailable = false;
  private disconnected = false;
  private readonly onDisconnect: ((error: UnavailableError) => void) | undefined;

  constructor(options: FakeUnitManagerOptions = {}) {
    this.fails = options.fails ?? DEFAULT_FAILS;
    this.delayMs = options.transitionDelayMs ?? 0;
    this.onDisconnect = options.onDisconnect;
  }

  // --- UnitManager ---

  /** Connects; after close() this reconnects to the same "systemd" (its units kept running meanwhile). */
  async start(): Promise<void> {
    this.calls.start++;
    this.closed = false;
    this.check();
  }

  async readUnitFiles(): Promise<Map<string, string>> {
    this.calls.readUnitFiles++;
    this.check();
    return new Map([...this.files].sort(([a], [b]) => a.localeCompare(b)));
  }

  async writeAndLink(files: readonly UnitFile[]): Promise<void> {
    this.check();
    for (const f of files) validateUnitName(f.name);
    if (files.length === 0) return;
    this.calls.writeAndLink++;
    this.calls.linkedFiles += files.length;
    this.operations.push({ op: 'writeAndLink', units: files.map((f) => f.name) });
    let enabledAny = false;
    for (const f of files) {
      if (this.files.get(f.name) !== f.text || !this.linked.has(f.name)) this.changedSinceReload = true;
      this.files.set(f.name, f.text);
      this.linked.add(f.name);
      if (f.install) {
        this.enabled.add(f.name);
        enabledAny = true;
      } else {
        this.enabled.delete(f.name);
      }
    }
    if (enabledAny) this.calls.enable++;
  }

  async reload(): Promise<void> {
    this.check();
    this.calls.reload++;
    this.operations.push({ op: 'reload', units: [] });
    for (const name of this.linked) {
      const text = this.files.get(name);
      if (text !== undefined) this.loaded.set(name, text);
    }
    for (const name of [...this.loaded.keys()]) {
      if (!this.linked.has(name) || !this.files.has(name)) this.loaded.delete(name);
    }
    this.changedSinceReload = false;
    for (const name of this.watched) this.notify(name);
  }

  async startUnit(name: string): Promise<void> {
    this.check();
    validateUnitName(name);
    this.calls.startUnit++;
    this.operations.push({ op: 'startUnit', units: [name] });
    const text = this.loadOnDemand(name);
    if (text === undefined) {
      throw new NotFoundError(`Unit ${name} not found.`, {
        fields: { unit: name, dbusError: 'org.freedesktop.systemd1.NoSuchUnit' },
      });
    }
    if (this.files.get(name) !== text) this.staleStarts.push(name);
    const state = this.state(name);
    if (
      state.activeState === 'active' ||
      state.activeState === 'activating' ||
      state.activeState === 'reloading'
    )
      return;
    const token = ++state.token;
    this.set(name, { activeState: 'activating', subState: 'start' });
    this.later(() => {
      if (state.token !== token) return;
      if (this.fails(name, text)) {
        this.set(name, { activeState: 'failed', subState: 'failed', mainPID: 0 });
        return;
      }
      const done = activeStateFor(name, text);
      this.set(name, {
        activeState: done.activeState,
        subState: done.subState,
        mainPID: done.hasPID ? this.nextPID++ : 0,
      });
    });
  }

  async stopUnit(name: string): Promise<void> {
    this.check();
    validateUnitName(name);
    this.calls.stopUnit++;
    this.operations.push({ op: 'stopUnit', units: [name] });
    this.stop(name);
  }

  async unload(names: readonly string[]): Promise<void> {
    this.check();
    for (const name of names) validateUnitName(name);
    const unique = [...new Set(names)];
    if (unique.length === 0) return;
    this.calls.unload++;
    this.operations.push({ op: 'unload', units: unique });
    for (const name of unique) {
      this.stop(name);
      if (this.linked.delete(name)) this.changedSinceReload = true;
      this.enabled.delete(name);
      const state = this.runtime.get(name);
      if (state?.activeState === 'failed') this.set(name, { activeState: 'inactive', subState: 'dead' });
      this.files.delete(name);
    }
  }

  async statuses(names: readonly string[]): Promise<Map<string, UnitStatus>> {
    this.check();
    for (const name of names) validateUnitName(name);
    this.calls.statuses++;
    return new Map(names.map((name) => [name, this.status(name)]));
  }

  /** systemd's on-demand load: a linked file it does not know is read on first use. */
  private loadOnDemand(name: string): string | undefined {
    const known = this.loaded.get(name);
    if (known !== undefined) return known;
    const text = this.files.get(name);
    if (text === undefined || !this.linked.has(name)) return undefined;
    this.loaded.set(name, text);
    return text;
  }

  /** Like {@link SystemdManager.mainPID}: 0 when the unit has no main process. */
  async mainPID(name: string): Promise<number> {
    this.check();
    validateUnitName(name);
    this.calls.mainPID++;
    return this.runtime.get(name)?.mainPID ?? 0;
  }

  watch(names: ReadonlySet<string>, listener: StatusListener): void {
    if (this.closed) return;
    this.calls.watch++;
    const next = new Set(names);
    for (const name of this.known.keys()) if (!next.has(name)) this.known.delete(name);
    const added = [...next].filter((name) => !this.watched.has(name));
    this.watched = next;
    this.listener = listener;
    if (added.length > 0) {
      // Fetching the baseline is a call: it reconnects, as the adapter's does.
      this.reconnect();
      // The adapter fetches a baseline asynchronously; so does the fake.
      this.later(() => {
        for (const name of added) this.notify(name);
      });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listener = undefined;
    this.watched = new Set();
    this.known.clear();
  }

  // --- test controls and inspection ---

  /** While on, every call rejects with an UnavailableError and no signals arrive (systemd's bus is gone). */
  setUnavailable(unavailable: boolean): void {
    const wasUnavailable = this.unavailable;
    this.unavailable = unavailable;
    // The adapter resyncs watched units on reconnect.
    if (wasUnavailable && !unavailable) for (const name of this.watched) this.notify(name);
  }

  /**
   * Drops the connection as when systemd's bus restarts: `onDisconnect` is
   * called, status changes are lost from now on, and the next call (or
   * watching a new unit) reconnects and resyncs every watched unit, like
   * the adapter.
   */
  disconnect(): void {
    if (this.closed || this.disconnected) return;
    this.disconnected = true;
    this.onDisconnect?.(new UnavailableError('D-Bus connection closed (fake)'));
  }

  /** True between {@link disconnect} and the next call. */
  get isDisconnected(): boolean {
    return this.disconnected;
  }

  /**
   * Changes a unit's runtime state as if from outside the agent (a crash, an
   * admin's systemctl) and notifies the listener.
   */
  setUnitState(name: string, state: { activeState: string; subState: string; mainPID?: number }): void {
    validateUnitName(name);
    this.state(name).token++;
    this.set(name, state);
  }

  /** Resolves once every scheduled transition (and baseline) has happened. */
  settled(): Promise<void> {
    if (this.pendingTransitions === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Zeroes {@link calls} and clears {@link operations} and {@link staleStarts}. */
  resetCounters(): void {
    this.calls = newCalls();
    this.operations.length = 0;
    this.staleStarts.length = 0;
  }

  /** True when links or files changed since the last reload (systemd's NeedDaemonReload). */
  get needsReload(): boolean {
    return this.changedSinceReload;
  }

  /** The units directory: name → text. */
  unitFiles(): ReadonlyMap<string, string> {
    return new Map(this.files);
  }

  isLinked(name: string): boolean {
    return this.linked.has(name);
  }

  isEnabled(name: string): boolean {
    return this.enabled.has(name);
  }

  /** The definition systemd runs for this unit (as of the last reload), if any. */
  loadedText(name: string): string | undefined {
    return this.loaded.get(name);
  }

  /**
   * The unit's current status, synchronously (what statuses() would return).
   * Without mainPID, like the adapter's statuses (systemd has no batched
   * MainPID query): use {@link mainPID}.
   */
  status(name: string): UnitStatus {
    const state = this.runtime.get(name);
    return {
      name,
      loadState: this.loadOnDemand(name) !== undefined ? 'loaded' : 'not-found',
      activeState: state?.activeState ?? 'inactive',
      subState: state?.subState ?? 'dead',
    };
  }

  // --- internals ---

  private check(): void {
    if (this.closed) throw new UnavailableError('unit manager is closed');
    if (this.unavailable) {
      throw new UnavailableError('systemd is unavailable (fake)', {
        fields: { dbusError: 'org.freedesktop.DBus.Error.NoServer' },
      });
    }
    this.reconnect();
  }

  /** After {@link disconnect}: connects again and resyncs watched units (asynchronously, like the adapter). */
  private reconnect(): void {
    if (!this.disconnected) return;
    this.disconnected = false;
    this.later(() => {
      for (const name of this.watched) this.notify(name);
    });
  }

  private state(name: string): RuntimeState {
    let state = this.runtime.get(name);
    if (state === undefined) {
      state = { activeState: 'inactive', subState: 'dead', mainPID: 0, token: 0 };
      this.runtime.set(name, state);
    }
    return state;
  }

  private stop(name: string): void {
    const state = this.runtime.get(name);
    // Unknown, inactive or failed: the stop job has nothing to do (a failed unit stays failed).
    if (state === undefined || state.activeState === 'inactive' || state.activeState === 'failed') return;
    if (state.activeState === 'deactivating') return;
    const token = ++state.token;
    this.set(name, { activeState: 'deactivating', subState: 'stop' });
    this.later(() => {
      if (state.token === token) this.set(name, { activeState: 'inactive', subState: 'dead', mainPID: 0 });
    });
  }

  private set(name: string, next: { activeState: string; subState: string; mainPID?: number }): void {
    const state = this.state(name);
    state.activeState = next.activeState;
    state.subState = next.subState;
    if (next.mainPID !== undefined) state.mainPID = next.mainPID;
    this.notify(name);
  }

  /** Tells the listener about a watched unit whose status differs from what it last heard. */
  private notify(name: string): void {
    if (this.closed || this.unavailable || this.disconnected || !this.watched.has(name)) return;
    const status = this.status(name);
    const previous = this.known.get(name);
    if (
      previous !== undefined &&
      previous.loadState === status.loadState &&
      previous.activeState === status.activeState &&
      previous.subState === status.subState
    ) {
      return;
    }
    this.known.set(name, status);
    try {
      this.listener?.(status);
    } catch (err) {
      // The adapter logs and carries on; the fake keeps the error for tests to check.
      this.listenerErrors.push(err);
    }
  }

  private later(fn: () => void): void {
    this.pendingTransitions++;
    const run = () => {
      try {
        fn();
      } finally {
        this.pendingTransitions--;
        if (this.pendingTransitions === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const resolve of waiters) resolve();
        }
      }
    };
    if (this.delayMs > 0) setTimeout(run, this.delayMs);
    else setImmediate(run);
  }
}
