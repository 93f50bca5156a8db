/**
 * {@link UnitManager} over systemd's D-Bus API (org.freedesktop.systemd1), the
 * way fleet's agent drove systemd (fleet-compat §8, fleet's systemd/manager.go):
 * canonical unit files in `units_directory`, linked as runtime units (enabled
 * too when they have [Install]), one daemon-reload per batch, start/stop jobs
 * with mode `replace`.
 *
 * Unit state comes from signals, never from polling: after `Subscribe`,
 * systemd emits `PropertiesChanged` on each unit's object; statuses missing
 * from a signal, and every watched unit after a daemon-reload or a reconnect,
 * are fetched with ONE batched `ListUnitsByNames` per short coalescing window.
 * An idle agent makes no D-Bus calls at all.
 */
import PQueue from 'p-queue';
import {
  NotFoundError,
  UnavailableError,
  ValidationError,
  errorMessage,
  isFleetError,
  isValidUnitName,
  validateUnitName,
} from '@fleet/core';
import { SystemdBus, type BusCall, type BusSignal } from './systemd-bus.js';
import { unitNameFromPath, unitObjectPath } from './systemd-escape.js';
import { UnitDirectory } from './systemd-unit-directory.js';
import type { StatusListener, UnitFile, UnitManager, UnitStatus } from './unit-manager.js';

const SYSTEMD = 'org.freedesktop.systemd1';
const MANAGER_PATH = '/org/freedesktop/systemd1';
const MANAGER_IFACE = 'org.freedesktop.systemd1.Manager';
const UNIT_IFACE = 'org.freedesktop.systemd1.Unit';
const SERVICE_IFACE = 'org.freedesktop.systemd1.Service';
const PROPERTIES_IFACE = 'org.freedesktop.DBus.Properties';
const DBUS = 'org.freedesktop.DBus';
const DBUS_PATH = '/org/freedesktop/DBus';

/**
 * The two signal subscriptions. Manager signals (JobRemoved, UnitNew,
 * UnitRemoved, Reloading) come from one path. Unit state changes come as
 * PropertiesChanged on every unit's own path; one rule with path_namespace
 * and arg0 (the interface) covers them all — a rule per watched unit would
 * run into dbus-daemon's per-connection match limit at 1,000 units — and
 * the watched ones are picked out in-process.
 */
const MATCH_RULES = [
  `type='signal',sender='${SYSTEMD}',path='${MANAGER_PATH}',interface='${MANAGER_IFACE}'`,
  `type='signal',sender='${SYSTEMD}',interface='${PROPERTIES_IFACE}',member='PropertiesChanged',path_namespace='/org/freedesktop/systemd1/unit',arg0='${UNIT_IFACE}'`,
] as const;

const STATE_PROPERTIES: ReadonlySet<string> = new Set(['LoadState', 'ActiveState', 'SubState']);

/** D-Bus errors meaning "this unit has no such property", for {@link SystemdManager.mainPID}. */
const NO_PROPERTY_ERRORS: ReadonlySet<string> = new Set([
  'org.freedesktop.DBus.Error.UnknownProperty',
  'org.freedesktop.DBus.Error.UnknownInterface',
  'org.freedesktop.DBus.Error.UnknownObject',
  'org.freedesktop.DBus.Error.InvalidArgs',
]);

