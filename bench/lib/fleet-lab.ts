/**
 * A fleet-lab cluster with fleetd under systemd in every machine, as the
 * real-systemd benchmarks use it: our fleetctl in-process against a machine's
 * API socket, and an observer on every machine's systemd that timestamps unit
 * state changes as systemd reports them (D-Bus signals, not polling).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SystemdManager, type UnitStatus } from '@fleet/agent';
import { FleetClient } from '@fleet/client';
import { main as fleetctlMain } from '@fleet/fleetctl';
import { fleetdServiceText, startCluster, type Cluster, type Machine } from '@fleet/lab';
import { EtcdKv, Registry, currentLeader } from '@fleet/registry';
import type { BenchContext } from './report.js';
import { until } from './stats.js';

export const UNIT_TEXT = '[Unit]\nDescription=fleet bench\n\n[Service]\nExecStart=/bin/sleep infinity\n';

/**
 * Extra environment for fleetd in the machines, for experiments:
 * `BENCH_FLEETD_ENV='NODE_OPTIONS=--max-semi-space-size=1;MALLOC_ARENA_MAX=2'`.
 * Recorded in the results; empty normally.
 */
export function fleetdExtraEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of (process.env['BENCH_FLEETD_ENV'] ?? '').split(';')) {
    const eq = item.indexOf('=');
    if (eq > 0) out[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  return out;
}

/** What systemd last reported about a unit on one machine, and when we heard it (performance.now()). */
export interface Seen extends UnitStatus {
  readonly at: number;
}

const RUNNING_STATES = new Set(['active', 'activating', 'deactivating', 'reloading', 'refreshing']);

/**
 * Every machine's systemd, watched for a set of unit names. Each status change
 * is timestamped when its signal arrives; waits are re-checked on every change.
 */
export class UnitTracker {
  private readonly seen = new Map<string, Map<string, Seen>>();
  private readonly observers = new Map<string, SystemdManager>();
  private readonly waiters = new Set<() => void>();
  private watched = new Set<string>();

  /** Starts observing a (running) machine's systemd. */
  async attach(machine: Machine): Promise<void> {
    await this.detach(machine.name);
    const name = machine.name;
    const manager = new SystemdManager({ busAddress: machine.dbusAddress, coalesceMs: 1 });
    await manager.start();
    this.observers.set(name, manager);
    manager.watch(this.watched, (s) => this.update(name, s));
  }

  /** Stops observing a machine and forgets what it reported (a killed machine runs nothing). */
  async detach(machineName: string): Promise<void> {
    const m = this.observers.get(machineName);
    this.observers.delete(machineName);
    for (const perMachine of this.seen.values()) perMachine.delete(machineName);
    await m?.close();
    this.notify();
  }

  private update(machine: string, status: UnitStatus): void {
    let perMachine = this.seen.get(status.name);
    if (!perMachine) this.seen.set(status.name, (perMachine = new Map()));
    perMachine.set(machine, { ...status, at: performance.now() });
    this.notify();
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  watch(names: Iterable<string>): void {
    for (const n of names) this.watched.add(n);
    this.rewatch();
  }

  unwatch(names: Iterable<string>): void {
    for (const n of names) {
      this.watched.delete(n);
      this.seen.delete(n);
    }
    this.rewatch();
  }

  private rewatch(): void {
    for (const [name, m] of this.observers) m.watch(new Set(this.watched), (s) => this.update(name, s));
  }

  /** Machine names on which systemd reports the unit active, with the time it became so. */
  activeOn(unit: string): Map<string, number> {
    const out = new Map<string, number>();
    for (const [machine, s] of this.seen.get(unit) ?? [])
      if (s.activeState === 'active') out.set(machine, s.at);
    return out;
  }

  /** What one machine last reported about the unit. */
  seenOn(unit: string, machine: string): Seen | undefined {
    return this.seen.get(unit)?.get(machine);
  }

  /** Whether no machine reports the unit running (active/activating/deactivating). */
  stoppedEverywhere(unit: string): boolean {
    for (const s of this.seen.get(unit)?.values() ?? []) if (RUNNING_STATES.has(s.activeState)) return false;
    return true;
  }

  /** The latest time any machine reported a change of the unit. */
  lastChange(unit: string): number {
    let at = 0;
    for (const s of this.seen.get(unit)?.values() ?? []) at = Math.max(at, s.at);
    return at;
  }

  /** Once every one of `units` is active somewhere: when the last became so; otherwise undefined. */
  allActiveAt(units: readonly string[]): number | undefined {
    let last = 0;
    for (const u of units) {
      const on = this.activeOn(u);
      if (on.size === 0) return undefined;
      last = Math.max(last, ...on.values());
    }
    return last;
  }

  /** Once none of `units` runs anywhere: when the last of them changed; otherwise undefined. */
  allStoppedAt(units: readonly string[]): number | undefined {
    if (!units.every((u) => this.stoppedEverywhere(u))) return undefined;
    return Math.max(0, ...units.map((u) => this.lastChange(u)));
  }

  /**
   * Resolves with `check`'s value as soon as it returns one (re-checked on every
   * reported change, and every 250 ms). Rejects after `timeoutMs`.
   */
  waitFor<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const done = (fn: () => void): void => {
        this.waiters.delete(test);
        clearTimeout(timer);
        clearInterval(poll);
        fn();
      };
      const test = (): void => {
        let v: T | undefined;
        try {
          v = check();
        } catch (err) {
          done(() => reject(err as Error));
          return;
        }
        if (v !== undefined) done(() => resolve(v as T));
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`timed out after ${timeoutMs} ms: ${what}`))),
        timeoutMs,
      );
      const poll = setInterval(test, 250);
      this.waiters.add(test);
      test();
    });
  }

  async close(): Promise<void> {
    await Promise.all([...this.observers.keys()].map((m) => this.detach(m)));
  }
}

