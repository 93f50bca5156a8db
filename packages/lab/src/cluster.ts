/**
 * A lab cluster: etcd plus K machines on one host. `startCluster` creates one,
 * `openCluster` attaches to one from its state directory (another process may
 * have started it), `destroyCluster` removes one by name even when its state
 * is lost or half-written. Every change is written to the state file at once.
 */
import { randomBytes } from 'node:crypto';
import { access, chmod, copyFile, mkdir, readFile, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { basename, delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ConflictError,
  NotFoundError,
  UnavailableError,
  ValidationError,
  errorMessage,
  isFleetError,
} from '@fleet/core';
import { createCgroup, findCgroupRoot, killCgroup, removeCgroup } from './cgroup.js';
import {
  ETCD_BINARY,
  etcdMembers,
  freePorts,
  isServing,
  requireEtcd,
  spawnEtcdMember,
  waitHealthy,
} from './etcd.js';
import {
  CGROUP_TOP,
  MAX_MACHINES,
  STATE_ROOT,
  SUBNET_DIR,
  clusterPaths,
  dbusSocketPath,
  hostLinkName,
  machineAddress,
  machineName,
  machinePaths,
  pathsToKeep,
  subnetAddress,
  subnetCidr,
  validateClusterName,
  HOST_HOST_OCTET,
} from './layout.js';
import {
  type ExecOptions,
  type MachineContext,
  bootMachine,
  execInMachine,
  execInteractive,
  killMachine,
  machineCgroupDir,
  stopMachineProcesses,
  writeSeed,
} from './machine.js';
import { hostOverrides } from './host-config.js';
import {
  createHub,
  deleteHostLink,
  linkExists,
  releaseSubnet,
  reserveSubnet,
  setMachineLink,
  subnetsOf,
} from './network.js';
import { type RunResult, isAlive, signalProcess, waitFor } from './proc.js';
import { type ServiceFile, machineSeed, validateServiceName } from './seed.js';
import {
  type ClusterState,
  type MachineRecord,
  type MachineStatus,
  type ProcessRef,
  readClusterState,
  writeClusterState,
} from './state.js';

/** Which machine an operation is about: its name (`m2`) or its handle. */
export type MachineRef = string | Machine;

/** What per-machine callbacks learn about the machine being created. */
export interface MachineSpec {
  /** 1-based. */
  readonly index: number;
  readonly name: string;
  readonly ip: string;
}

export interface StartClusterOptions {
  /** Unique on this host: names the state directory, network namespace and cgroup. */
  readonly name: string;
  /** Number of machines, booted in parallel. @default 3 */
  readonly machines?: number;
  /** etcd members: 1, or 3 for quorum tests. @default 1 */
  readonly etcdMembers?: 1 | 3;
  /**
   * Put etcd and every machine in the host's network namespace, on 127.0.0.1
   * with free ports. No partitions then. @default false
   */
  readonly shareNet?: boolean;
  /**
   * Unit files started in every machine at boot: copied to the machine's
   * /run/systemd/system and wanted by the lab's boot target. They can read the
   * lab's variables with `EnvironmentFile=/run/fleet-lab/env`. @default []
   */
  readonly serviceFiles?: readonly string[];
  /** Extra variables for a machine's /run/fleet-lab/env (e.g. FLEET_METADATA). */
  readonly machineEnv?: (machine: MachineSpec) => Readonly<Record<string, string>>;
  /** Extra files for a machine: absolute path below /etc or /run → content. */
  readonly machineFiles?: (machine: MachineSpec) => Readonly<Record<string, string>>;
  /**
   * Host paths that must stay visible (read-write) inside machines even when
   * a machine's private mounts cover them, e.g. a checkout under /tmp.
   * @default [the project's checkout]
   */
  readonly keepPaths?: readonly string[];
  /** Deadline for each machine to reach `running`, and for etcd to be healthy. @default 30000 */
  readonly bootTimeoutMs?: number;
  /** Aborting stops the start-up and removes what was created. */
  readonly signal?: AbortSignal;
}

/** Options of {@link Cluster.add}: the same per-machine extras, given directly. */
export interface AddMachineOptions {
  readonly env?: Readonly<Record<string, string>>;
  readonly files?: Readonly<Record<string, string>>;
  /** @default 30000 */
  readonly bootTimeoutMs?: number;
}

export interface StopEtcdOptions {
  /** SIGTERM stops gracefully; SIGKILL simulates a crash. @default 'SIGTERM' */
  readonly signal?: 'SIGTERM' | 'SIGKILL';
}

/** A JSON-ready picture of a cluster (what `fleet-lab up --json` prints). */
export interface ClusterDescription {
  readonly name: string;
  readonly stateDir: string;
  readonly shareNet: boolean;
  /** The machines' subnet (null with shared networking). */
  readonly subnet: string | null;
  /** The host's address on that subnet (null with shared networking). */
  readonly hostAddress: string | null;
  readonly etcdEndpoints: readonly string[];
  readonly hostEtcdEndpoints: readonly string[];
  readonly etcdMembers: readonly {
    readonly name: string;
    readonly clientUrl: string;
    readonly hostClientUrl: string;
    readonly pid: number | null;
  }[];
  readonly machines: readonly {
    readonly name: string;
    readonly machineID: string;
    readonly hostname: string;
    readonly ip: string;
    readonly status: MachineStatus;
    readonly partitioned: boolean;
    readonly pid: number | null;
    readonly dbusAddress: string | null;
    readonly dbusSocketPath: string | null;
    readonly rootPath: string | null;
    readonly cgroupPath: string;
  }[];
}

const DEFAULT_BOOT_TIMEOUT_MS = 30_000;
const INIT_SCRIPT_SOURCE = fileURLToPath(new URL('../share/machine-init.sh', import.meta.url));
/** The project's checkout (packages/lab/{src,dist}/ → three levels up). */
const CHECKOUT = fileURLToPath(new URL('../../..', import.meta.url)).replace(/\/$/, '');

/**
 * A live handle on one machine. Identity fields never change; `pid`,
 * `dbusAddress` and `rootPath` follow restarts and throw a ConflictError while
 * the machine is not running.
 */
export class Machine {
  /** @internal */
  constructor(
    private readonly cluster: Cluster,
    private readonly record: () => MachineRecord,
  ) {}

  get name(): string {
    return this.record().name;
  }
  get index(): number {
    return this.record().index;
  }
  get machineID(): string {
    return this.record().machineID;
  }
  /** Same as the name. */
  get hostname(): string {
    return this.record().name;
  }
  get ip(): string {
    return this.record().ip;
  }
  get status(): MachineStatus {
    return this.record().status;
  }
  get running(): boolean {
    return this.record().status === 'running';
  }
  get partitioned(): boolean {
    return this.record().partitioned;
  }
  /** PID of the machine's systemd (its PID 1) as seen from the host. */
  get pid(): number {
    const r = this.record();
    if (r.init === undefined) {
      throw new ConflictError(`machine ${r.name} of cluster ${this.cluster.name} is not running`, {
        fields: { machine: r.name },
      });
    }
    return r.init.pid;
  }
  /** The machine's root directory seen from the host: `/proc/<pid>/root`. */
  get rootPath(): string {
    return `/proc/${this.pid}/root`;
  }
  /** Path of its system bus socket from the host. */
  get dbusSocketPath(): string {
    return dbusSocketPath(this.pid);
  }
  /** D-Bus address of its system bus from the host: `unix:path=/proc/<pid>/root/run/dbus/system_bus_socket`. */
  get dbusAddress(): string {
    return `unix:path=${this.dbusSocketPath}`;
  }
  /** Its cgroup2 directory on the host (root of its cgroup namespace). */
  get cgroupPath(): string {
    return this.cluster.cgroupPathOf(this.record().name);
  }

  exec(argv: readonly string[], options?: ExecOptions): Promise<RunResult> {
    return this.cluster.exec(this, argv, options);
  }
}

type Lifecycle = 'up' | 'closing' | 'closed';

export class Cluster {
  private lifecycle: Lifecycle = 'up';
  private persisting: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;
  private readonly handles = new Map<string, Machine>();

  /** @internal Use {@link startCluster} or {@link openCluster}. */
  constructor(
    private readonly state: ClusterState,
    private readonly extras: Pick<StartClusterOptions, 'machineEnv' | 'machineFiles'> = {},
  ) {}

  get name(): string {
    return this.state.name;
  }
  get stateDir(): string {
    return clusterPaths(this.state.name).stateDir;
  }
  get shareNet(): boolean {
    return this.state.shareNet;
  }
  /** etcd client URLs as seen from inside machines. */
  get etcdEndpoints(): string[] {
    return this.state.etcd.members.map((m) => m.clientUrl);
  }
  /** etcd client URLs as seen from the host (through the host's link into the hub). */
  get hostEtcdEndpoints(): string[] {
    return this.state.etcd.members.map((m) => m.hostClientUrl);
  }
  /** Every machine, in index order, as live handles. */
  get machines(): Machine[] {
    return this.state.machines.map((r) => this.handle(r.name));
  }

  /** The machine with this name (`m1`) or 1-based index; NotFoundError otherwise. */
  machine(ref: MachineRef | number): Machine {
    if (typeof ref === 'number') {
      const r = this.state.machines.find((m) => m.index === ref);
      if (r === undefined) throw this.noMachine(String(ref));
      return this.handle(r.name);
    }
    return this.handle(this.recordOf(ref).name);
  }

  /** @internal */
  cgroupPathOf(machine: string): string {
    return machineCgroupDir(this.context(), machine);
  }

  /** SIGKILLs the machine's PID 1: every process in it dies at once. Idempotent. */
  async kill(ref: MachineRef): Promise<void> {
    this.assertUp();
    const record = this.recordOf(ref);
    await killMachine(this.context(), record);
    await this.persist();
  }

  /**
   * Boots the machine again with the same identity (machine ID, hostname, IP);
   * kills it first if running. With `newMachineID` it comes back under a new
   * random machine ID, as a reinstalled machine would (hostname and IP stay).
   */
  async restart(
    ref: MachineRef,
    options: { readonly bootTimeoutMs?: number; readonly newMachineID?: boolean } = {},
  ): Promise<void> {
    this.assertUp();
    const record = this.recordOf(ref);
    if (record.status !== 'stopped') await killMachine(this.context(), record);
    if (options.newMachineID === true) {
      const id = randomBytes(16).toString('hex');
      // The boot copies the seed over the machine's /etc, so the seed's copy is the one to change.
      await writeFile(join(machinePaths(this.state.name, record.name).seedDir, 'etc/machine-id'), `${id}\n`);
      record.machineID = id;
    }
    await this.persist();
    await this.boot(record, options.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS);
  }

  /** Cuts the machine off the network (its bridge port goes down); the state survives restarts. */
  async partition(ref: MachineRef): Promise<void> {
    await this.setLink(ref, false);
  }

  /** Reconnects a partitioned machine. */
  async heal(ref: MachineRef): Promise<void> {
    await this.setLink(ref, true);
  }

  /** Runs argv inside the machine (all its namespaces, its cgroup); the exit code is returned, not thrown. */
  async exec(ref: MachineRef, argv: readonly string[], options: ExecOptions = {}): Promise<RunResult> {
    this.assertUp();
    if (argv.length === 0) throw new ValidationError('exec needs a command');
    return execInMachine(this.context(), this.recordOf(ref), argv, options);
  }

  /** Like {@link exec} with this process's terminal attached; resolves to the exit code. */
  async execInteractive(ref: MachineRef, argv: readonly string[]): Promise<number> {
    this.assertUp();
    if (argv.length === 0) throw new ValidationError('exec needs a command');
    return execInteractive(this.context(), this.recordOf(ref), argv);
  }

  /** Boots one more machine (the next index) and returns it. */
  async add(options: AddMachineOptions = {}): Promise<Machine> {
    this.assertUp();
    const index = Math.max(0, ...this.state.machines.map((m) => m.index)) + 1;
    if (index > MAX_MACHINES) throw new ValidationError(`a cluster holds at most ${MAX_MACHINES} machines`);
    const record = newMachineRecord(this.state, index);
    const spec = { index, name: record.name, ip: record.ip };
    const services = await loadServices(this.state);
    await writeSeed(
      machinePaths(this.state.name, record.name).seedDir,
      machineSeed({
        machine: record.name,
        machineID: record.machineID,
        ip: record.ip,
        etcdEndpoints: this.etcdEndpoints,
        services,
        env: { ...this.extras.machineEnv?.(spec), ...options.env },
        files: { ...this.extras.machineFiles?.(spec), ...options.files },
        hostOverrides: await hostOverrides(),
      }),
    );
    this.state.machines.push(record);
    await this.persist();
    try {
      await this.boot(record, options.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS);
    } catch (err) {
      await killMachine(this.context(), record).catch(() => undefined);
      this.state.machines.splice(this.state.machines.indexOf(record), 1);
      await rm(machinePaths(this.state.name, record.name).dir, { recursive: true, force: true });
      await this.persist();
      throw err;
    }
    return this.handle(record.name);
  }

  /** Stops etcd member `index` (0-based); its data is kept for {@link startEtcdMember}. */
  async stopEtcdMember(index: number, options: StopEtcdOptions = {}): Promise<void> {
    this.assertUp();
    const member = this.member(index);
    const ref = member.process;
    if (await signalProcess(ref, options.signal ?? 'SIGTERM')) {
      try {
        await waitFor(async () => ((await isAlive(ref)) ? undefined : true), {
          timeoutMs: 10_000,
          what: `etcd member ${member.name} to stop`,
        });
      } catch {
        await signalProcess(ref, 'SIGKILL');
        await waitFor(async () => ((await isAlive(ref)) ? undefined : true), {
          timeoutMs: 5_000,
          what: `etcd member ${member.name} to die`,
        });
      }
    }
    delete member.process;
    await this.persist();
  }

  /** Starts etcd member `index` again and waits until it serves requests (quorum permitting). */
  async startEtcdMember(index: number): Promise<void> {
    this.assertUp();
    const member = this.member(index);
    if (await isAlive(member.process)) return;
    member.process = await this.spawnEtcd(index);
    await this.persist();
    await waitFor(async () => ((await isServing(member.hostClientUrl)) ? true : undefined), {
      timeoutMs: DEFAULT_BOOT_TIMEOUT_MS,
      intervalMs: 25,
      what: `etcd member ${member.name} to serve`,
    });
  }

  /** Stops every etcd member. */
  async stopEtcd(options: StopEtcdOptions = {}): Promise<void> {
    await Promise.all(this.state.etcd.members.map((_, i) => this.stopEtcdMember(i, options)));
  }

  /** Starts every stopped etcd member and waits until the cluster is healthy. */
  async startEtcd(timeoutMs = DEFAULT_BOOT_TIMEOUT_MS, signal?: AbortSignal): Promise<void> {
    this.assertUp();
    await Promise.all(
      this.state.etcd.members.map(async (member, index) => {
        if (await isAlive(member.process)) return;
        member.process = await this.spawnEtcd(index);
      }),
    );
    await this.persist();
    await waitHealthy(this.hostEtcdEndpoints, timeoutMs, signal);
  }

  /**
   * Checks the recorded processes against the kernel: a machine or etcd member
   * whose process died on its own is marked stopped (and a dead machine's
   * cgroups are removed). Returns this cluster.
   */
  async refresh(): Promise<this> {
    this.assertUp();
    let changed = false;
    for (const record of this.state.machines) {
      if (record.status !== 'stopped' && !(await isAlive(record.init))) {
        await killMachine(this.context(), record);
        changed = true;
      }
    }
    for (const member of this.state.etcd.members) {
      if (member.process !== undefined && !(await isAlive(member.process))) {
        delete member.process;
        changed = true;
      }
    }
    if (changed) await this.persist();
    return this;
  }

  describe(): ClusterDescription {
    const s = this.state;
    return {
      name: s.name,
      stateDir: this.stateDir,
      shareNet: s.shareNet,
      subnet: s.octet === undefined ? null : subnetCidr(s.octet),
      hostAddress: s.octet === undefined ? null : subnetAddress(s.octet, HOST_HOST_OCTET),
      etcdEndpoints: this.etcdEndpoints,
      hostEtcdEndpoints: this.hostEtcdEndpoints,
      etcdMembers: s.etcd.members.map((m) => ({
        name: m.name,
        clientUrl: m.clientUrl,
        hostClientUrl: m.hostClientUrl,
        pid: m.process?.pid ?? null,
      })),
      machines: s.machines.map((m) => {
        const pid = m.init?.pid;
        return {
          name: m.name,
          machineID: m.machineID,
          hostname: m.name,
          ip: m.ip,
          status: m.status,
          partitioned: m.partitioned,
          pid: pid ?? null,
          dbusAddress: pid === undefined ? null : `unix:path=${dbusSocketPath(pid)}`,
          dbusSocketPath: pid === undefined ? null : dbusSocketPath(pid),
          rootPath: pid === undefined ? null : `/proc/${pid}/root`,
          cgroupPath: this.cgroupPathOf(m.name),
        };
      }),
    };
  }

  /**
   * Removes the cluster and everything it created (= `fleet-lab down`). Safe
   * to call more than once and concurrently; later calls wait for the first.
   */
  close(): Promise<void> {
    if (this.closing === undefined) {
      this.lifecycle = 'closing';
      this.closing = (async () => {
        await this.persisting.catch(() => undefined);
        try {
          await removeCluster(this.state.name, this.state);
        } catch (err) {
          // Already removed (e.g. by `fleet-lab down` from another process) is what we want.
          if (!(err instanceof NotFoundError)) {
            this.closing = undefined;
            throw err;
          }
        }
        this.lifecycle = 'closed';
      })();
    }
    return this.closing;
  }

  /** @internal Boots a prepared machine record and records the outcome. */
  async boot(record: MachineRecord, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const ctx = { ...this.context(), hubPid: this.state.shareNet ? undefined : await this.hubPid() };
    record.status = 'booting';
    await bootMachine(ctx, record, {
      timeoutMs,
      ...(signal === undefined ? {} : { signal }),
      onProcesses: () => this.persist(),
    });
    await this.persist();
  }

  private async spawnEtcd(index: number): Promise<ProcessRef> {
    return spawnEtcdMember({
      members: this.state.etcd.members,
      index,
      clusterToken: etcdToken(this.state.name),
      netnsPid: this.state.shareNet ? undefined : await this.hubPid(),
      cgroupDir: join(this.state.cgroupRoot, clusterPaths(this.state.name).etcdCgroup),
    });
  }

  /** PID of the live hub holder; UnavailableError when the hub is gone. */
  private async hubPid(): Promise<number> {
    const hub = this.state.hub;
    if (hub === undefined || !(await isAlive(hub))) {
      throw new UnavailableError(
        `the network of cluster ${this.state.name} is gone (its hub process died); run \`fleet-lab down ${this.state.name}\``,
        { fields: { cluster: this.state.name } },
      );
    }
    return hub.pid;
  }

  private async setLink(ref: MachineRef, up: boolean): Promise<void> {
    this.assertUp();
    if (this.state.shareNet) {
      throw new ValidationError(
        `cluster ${this.state.name} shares the host network (--share-net): it cannot ${up ? 'heal' : 'partition'} machines`,
        { fields: { cluster: this.state.name } },
      );
    }
    const record = this.recordOf(ref);
    if (record.status !== 'stopped') {
      await setMachineLink(await this.hubPid(), machinePaths(this.state.name, record.name).hubLink, up);
    }
    record.partitioned = !up;
    await this.persist();
  }

  private member(index: number): ClusterState['etcd']['members'][number] {
    const member = this.state.etcd.members[index];
    if (member === undefined) {
      throw new NotFoundError(
        `cluster ${this.state.name} has no etcd member ${index} (members are 0-based)`,
        {
          fields: { index },
        },
      );
    }
    return member;
  }

  private handle(name: string): Machine {
    let h = this.handles.get(name);
    if (h === undefined) {
      h = new Machine(this, () => this.recordOf(name));
      this.handles.set(name, h);
    }
    return h;
  }

  private recordOf(ref: MachineRef): MachineRecord {
    const name = typeof ref === 'string' ? ref : ref.name;
    const r = this.state.machines.find((m) => m.name === name);
    if (r === undefined) throw this.noMachine(name);
    return r;
  }

  private noMachine(name: string): NotFoundError {
    const names = this.state.machines.map((m) => m.name).join(', ');
    return new NotFoundError(`cluster ${this.state.name} has no machine ${name} (machines: ${names})`, {
      fields: { cluster: this.state.name, machine: name },
    });
  }

  private context(): MachineContext {
    const paths = clusterPaths(this.state.name);
    return {
      cluster: this.state.name,
      shareNet: this.state.shareNet,
      hubPid: this.state.hub?.pid,
      cgroupRoot: this.state.cgroupRoot,
      keepPaths: this.state.keepPaths,
      initScript: paths.initScript,
    };
  }

  private assertUp(): void {
    if (this.lifecycle !== 'up') {
      throw new ConflictError(`cluster ${this.state.name} is ${this.lifecycle}`, {
        fields: { cluster: this.state.name },
      });
    }
  }

  /** Writes the state file; writes are serialized and each writes the latest state. */
  private persist(): Promise<void> {
    const next = this.persisting.catch(() => undefined).then(() => writeClusterState(this.state));
    this.persisting = next;
    return next;
  }
}

function etcdToken(cluster: string): string {
  return `fleet-lab-${cluster}`;
}

function newMachineRecord(state: ClusterState, index: number): MachineRecord {
  return {
    name: machineName(index),
    index,
    machineID: randomBytes(16).toString('hex'),
    ip: state.octet === undefined ? '127.0.0.1' : machineAddress(state.octet, index),
    status: 'stopped',
    partitioned: false,
  };
}

async function loadServices(state: ClusterState): Promise<ServiceFile[]> {
  const dir = clusterPaths(state.name).servicesDir;
  return Promise.all(
    state.services.map(async (name) => ({ name, content: await readFile(join(dir, name), 'utf8') })),
  );
}

function findInPath(command: string): Promise<boolean> {
  const dirs = (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter);
  return Promise.any(dirs.map((d) => access(join(d, command)))).then(
    () => true,
    () => false,
  );
}

/** Everything start-up needs from the host, checked before anything is created. */
async function preflight(): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new ValidationError('fleet-lab needs root (namespaces, cgroups, mounts); run it as root');
  }
  await requireEtcd(ETCD_BINARY);
  const missing: string[] = [];
  for (const command of ['ip', 'unshare', 'nsenter', 'bash']) {
    if (!(await findInPath(command))) missing.push(command);
  }
  if (missing.length > 0) {
    throw new ValidationError(
      `missing commands: ${missing.join(', ')} (Debian packages iproute2, util-linux)`,
    );
  }
  try {
    await access('/usr/lib/systemd/systemd');
  } catch {
    throw new ValidationError(
      '/usr/lib/systemd/systemd not found: machines need systemd installed (Debian: systemd)',
    );
  }
}