export interface SystemdManagerOptions {
  /**
   * fleet's `units_directory`: where unit files are written, as systemd sees
   * it (absolute). These paths are what LinkUnitFiles receives.
   * @default '/run/fleet/units'
   */
  readonly unitsDirectory?: string;
  /**
   * Prefix under which this process reaches systemd's filesystem, when systemd
   * runs in another mount namespace — e.g. `/proc/<pid>/root` for a fleet-lab
   * machine driven from the host (together with `busAddress`). Files are
   * written to `rootPath + unitsDirectory`; systemd is given `unitsDirectory`.
   * @default '' (same filesystem)
   */
  readonly rootPath?: string;
  /**
   * Drive the user's service manager on the session bus (fleet's
   * `systemd_user`) instead of the system manager.
   * @default false
   */
  readonly userManager?: boolean;
  /**
   * D-Bus address to connect to, e.g. `unix:path=/proc/<pid>/root/run/dbus/system_bus_socket`.
   * systemd's private socket (/run/systemd/private) does not work: dbus-next always says Hello.
   * @default $DBUS_SYSTEM_BUS_ADDRESS or unix:path=/run/dbus/system_bus_socket;
   *   with `userManager`, $DBUS_SESSION_BUS_ADDRESS or unix:path=$XDG_RUNTIME_DIR/bus
   */
  readonly busAddress?: string;
  /**
   * How many StartUnit/StopUnit/ResetFailedUnit calls may be in flight at once.
   * systemd handles them one at a time, so more barely helps.
   * @default 8
   */
  readonly startConcurrency?: number;
  /**
   * Deadline for connecting and for each call's reply (dbus-next has none);
   * a call that misses it rejects with an UnavailableError.
   * @default 25000 (libdbus's default reply timeout)
   */
  readonly callTimeoutMs?: number;
  /**
   * How long unit signals are collected before the units whose status they
   * did not fully carry are fetched in one ListUnitsByNames call.
   * @default 5
   */
  readonly coalesceMs?: number;
  /** Called when the bus connection is lost; the next call (or {@link SystemdManager.reconnect}) reconnects. */
  readonly onDisconnect?: (error: UnavailableError) => void;
  /** Diagnostic messages (connects, disconnects, ignored errors). @default no logging */
  readonly log?: (message: string) => void;
}

interface CompiledOptions {
  readonly busAddress: string;
  readonly startConcurrency: number;
  readonly callTimeoutMs: number;
  readonly coalesceMs: number;
  readonly onDisconnect: (error: UnavailableError) => void;
  readonly log: (message: string) => void;
}

function defaultBusAddress(userManager: boolean): string {
  if (!userManager) return process.env['DBUS_SYSTEM_BUS_ADDRESS'] ?? 'unix:path=/run/dbus/system_bus_socket';
  const session = process.env['DBUS_SESSION_BUS_ADDRESS'];
  if (session !== undefined) return session;
  const runtime = process.env['XDG_RUNTIME_DIR'] ?? `/run/user/${process.getuid?.() ?? 0}`;
  return `unix:path=${runtime}/bus`;
}

function positive(name: string, value: number | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < min) {
    throw new ValidationError(`${name} must be a number ≥ ${min}, got ${value}`, {
      fields: { [name]: value },
    });
  }
  return value;
}

function variantString(v: unknown): string | undefined {
  if (typeof v === 'object' && v !== null && 'value' in v) {
    const value = (v as { value: unknown }).value;
    if (typeof value === 'string') return value;
  }
  return undefined;
}

function hasInstallSection(text: string | undefined): boolean {
  return text !== undefined && /^[ \t]*\[Install\][ \t]*$/m.test(text);
}

function sameStatus(a: UnitStatus, b: UnitStatus): boolean {
  return a.loadState === b.loadState && a.activeState === b.activeState && a.subState === b.subState;
}

/** Context for error fields: a few names and the count, not a 1,000-element list. */
function unitsField(names: readonly string[]): Record<string, unknown> {
  return names.length === 1 ? { unit: names[0] } : { units: names.slice(0, 5), count: names.length };
}

function uniqueValidNames(names: readonly string[]): string[] {
  const unique = [...new Set(names)];
  for (const name of unique) validateUnitName(name);
  return unique;
}

/**
 * The agent's systemd adapter. Lifecycle: `new` → {@link start} (or the first
 * call) connects → {@link close}. Between, a lost connection is reported
 * through `onDisconnect` and re-established by the next call.
 */
export class SystemdManager implements UnitManager {
  private readonly options: CompiledOptions;
  private readonly directory: UnitDirectory;
  private readonly jobs: PQueue;
  private readonly counts = new Map<string, number>();
  private bus: SystemdBus | undefined;
  private connecting: Promise<SystemdBus> | undefined;
  private closed = false;

  private watched: ReadonlySet<string> = new Set();
  private listener: StatusListener | undefined;
  /** Last status seen for each watched unit (the listener is told only about differences). */
  private readonly known = new Map<string, UnitStatus>();
  /** Arrival order of the message each `known` status came from: an older reply never overwrites it. */
  private readonly knownSeq = new Map<string, number>();
  /** Watched units whose status must be fetched. */
  private readonly dirty = new Set<string>();
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing = false;

