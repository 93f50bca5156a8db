/**
 * One machine's lifecycle: prepare its state directory, boot it (namespaces,
 * cgroup, network, systemd), run commands inside it, kill it. The isolation
 * itself is done by share/machine-init.sh, run as the machine's PID 1.
 */
import { spawn } from 'node:child_process';
import { access, chmod, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ConflictError, UnavailableError } from '@fleet/core';
import { createCgroup, killCgroup, removeCgroup } from './cgroup.js';
import { machinePaths } from './layout.js';
import { attachMachine } from './network.js';
import {
  type RunResult,
  isAlive,
  processRef,
  isUnreaped,
  run,
  runOk,
  signalProcess,
  spawnDetached,
  tail,
  waitFor,
} from './proc.js';
import { BOOTED_FILE, type SeedEntry } from './seed.js';
import type { MachineRecord, ProcessRef } from './state.js';

/** What booting or entering a machine needs to know about its cluster. */
export interface MachineContext {
  readonly cluster: string;
  readonly shareNet: boolean;
  /** The process holding the hub network namespace (undefined with shared networking). */
  readonly hubPid: number | undefined;
  readonly cgroupRoot: string;
  readonly keepPaths: readonly string[];
  /** The cluster's copy of machine-init.sh. */
  readonly initScript: string;
}

/** The environment commands run with inside a machine, before per-call additions. */
export const MACHINE_EXEC_ENV: Readonly<Record<string, string>> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  LANG: 'C.UTF-8',
};

/** Writes a machine's seed directory (replacing any previous one). */
export async function writeSeed(seedDir: string, entries: readonly SeedEntry[]): Promise<void> {
  await rm(seedDir, { recursive: true, force: true });
  for (const tree of ['run', 'etc', 'var', 'dev']) await mkdir(join(seedDir, tree), { recursive: true });
  const devices: string[] = [];
  for (const entry of entries) {
    const path = join(seedDir, entry.path);
    await mkdir(dirname(path), { recursive: true });
    switch (entry.kind) {
      case 'file':
        await writeFile(path, entry.content, { mode: entry.mode });
        break;
      case 'symlink':
        await symlink(entry.target, path);
        break;
      case 'dir':
        await mkdir(path, { recursive: true });
        await chmod(path, entry.mode); // mkdir's mode is subject to the umask
        break;
      case 'device':
        devices.push(`mknod -m 0666 '${path}' c ${entry.major} ${entry.minor}`);
        break;
    }
  }
  // Node cannot create device nodes; one shell does them all.
  if (devices.length > 0) await runOk('bash', ['--norc', '-e', '-c', devices.join('\n')]);
}

/** Absolute cgroup directory of a machine. */
export function machineCgroupDir(ctx: MachineContext, machine: string): string {
  return join(ctx.cgroupRoot, machinePaths(ctx.cluster, machine).cgroup);
}

async function bootFailure(
  ctx: MachineContext,
  record: MachineRecord,
  what: string,
): Promise<UnavailableError> {
  const log = machinePaths(ctx.cluster, record.name).bootLog;
  const lines = await tail(log, 15);
  return new UnavailableError(
    `machine ${record.name} of cluster ${ctx.cluster} ${what}${lines === '' ? '' : `:\n${lines}`}`,
    { fields: { cluster: ctx.cluster, machine: record.name, log } },
  );
}

export interface BootOptions {
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  /** Called once the machine's processes are known, so they are on record before anything else can fail. */
  readonly onProcesses: () => Promise<void>;
}

/**
 * Boots a prepared machine and resolves once its systemd reports `running`.
 * Sets `record.init`, `record.wrapper` and `record.status`. On failure the
 * machine may be half-started: the caller kills it.
 */