function checkOptions(options: StartClusterOptions): { machines: number; etcdMembers: 1 | 3 } {
  validateClusterName(options.name);
  const machines = options.machines ?? 3;
  if (!Number.isInteger(machines) || machines < 1 || machines > MAX_MACHINES) {
    throw new ValidationError(`machines must be an integer from 1 to ${MAX_MACHINES}, not ${machines}`, {
      fields: { machines },
    });
  }
  const members = options.etcdMembers ?? 1;
  if (members !== 1 && members !== 3) {
    throw new ValidationError(`etcd members must be 1 or 3, not ${String(members)}`, {
      fields: { etcdMembers: members },
    });
  }
  return { machines, etcdMembers: members };
}

async function readServiceFiles(paths: readonly string[]): Promise<ServiceFile[]> {
  return Promise.all(
    paths.map(async (path) => {
      const name = basename(path);
      validateServiceName(name);
      try {
        return { name, content: await readFile(path, 'utf8') };
      } catch (err) {
        throw new ValidationError(`cannot read service file ${path}: ${errorMessage(err)}`, {
          fields: { path },
        });
      }
    }),
  );
}

/**
 * Creates a cluster: etcd (healthy) and `machines` machines booted in
 * parallel, each with systemd `running`. On any failure everything created so
 * far is removed before the error is thrown.
 */