  constructor(options: SystemdManagerOptions = {}) {
    const userManager = options.userManager ?? false;
    this.options = {
      busAddress: options.busAddress ?? defaultBusAddress(userManager),
      startConcurrency: positive('startConcurrency', options.startConcurrency, 8),
      callTimeoutMs: positive('callTimeoutMs', options.callTimeoutMs, 25_000),
      coalesceMs: positive('coalesceMs', options.coalesceMs, 5, 0),
      onDisconnect: options.onDisconnect ?? (() => undefined),
      log: options.log ?? (() => undefined),
    };
    this.directory = new UnitDirectory({
      path: options.unitsDirectory ?? '/run/fleet/units',
      rootPath: options.rootPath ?? '',
    });
    this.jobs = new PQueue({ concurrency: this.options.startConcurrency });
  }

  /** The units directory as systemd sees it. */
  get unitsDirectory(): string {
    return this.directory.path;
  }

  /** True while a bus connection is up. */
  get connected(): boolean {
    return this.bus?.connected ?? false;
  }

  /**
   * Method calls sent so far, by D-Bus member (LinkUnitFiles, Reload, StartUnit,
   * ListUnitsByNames …), over the manager's lifetime. Lets tests assert batching
   * and that an idle manager makes no calls.
   */
  callCounts(): Map<string, number> {
    return new Map(this.counts);
  }

  async start(): Promise<void> {
    await this.ensureBus();
  }

  /** Drops the current connection (if any) and connects again; watched units are resynced. */
  async reconnect(): Promise<void> {
    const bus = this.bus;
    this.bus = undefined;
    bus?.close();
    await this.ensureBus();
  }

  async readUnitFiles(): Promise<Map<string, string>> {
    return this.directory.read();
  }

  async writeAndLink(files: readonly UnitFile[]): Promise<void> {
    if (files.length === 0) return;
    const byName = new Map<string, UnitFile>();
    for (const f of files) {
      validateUnitName(f.name);
      const other = byName.get(f.name);
      if (other !== undefined && other.text !== f.text) {
        throw new ValidationError(`unit ${f.name} given twice with different texts`, {
          fields: { unit: f.name },
        });
      }
      byName.set(f.name, f);
    }
    const unique = [...byName.values()];
    const previous = await this.directory.write(unique);
    // A unit that lost its [Install] section must lose its runtime .wants/
    // links too. Disabling also removes the link itself, so do it first.
    const uninstalled = unique.filter((f) => !f.install && hasInstallSection(previous.get(f.name)));
    if (uninstalled.length > 0) await this.disable(uninstalled.map((f) => f.name));
    const paths = unique.map((f) => this.directory.unitPath(f.name));
    // runtime=true (under /run, gone at reboot, like fleet), force=true (replace stale links)
    await this.manager('LinkUnitFiles', 'asbb', [paths, true, true], unitsField(unique.map((f) => f.name)));
    const install = unique.filter((f) => f.install);
    if (install.length > 0) {
      const installPaths = install.map((f) => this.directory.unitPath(f.name));
      await this.manager(
        'EnableUnitFiles',
        'asbb',
        [installPaths, true, true],
        unitsField(install.map((f) => f.name)),
      );
    }
  }

  async reload(): Promise<void> {
    // Watched units are resynced when systemd signals Reloading(false).
    await this.manager('Reload');
  }

  async startUnit(name: string): Promise<void> {
    validateUnitName(name);
    await this.jobs.add(() => this.manager('StartUnit', 'ss', [name, 'replace'], { unit: name }));
  }

  /** Stops a unit; a unit systemd does not know (NoSuchUnit) is already stopped. */
  async stopUnit(name: string): Promise<void> {
    validateUnitName(name);
    try {
      await this.jobs.add(() => this.manager('StopUnit', 'ss', [name, 'replace'], { unit: name }));
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      this.options.log(`stop ${name}: systemd does not know it`);
    }
  }