export interface FleetctlRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** A lab cluster with fleetd in every machine. */
export class BenchCluster {
  readonly tracker = new UnitTracker();
  readonly kv: EtcdKv;
  readonly registry: Registry;
  private readonly clients = new Map<string, FleetClient>();

  private constructor(
    private readonly ctx: BenchContext,
    readonly lab: Cluster,
    readonly unitsDir: string,
    readonly agentTtlSeconds: number,
  ) {
    this.kv = new EtcdKv({ endpoints: lab.hostEtcdEndpoints, requestTimeoutMs: 3000 });
    this.registry = new Registry(this.kv);
  }

  /**
   * Boots `machines` machines with this checkout's fleetd (built: `make build`)
   * under systemd, waits until every one is listed, and attaches the observers.
   */
  static async start(
    ctx: BenchContext,
    options: { machines: number; agentTtlSeconds: number; label: string },
  ): Promise<BenchCluster> {
    const dir = join(ctx.tmpDir, `${options.label}-${Date.now().toString(36)}`);
    const unitsDir = join(dir, 'units');
    mkdirSync(unitsDir, { recursive: true });
    const service = join(dir, 'fleetd.service');
    writeFileSync(
      service,
      fleetdServiceText({ agentTtl: `${options.agentTtlSeconds}s`, env: fleetdExtraEnv() }),
    );
    const name = `b${options.label}-${Date.now().toString(36).slice(-5)}${Math.random().toString(36).slice(2, 5)}`;
    const lab = await startCluster({ name, machines: options.machines, serviceFiles: [service] });
    const bc = new BenchCluster(ctx, lab, unitsDir, options.agentTtlSeconds);
    try {
      await bc.waitMachines(options.machines);
      for (const m of lab.machines) await bc.tracker.attach(m);
    } catch (err) {
      await bc.close();
      throw err;
    }
    return bc;
  }

  get metricsUrl(): string {
    return `${this.lab.hostEtcdEndpoints[0] as string}/metrics`;
  }

  get machines(): readonly Machine[] {
    return this.lab.machines;
  }

  running(): Machine[] {
    return this.lab.machines.filter((m) => m.running);
  }

  endpoint(machine: Machine): string {
    return `unix://${machine.rootPath}/run/fleet.sock`;
  }

  /** A keep-alive API client for a machine's fleetd. */
  client(machine: Machine): FleetClient {
    const key = `${machine.name}:${machine.pid}`;
    let c = this.clients.get(key);
    if (!c) this.clients.set(key, (c = new FleetClient({ endpoint: this.endpoint(machine) })));
    return c;
  }

  /** Our fleetctl, in-process, against a machine's fleetd; unit files come from the bench's units directory. */
  async fleetctl(args: readonly string[], machine: Machine = this.firstRunning()): Promise<FleetctlRun> {
    let stdout = '';
    let stderr = '';
    const t0 = performance.now();
    const code = await fleetctlMain([`--endpoint=${this.endpoint(machine)}`, ...args], {
      stdout: { write: (s: string) => void (stdout += s) },
      stderr: { write: (s: string) => void (stderr += s) },
      env: { HOME: this.ctx.tmpDir },
      cwd: this.unitsDir,
    });
    return { code, stdout, stderr, ms: performance.now() - t0 };
  }