export async function bootMachine(
  ctx: MachineContext,
  record: MachineRecord,
  options: BootOptions,
): Promise<void> {
  const paths = machinePaths(ctx.cluster, record.name);
  // A previous boot's (empty) cgroups go first: the cgroup namespace must start clean.
  await removeCgroup(ctx.cgroupRoot, paths.cgroup);
  const cgroupDir = await createCgroup(ctx.cgroupRoot, paths.cgroup);
  for (const d of ['run', 'dev', 'etc.upper', 'etc.work', 'var.upper', 'var.work']) {
    await mkdir(join(paths.dir, d), { recursive: true });
  }
  const namespaces = ['--pid', '--fork', '--kill-child', '--mount', '--uts', '--ipc', '--cgroup'];
  if (!ctx.shareNet) namespaces.push('--net');
  const child = spawnDetached(
    [
      'unshare',
      ...namespaces,
      '--propagation',
      'private',
      '--mount-proc',
      'bash',
      '--norc',
      ctx.initScript,
      paths.dir,
      ...ctx.keepPaths,
    ],
    { cgroupDir, logFile: paths.bootLog, stdinPipe: true },
  );
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });
  const wrapperPid = child.pid;
  const wrapper = wrapperPid === undefined ? undefined : await processRef(wrapperPid);
  if (wrapper === undefined || wrapperPid === undefined)
    throw await bootFailure(ctx, record, 'did not start');
  record.wrapper = wrapper;

  // unshare forks the machine's PID 1; find it as the wrapper's only child.
  const init = await waitFor<ProcessRef>(
    async () => {
      if (exited) throw await bootFailure(ctx, record, 'exited before it booted');
      const children = await readFile(`/proc/${wrapperPid}/task/${wrapperPid}/children`, 'utf8').catch(
        () => '',
      );
      const pid = Number(children.trim().split(' ')[0]);
      return Number.isInteger(pid) && pid > 0 ? processRef(pid) : undefined;
    },
    { timeoutMs: 5_000, intervalMs: 2, what: `machine ${record.name} to start`, ...signalOf(options) },
  );
  record.init = init;

  record.status = 'booting';
  await options.onProcesses();

  if (!ctx.shareNet) {
    if (ctx.hubPid === undefined) throw new UnavailableError(`the network of cluster ${ctx.cluster} is gone`);
    await attachMachine({
      hubPid: ctx.hubPid,
      hubLink: paths.hubLink,
      machinePid: init.pid,
      address: record.ip,
      partitioned: record.partitioned,
    });
  }
  // The network is ready: let the init script mount and exec systemd.

  child.stdin?.end('go\n');

  // Cheap in-process checks of the marker file; systemd is asked (a few
  // processes per call) only once it exists, or twice a second to catch a
  // boot that fails before reaching the target.
  const marker = `/proc/${init.pid}/root${BOOTED_FILE}`;
  let nextAsk = Date.now() + 500;
  await waitFor(
    async (note) => {
      if (!(await isAlive(init))) throw await bootFailure(ctx, record, 'died while booting');
      const marked = await access(marker).then(
        () => true,
        () => false,
      );
      if (!marked && Date.now() < nextAsk) return undefined;
      nextAsk = Date.now() + 500;
      const r = await execInMachine(ctx, record, ['systemctl', 'is-system-running'], { timeoutMs: 5_000 });
      const state = r.stdout.trim();
      if (state === 'running') return true;
      if (state === 'degraded') {
        const failed = await execInMachine(ctx, record, [
          'systemctl',
          'list-units',
          '--failed',
          '--plain',
          '--no-legend',
        ]);
        const units = failed.stdout
          .split('\n')
          .map((l) => l.trim().split(/\s+/)[0])
          .filter((u) => u !== undefined && u !== '');
        throw new UnavailableError(
          `machine ${record.name} of cluster ${ctx.cluster} booted degraded; failed units: ${units.join(', ')} ` +
            `(see \`fleet-lab exec ${ctx.cluster} ${record.name} -- journalctl -u ${units[0] ?? ''}\`)`,
          { fields: { cluster: ctx.cluster, machine: record.name, failedUnits: units } },
        );
      }
      note(state === '' ? r.stderr.trim() : `system state ${state}`);
      return undefined;
    },
    {
      timeoutMs: options.timeoutMs,
      intervalMs: 10,
      what: `machine ${record.name} to boot`,
      ...signalOf(options),
    },
  );
  record.status = 'running';
}

function signalOf(options: { readonly signal?: AbortSignal }): { signal?: AbortSignal } {
  return options.signal === undefined ? {} : { signal: options.signal };
}