  /**
   * fleet's unload: stop, DisableUnitFiles(runtime) in one call, ResetFailedUnit
   * (for the units that are failed), remove the file; the caller reloads once afterwards. A unit whose stop
   * failed (other than "no such unit") keeps its file, so a later pass still
   * knows it is ours; the first such error is rethrown at the end.
   */
  async unload(names: readonly string[]): Promise<void> {
    const unique = uniqueValidNames(names);
    if (unique.length === 0) return;
    const stops = await Promise.allSettled(unique.map((name) => this.stopUnit(name)));
    const stopped: string[] = [];
    let firstError: unknown;
    stops.forEach((result, i) => {
      if (result.status === 'fulfilled') stopped.push(unique[i] as string);
      else firstError ??= result.reason;
    });
    if (stopped.length > 0) {
      // Only units with a file here were linked by us; an unknown name would
      // make systemd reject the whole DisableUnitFiles batch.
      const ours = await this.directory.existing(stopped);
      if (ours.length > 0) await this.disable(ours);
      // fleet reset every unit; only failed ones have anything to reset, and
      // one ListUnitsByNames is cheaper than a ResetFailedUnit per unit.
      const failed = [...(await this.listUnits(stopped)).values()].filter((s) => s.activeState === 'failed');
      await Promise.all(failed.map((s) => this.resetFailed(s.name)));
      await this.directory.remove(stopped);
    }
    if (firstError !== undefined) throw firstError;
  }

  async statuses(names: readonly string[]): Promise<Map<string, UnitStatus>> {
    const unique = uniqueValidNames(names);
    if (unique.length === 0) return new Map();
    return this.listUnits(unique);
  }

  /**
   * MainPID of a service (0 when it has none, is not a service or is not
   * loaded): one Properties.Get, only when asked — never periodically.
   */
  async mainPID(name: string): Promise<number> {
    validateUnitName(name);
    try {
      const [value] = await this.invoke({
        destination: SYSTEMD,
        path: unitObjectPath(name),
        interface: PROPERTIES_IFACE,
        member: 'Get',
        signature: 'ss',
        body: [SERVICE_IFACE, 'MainPID'],
        fields: { unit: name },
      });
      const pid =
        typeof value === 'object' && value !== null ? (value as { value: unknown }).value : undefined;
      return typeof pid === 'number' ? pid : Number(pid ?? 0);
    } catch (err) {
      if (err instanceof NotFoundError) return 0;
      if (isFleetError(err) && NO_PROPERTY_ERRORS.has(String(err.fields['dbusError']))) return 0;
      throw err;
    }
  }

  /**
   * Replaces the watched set. Newly watched units are fetched in one batch and
   * reported to the listener (a baseline); after that the listener hears each
   * change of LoadState/ActiveState/SubState, from signals. Connects if needed.
   */
  watch(names: ReadonlySet<string>, listener: StatusListener): void {
    if (this.closed) return;
    const next = new Set<string>();
    for (const name of names) {
      if (isValidUnitName(name)) next.add(name);
      else this.options.log(`watch: ignoring invalid unit name ${JSON.stringify(name)}`);
    }
    for (const name of this.watched) {
      if (!next.has(name)) {
        this.known.delete(name);
        this.knownSeq.delete(name);
        this.dirty.delete(name);
      }
    }
    const added = [...next].filter((name) => !this.watched.has(name));
    this.watched = next;
    this.listener = listener;
    this.markDirty(added);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.listener = undefined;
    this.watched = new Set();
    this.known.clear();
    this.knownSeq.clear();
    this.dirty.clear();
    const bus = this.bus;
    this.bus = undefined;
    bus?.close();
    // A connect in flight sees `closed` and closes its own bus.
    await this.connecting?.catch(() => undefined);
  }

  // --- connection ---