export async function startCluster(options: StartClusterOptions): Promise<Cluster> {
  const { machines, etcdMembers: memberCount } = checkOptions(options);
  const services = await readServiceFiles(options.serviceFiles ?? []);
  const keepPaths = pathsToKeep(options.keepPaths ?? [CHECKOUT]);
  const timeoutMs = options.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS;
  const signal = options.signal;
  // Bad extras (an env name, a file path) fail here, before anything exists.
  for (let index = 1; index <= machines; index++) {
    const spec = { index, name: machineName(index), ip: '127.0.0.1' };
    machineSeed({
      machine: spec.name,
      machineID: 'f'.repeat(32),
      ip: spec.ip,
      etcdEndpoints: [],
      services,
      env: options.machineEnv?.(spec) ?? {},
      files: options.machineFiles?.(spec) ?? {},
    });
  }
  await preflight();

  const name = options.name;
  const paths = clusterPaths(name);
  try {
    // The state root may vanish between the two calls (`down` of the last other cluster removes it).
    await mkdir(STATE_ROOT, { recursive: true, mode: 0o755 });
    await mkdir(paths.stateDir, { mode: 0o700 }).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
      await mkdir(STATE_ROOT, { recursive: true, mode: 0o755 });
      await mkdir(paths.stateDir, { mode: 0o700 });
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new ConflictError(
        `cluster ${name} already exists (${paths.stateDir}); run \`fleet-lab down ${name}\` first`,
        { fields: { cluster: name } },
      );
    }
    throw err;
  }

  let state: ClusterState | undefined;
  try {
    const cgroupRoot = await findCgroupRoot();
    const shareNet = options.shareNet ?? false;
    const octet = shareNet ? undefined : await reserveSubnet(name);
    await copyFile(INIT_SCRIPT_SOURCE, paths.initScript);
    await chmod(paths.initScript, 0o755);
    await mkdir(paths.servicesDir);
    for (const s of services) await writeFile(join(paths.servicesDir, s.name), s.content);
    await mkdir(join(paths.stateDir, 'etcd'), { mode: 0o700 });
    const members = etcdMembers(
      memberCount,
      octet === undefined
        ? { kind: 'host', ports: await freePorts(2 * memberCount) }
        : { kind: 'hub', octet },
      paths.stateDir,
    );
    state = {
      version: 1,
      name,
      createdAt: new Date().toISOString(),
      shareNet,
      ...(octet === undefined ? {} : { octet, hostLink: hostLinkName(octet) }),
      cgroupRoot,
      keepPaths,
      services: services.map((s) => s.name),
      etcd: { members },
      machines: [],
    };
    await writeClusterState(state);
    await createCgroup(cgroupRoot, paths.etcdCgroup);
    if (octet !== undefined) {
      const hubCgroup = await createCgroup(cgroupRoot, paths.hubCgroup);
      state.hub = await createHub({ octet, cgroupDir: hubCgroup, logFile: paths.hubLog });
      await writeClusterState(state);
    }
    signal?.throwIfAborted();

    const extras: Pick<StartClusterOptions, 'machineEnv' | 'machineFiles'> = {
      ...(options.machineEnv === undefined ? {} : { machineEnv: options.machineEnv }),
      ...(options.machineFiles === undefined ? {} : { machineFiles: options.machineFiles }),
    };
    const cluster = new Cluster(state, extras);
    // etcd is spawned first; the machines boot while it elects a leader (their
    // services start well after it is healthy, and must tolerate a slow etcd
    // anyway). The first failure aborts the rest, and everything settles
    // before the clean-up below runs.
    const inner = new AbortController();
    const onAbort = (): void => inner.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const failFast = <T>(p: Promise<T>): Promise<T> =>
      p.catch((err: unknown) => {
        inner.abort(err);
        throw err;
      });
    const overrides = await hostOverrides();
    for (let index = 1; index <= machines; index++) state.machines.push(newMachineRecord(state, index));
    const etcdEndpoints = cluster.etcdEndpoints;
    const results = await Promise.allSettled([
      failFast(cluster.startEtcd(timeoutMs, inner.signal)),
      ...state.machines.map((record) =>
        failFast(
          (async () => {
            const spec = { index: record.index, name: record.name, ip: record.ip };
            await writeSeed(
              machinePaths(name, record.name).seedDir,
              machineSeed({
                machine: record.name,
                machineID: record.machineID,
                ip: record.ip,
                etcdEndpoints,
                services,
                env: options.machineEnv?.(spec) ?? {},
                files: options.machineFiles?.(spec) ?? {},
                hostOverrides: overrides,
              }),
            );
            await cluster.boot(record, timeoutMs, inner.signal);
          })(),
        ),
      ),
    ]);
    signal?.removeEventListener('abort', onAbort);
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure !== undefined) throw inner.signal.reason ?? failure.reason;
    return cluster;
  } catch (err) {
    try {
      await removeCluster(name, state);
    } catch (cleanupErr) {
      if (!(isFleetError(cleanupErr) && cleanupErr.kind === 'not-found')) {
        throw new ConflictError(
          `${errorMessage(err)}; clean-up failed too (${errorMessage(cleanupErr)}): run \`fleet-lab down ${name}\``,
          { cause: err },
        );
      }
    }
    throw err;
  }
}