/**
 * Kills a machine: SIGKILL to its PID 1 (the kernel then kills everything in
 * its PID namespace, and its network namespace with its veth goes too), then
 * anything left in its cgroup, then its cgroups, bottom-up.
 */
export async function killMachine(ctx: MachineContext, record: MachineRecord): Promise<void> {
  const paths = machinePaths(ctx.cluster, record.name);
  await stopMachineProcesses(record);
  await killCgroup(ctx.cgroupRoot, paths.cgroup);
  // The cgroup empties when the processes exit; wait until PID 1 is reaped too
  // (by its parent, the unshare process), so its PID is really gone.
  const init = record.init;
  if (init !== undefined) {
    await waitFor(async () => ((await isUnreaped(init)) ? undefined : true), {
      timeoutMs: 5_000,
      intervalMs: 5,
      what: `PID ${init.pid} of machine ${record.name} to be reaped`,
    }).catch(() => undefined);
  }
  await removeCgroup(ctx.cgroupRoot, paths.cgroup);
  delete record.init;
  delete record.wrapper;
  record.status = 'stopped';
}

/**
 * SIGKILLs the machine's PID 1 and lets its parent, the unshare wrapper, reap
 * it and exit by itself (killing both at once would orphan PID 1 to the host's
 * init, leaving a zombie until that init reaps it). A lingering wrapper is
 * killed after a short wait.
 */
export async function stopMachineProcesses(record: MachineRecord): Promise<void> {
  await signalProcess(record.init, 'SIGKILL');
  const wrapper = record.wrapper;
  if (wrapper === undefined) return;
  try {
    await waitFor(async () => ((await isAlive(wrapper)) ? undefined : true), {
      timeoutMs: 3_000,
      intervalMs: 5,
      what: 'the machine wrapper to exit',
    });
  } catch {
    await signalProcess(wrapper, 'SIGKILL');
  }
}

export interface ExecOptions {
  /** Standard input for the command; closed after it. */
  readonly input?: string | Buffer;
  /** Kill the command after this long (an UnavailableError). */
  readonly timeoutMs?: number;
  /** Added to the command's environment (PATH, HOME=/root, LANG=C.UTF-8). */
  readonly env?: Readonly<Record<string, string>>;
}

/** The command that enters a running machine (all its namespaces and its cgroup) and runs argv. */
function enterArgs(ctx: MachineContext, record: MachineRecord, argv: readonly string[]): string[] {
  if (record.init === undefined) {
    throw new ConflictError(`machine ${record.name} of cluster ${ctx.cluster} is not running`, {
      fields: { cluster: ctx.cluster, machine: record.name },
    });
  }
  return [
    '--norc',
    '-c',
    'echo $$ > "$0/cgroup.procs" && exec nsenter -t "$1" -m -u -i -n -p -C -r -w -- "${@:2}"',
    machineCgroupDir(ctx, record.name),
    String(record.init.pid),
    ...argv,
  ];
}

/** Runs argv inside a running machine and collects its exit code and output. */
export async function execInMachine(
  ctx: MachineContext,
  record: MachineRecord,
  argv: readonly string[],
  options: ExecOptions = {},
): Promise<RunResult> {
  const args = enterArgs(ctx, record, argv);
  if (!(await isAlive(record.init))) {
    throw new ConflictError(`machine ${record.name} of cluster ${ctx.cluster} is not running`, {
      fields: { cluster: ctx.cluster, machine: record.name },
    });
  }
  return run('bash', args, { ...options, env: { ...MACHINE_EXEC_ENV, ...options.env } });
}

/** Runs argv inside a running machine with this process's terminal; resolves to its exit code. */
export async function execInteractive(
  ctx: MachineContext,
  record: MachineRecord,
  argv: readonly string[],
): Promise<number> {
  const args = enterArgs(ctx, record, argv);
  if (!(await isAlive(record.init))) {
    throw new ConflictError(`machine ${record.name} of cluster ${ctx.cluster} is not running`);
  }
  const env = { ...MACHINE_EXEC_ENV, TERM: process.env.TERM ?? 'dumb' };
  return new Promise((resolve, reject) => {
    const child = spawn('bash', args, { stdio: 'inherit', env });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(code ?? (signal === null ? 1 : 128)));
  });
}