  private ensureBus(): Promise<SystemdBus> {
    if (this.closed) return Promise.reject(new UnavailableError('systemd manager is closed'));
    if (this.bus?.connected) return Promise.resolve(this.bus);
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connect(): Promise<SystemdBus> {
    const address = this.options.busAddress;
    const bus: SystemdBus = await SystemdBus.connect({
      address,
      timeoutMs: this.options.callTimeoutMs,
      onSignal: (signal) => this.onSignal(signal),
      onDisconnect: (error) => this.onDisconnect(bus, error),
      log: this.options.log,
    });
    try {
      for (const rule of MATCH_RULES) {
        this.count('AddMatch');
        await bus.call({
          destination: DBUS,
          path: DBUS_PATH,
          interface: DBUS,
          member: 'AddMatch',
          signature: 's',
          body: [rule],
        });
      }
      // Without Subscribe, systemd emits no unit or job signals to this client.
      this.count('Subscribe');
      await bus.call({
        destination: SYSTEMD,
        path: MANAGER_PATH,
        interface: MANAGER_IFACE,
        member: 'Subscribe',
      });
    } catch (err) {
      bus.close();
      throw err;
    }
    if (this.closed) {
      bus.close();
      throw new UnavailableError('systemd manager is closed');
    }
    this.bus = bus;
    this.options.log(`connected to systemd at ${address}`);
    // Catch up with whatever changed while we were not listening.
    this.markDirty(this.watched);
    return bus;
  }

  private onDisconnect(bus: SystemdBus, error: UnavailableError): void {
    if (this.bus !== bus) return;
    this.bus = undefined;
    this.options.log(`lost systemd D-Bus connection: ${error.message}`);
    try {
      this.options.onDisconnect(error);
    } catch (err) {
      this.options.log(`onDisconnect handler failed: ${errorMessage(err)}`);
    }
  }

  private count(member: string): void {
    this.counts.set(member, (this.counts.get(member) ?? 0) + 1);
  }

  private async invoke(call: BusCall): Promise<unknown[]> {
    return (await this.invokeOrdered(call)).body;
  }

  /** {@link invoke}, with the reply's arrival order (see {@link SystemdBus.callOrdered}). */
  private async invokeOrdered(call: BusCall): Promise<{ body: unknown[]; seq: number }> {
    const bus = await this.ensureBus();
    this.count(call.member);
    return bus.callOrdered(call);
  }

  private manager(
    member: string,
    signature = '',
    body: readonly unknown[] = [],
    fields: Readonly<Record<string, unknown>> = {},
  ): Promise<unknown[]> {
    return this.invoke({
      destination: SYSTEMD,
      path: MANAGER_PATH,
      interface: MANAGER_IFACE,
      member,
      signature,
      body,
      fields,
    });
  }

  // --- unit operations ---

  private async listUnits(names: readonly string[]): Promise<Map<string, UnitStatus>> {
    return (await this.listUnitsOrdered(names)).statuses;
  }

  private async listUnitsOrdered(
    names: readonly string[],
  ): Promise<{ statuses: Map<string, UnitStatus>; seq: number }> {
    const { body, seq } = await this.invokeOrdered({
      destination: SYSTEMD,
      path: MANAGER_PATH,
      interface: MANAGER_IFACE,
      member: 'ListUnitsByNames',
      signature: 'as',
      body: [names],
      fields: unitsField(names),
    });
    const [rows] = body;
    const out = new Map<string, UnitStatus>();
    // One row per requested name, in order; the row's own name is the unit's
    // primary name, which differs for aliases — report under the asked name.
    const list = Array.isArray(rows) ? (rows as unknown[][]) : [];
    names.forEach((name, i) => {
      const row = list[i];
      out.set(name, {
        name,
        loadState: typeof row?.[2] === 'string' ? row[2] : 'not-found',
        activeState: typeof row?.[3] === 'string' ? row[3] : 'inactive',
        subState: typeof row?.[4] === 'string' ? row[4] : 'dead',
      });
    });
    return { statuses: out, seq };
  }

  /** DisableUnitFiles(runtime) for all names at once; names systemd does not know are skipped. */
  private async disable(names: readonly string[]): Promise<void> {
    try {
      await this.manager('DisableUnitFiles', 'asb', [names, true], unitsField(names));
    } catch (err) {
      if (err instanceof UnavailableError) throw err;
      // One unknown name fails the whole call: fall back to one call per name.
      if (names.length === 1) {
        if (err instanceof NotFoundError) return;
        throw err;
      }
      for (const name of names) await this.disable([name]);
    }
  }

  private async resetFailed(name: string): Promise<void> {
    try {
      await this.jobs.add(() => this.manager('ResetFailedUnit', 's', [name], { unit: name }));
    } catch (err) {
      // Not loaded or not failed: nothing to reset.
      if (err instanceof UnavailableError) throw err;
      if (!(err instanceof NotFoundError)) this.options.log(`reset-failed ${name}: ${errorMessage(err)}`);
    }
  }

  // --- signals ---

  private onSignal(signal: BusSignal): void {
    if (signal.interface === PROPERTIES_IFACE && signal.member === 'PropertiesChanged') {
      this.onPropertiesChanged(signal);
      return;
    }
    if (signal.path !== MANAGER_PATH || signal.interface !== MANAGER_IFACE) return;
    switch (signal.member) {
      case 'Reloading':
        // Reloading(true) comes before, (false) after a daemon-reload: load
        // states may have changed for every unit, and no PropertiesChanged says so.
        if (signal.body[0] === false) this.markDirty(this.watched);
        return;
      case 'JobRemoved': {
        // A job that did not finish as "done" may leave a state no property
        // signal carried (e.g. a dependency failed): look once.
        const [, , unit, result] = signal.body;
        if (typeof unit === 'string' && this.watched.has(unit) && result !== 'done') this.markDirty([unit]);
        return;
      }
      default:
        // UnitNew/UnitRemoved only say systemd loaded or garbage-collected a
        // unit object; its state is unchanged. Fetching it would load it
        // again, and its collection would signal again: a loop.
        return;
    }
  }

  private onPropertiesChanged(signal: BusSignal): void {
    const name = unitNameFromPath(signal.path);
    if (name === undefined || !this.watched.has(name)) return;
    const [iface, changed, invalidated] = signal.body;
    if (iface !== UNIT_IFACE || typeof changed !== 'object' || changed === null) return;
    const props = changed as Record<string, unknown>;
    const activeState = variantString(props['ActiveState']);
    const subState = variantString(props['SubState']);
    const loadState = variantString(props['LoadState']) ?? this.known.get(name)?.loadState;
    const invalid = Array.isArray(invalidated) && invalidated.some((p) => STATE_PROPERTIES.has(String(p)));
    if (activeState === undefined || subState === undefined || loadState === undefined || invalid) {
      this.markDirty([name]);
      return;
    }
    this.observe({ name, loadState, activeState, subState }, signal.seq);
  }

  /**
   * Records a unit's status from the message that arrived `seq`-th, and tells
   * the listener if it changed. A status older than the one known (a reply
   * that dbus-next handed over after a newer signal) is dropped.
   */
  private observe(status: UnitStatus, seq: number): void {
    if (seq < (this.knownSeq.get(status.name) ?? 0)) return;
    this.knownSeq.set(status.name, seq);
    const previous = this.known.get(status.name);
    if (previous !== undefined && sameStatus(previous, status)) return;
    this.known.set(status.name, status);
    try {
      this.listener?.(status);
    } catch (err) {
      this.options.log(`status listener failed for ${status.name}: ${errorMessage(err)}`);
    }
  }

  private markDirty(names: Iterable<string>): void {
    if (this.closed) return;
    for (const name of names) this.dirty.add(name);
    if (this.dirty.size > 0) this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushTimer !== undefined || this.flushing || this.closed) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.flush();
    }, this.options.coalesceMs);
  }

  /** Fetches the dirty units' statuses in one ListUnitsByNames per round. Never rejects. */
  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.dirty.size > 0 && !this.closed) {
        // Connecting marks every watched unit dirty: take the snapshot after.
        await this.ensureBus();
        const names = [...this.dirty].filter((name) => this.watched.has(name));
        this.dirty.clear();
        if (names.length === 0) break;
        const { statuses, seq } = await this.listUnitsOrdered(names);
        for (const status of statuses.values()) {
          if (this.watched.has(status.name)) this.observe(status, seq);
        }
      }
    } catch (err) {
      // Not retried here (that would spin while systemd is away): every
      // watched unit is resynced when the next call reconnects.
      this.dirty.clear();
      this.options.log(`cannot refresh unit statuses: ${errorMessage(err)}`);
    } finally {
      this.flushing = false;
      if (this.dirty.size > 0) this.scheduleFlush();
    }
  }
}