/** Attaches to a running cluster by name (from its state file). */
export async function openCluster(name: string): Promise<Cluster> {
  validateClusterName(name);
  return new Cluster(await readClusterState(name));
}

/** One cluster found in the lab's state root. */
export interface ClusterListing {
  readonly name: string;
  /** As {@link Cluster.describe} gives it (recorded state), or undefined when unreadable. */
  readonly description: ClusterDescription | undefined;
  /** Why the state could not be read. */
  readonly problem: string | undefined;
}

/** Every cluster with a state directory on this host. */
export async function listClusters(): Promise<ClusterListing[]> {
  let entries;
  try {
    entries = await readdir(STATE_ROOT, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: ClusterListing[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
    try {
      const description = new Cluster(await readClusterState(entry.name)).describe();
      out.push({ name: entry.name, description, problem: undefined });
    } catch (err) {
      out.push({ name: entry.name, description: undefined, problem: errorMessage(err) });
    }
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** Mount points at or below `dir` in this process's mount namespace. */
async function mountsBelow(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)))
    .map((p) => p.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

/**
 * Removes everything a cluster created (= `fleet-lab down NAME`), from
 * another process too: see {@link removeCluster}. NotFoundError when there
 * was nothing to remove.
 */
export function destroyCluster(name: string): Promise<void> {
  return removeCluster(name, undefined);
}

/**
 * Removes everything a cluster created: its
 * processes (the recorded ones, then whatever is left in its cgroup), its
 * network namespace and host link, its cgroups (bottom-up), its state
 * directory and subnet reservation. Works from the state file when there is
 * one, and from the names derived from `name` when there is not, so a crashed
 * run can always be cleaned. NotFoundError when there was nothing at all.
 */
async function removeCluster(name: string, known: ClusterState | undefined): Promise<void> {
  validateClusterName(name);
  const paths = clusterPaths(name);
  let state = known;
  if (state === undefined) {
    try {
      state = await readClusterState(name);
    } catch {
      state = undefined; // missing or unreadable: clean up by derived names
    }
  }
  let found = state !== undefined;
  const cgroupRoot = state?.cgroupRoot ?? (await findCgroupRoot());

  // 1. Processes: the recorded ones (by PID and start time), then anything left in the cluster's cgroup.
  await Promise.all((state?.machines ?? []).map((m) => stopMachineProcesses(m)));
  for (const e of state?.etcd.members ?? []) await signalProcess(e.process, 'SIGKILL');
  await signalProcess(state?.hub, 'SIGKILL');
  await killCgroup(cgroupRoot, paths.cgroup);

  // 2. Network: the hub namespace (with its bridge and veths) died with its last
  // process; the host's link into it may survive it, so delete that.
  const octets = new Set(await subnetsOf(name));
  if (state?.octet !== undefined) octets.add(state.octet);
  for (const octet of octets) {
    found = true;
    const link = hostLinkName(octet);
    if (await linkExists(link)) await deleteHostLink(link);
  }

  // 3. cgroups, deepest first; the shared top directory too once no cluster uses it.
  try {
    await access(join(cgroupRoot, paths.cgroup));
    found = true;
  } catch {
    // none
  }
  await removeCgroup(cgroupRoot, paths.cgroup);
  await rmdir(join(cgroupRoot, CGROUP_TOP)).catch(() => undefined);

  // 4. State. Machine mounts live in the machines' own mount namespaces and are
  // gone with them; refuse to delete through a mount that somehow is visible here.
  const mounts = await mountsBelow(paths.stateDir);
  if (mounts.length > 0) {
    throw new ConflictError(
      `refusing to remove ${paths.stateDir}: mounts below it (${mounts.join(', ')}); unmount them and retry`,
      { fields: { mounts } },
    );
  }
  try {
    await access(paths.stateDir);
    found = true;
  } catch {
    // none
  }
  await rm(paths.stateDir, { recursive: true, force: true });
  for (const octet of octets) {
    const owner = await readFile(join(SUBNET_DIR, String(octet)), 'utf8').catch(() => '');
    if (owner.trim() === name) await releaseSubnet(octet);
  }
  await rmdir(SUBNET_DIR).catch(() => undefined);
  await rmdir(STATE_ROOT).catch(() => undefined);
  if (!found)
    throw new NotFoundError(`no fleet-lab cluster named ${name} on this host`, { fields: { cluster: name } });
}