  /** Like {@link fleetctl}, throwing unless it exits 0. */
  async ok(args: readonly string[], machine?: Machine): Promise<FleetctlRun> {
    const r = await this.fleetctl(args, machine);
    if (r.code !== 0) {
      throw new Error(`fleetctl ${args.slice(0, 4).join(' ')}… exited ${r.code}: ${r.stderr.slice(0, 500)}`);
    }
    return r;
  }

  firstRunning(): Machine {
    const m = this.running()[0];
    if (!m) throw new Error('no running machine');
    return m;
  }

  writeUnits(names: readonly string[], text = UNIT_TEXT): void {
    for (const n of names) writeFileSync(join(this.unitsDir, n), text);
  }

  async waitMachines(n: number, timeoutMs = 30_000): Promise<void> {
    await until(
      async () => {
        const ms = await this.registry.listMachines();
        return ms.length === n;
      },
      { timeoutMs, intervalMs: 100, what: `${n} machines registered` },
    );
  }

  /** The machine whose engine leads now. */
  async leader(): Promise<Machine | undefined> {
    const rec = await currentLeader(this.kv, this.registry.keys.leader);
    return rec ? this.lab.machines.find((m) => m.machineID === rec.id) : undefined;
  }

  /**
   * Resolves with the time (performance.now()) at which a placement of `unit`
   * (`schedule/<machine>/<unit>`) is first seen by a watch from the host.
   */
  async watchPlacement(unit: string): Promise<{ placed: Promise<number>; close(): Promise<void> }> {
    const rev = (await this.kv.currentRevision()) + 1;
    let resolve: (at: number) => void = () => undefined;
    const placed = new Promise<number>((r) => (resolve = r));
    const watch = this.kv.watchPrefix(this.registry.keys.schedulePrefix, rev, {
      onEvents: (events) => {
        const at = performance.now();
        if (events.some((e) => e.type === 'put' && e.kv.key.endsWith(`/${unit}`))) resolve(at);
      },
      onReset: () => undefined,
    });
    return { placed, close: () => watch.close() };
  }

  machineByID(id: string): Machine | undefined {
    return this.lab.machines.find((m) => m.machineID === id);
  }

  /** fleetd's PID (host namespace), from its cgroup in the machine. */
  fleetdPid(machine: Machine): number {
    const procs = readFileSync(
      join(machine.cgroupPath, 'system.slice', 'fleetd.service', 'cgroup.procs'),
      'utf8',
    )
      .split('\n')
      .filter(Boolean)
      .map(Number);
    if (procs.length === 0) throw new Error(`no fleetd process in ${machine.name}`);
    return procs[0] as number;
  }

  /** SIGKILLs a machine's PID 1 (everything in it dies) after detaching its observer. */
  async kill(machine: Machine): Promise<void> {
    await this.tracker.detach(machine.name);
    await this.lab.kill(machine);
  }

  /** Boots a stopped machine again and waits until every machine is registered. */
  async restart(machine: Machine): Promise<void> {
    await this.lab.restart(machine);
    await this.tracker.attach(machine);
    await this.waitMachines(this.lab.machines.length);
  }

  /**
   * Starts units (`fleetctl start --no-block`) and waits until systemd runs each
   * of them somewhere; `spread` units per machine are not enforced, placement is the engine's.
   */
  async startUnits(names: readonly string[], timeoutMs = 60_000): Promise<void> {
    this.writeUnits(names);
    this.tracker.watch(names);
    await this.ok(['start', '--no-block', ...names]);
    await this.tracker.waitFor(
      () => this.tracker.allActiveAt(names),
      timeoutMs,
      `${names.length} units active`,
    );
  }

  /** Destroys units and waits until systemd runs none of them anywhere. */
  async destroyUnits(names: readonly string[], timeoutMs = 120_000): Promise<void> {
    if (names.length === 0) return;
    await this.ok(['destroy', ...names]);
    await this.tracker.waitFor(
      () => this.tracker.allStoppedAt(names),
      timeoutMs,
      `${names.length} units stopped`,
    );
    this.tracker.unwatch(names);
  }

  async close(): Promise<void> {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
    await this.tracker.close().catch(() => undefined);
    await this.kv.close().catch(() => undefined);
    await this.lab.close();
  }
}
