/**
 * A cluster's state file (`<state dir>/state.json`): everything `down`,
 * `kill`, `exec`… need, written after every change so another process can
 * attach to or tear down the cluster. Parsing checks every field.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { InternalError, NotFoundError, errorMessage } from '@fleet/core';
import { clusterPaths } from './layout.js';

/** A process the lab started, identified by PID and start time (so a reused PID is never signalled). */
export interface ProcessRef {
  readonly pid: number;
  /** Field 22 of /proc/<pid>/stat: clock ticks after boot. */
  readonly startTime: number;
}

export type MachineStatus = 'booting' | 'running' | 'stopped';

export interface MachineRecord {
  readonly name: string;
  /** 1-based; decides the address. */
  readonly index: number;
  /** Changes only through `restart(m, { newMachineID: true })`. */
  machineID: string;
  readonly ip: string;
  status: MachineStatus;
  /** Its link to the bridge is down (kept across restarts, like an unplugged cable). */
  partitioned: boolean;
  /** PID 1 of the machine (systemd), as seen from the host. */
  init?: ProcessRef;
  /** The `unshare` process outside the machine's PID namespace; it exits with the machine. */
  wrapper?: ProcessRef;
}

export interface EtcdMemberRecord {
  readonly name: string;
  /** Client URL as seen from machines. */
  readonly clientUrl: string;
  /** Client URL as seen from the host. */
  readonly hostClientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly logFile: string;
  process?: ProcessRef;
}

export interface ClusterState {
  readonly version: 1;
  readonly name: string;
  readonly createdAt: string;
  /** Everything in the host network namespace on 127.0.0.1 (no partitions). */
  readonly shareNet: boolean;
  /** Third octet of the cluster's 172.31.x.0/24 (absent with shared networking). */
  readonly octet?: number;
  /** The host end of the link into the hub (absent with shared networking). */
  readonly hostLink?: string;
  /** The process holding the hub network namespace (absent with shared networking). */
  hub?: ProcessRef;
  /** Absolute path of the cgroup2 mount the lab's cgroups live in. */
  readonly cgroupRoot: string;
  /** Host paths kept visible inside machines (bind-mounted over the private mounts). */
  readonly keepPaths: readonly string[];
  /** Unit names of the services every machine runs at boot. */
  readonly services: readonly string[];
  readonly etcd: { readonly members: EtcdMemberRecord[] };
  readonly machines: MachineRecord[];
}

type Json = Record<string, unknown>;

class Reader {
  constructor(private readonly where: string) {}

  fail(path: string, what: string): never {
    throw new InternalError(`${this.where}: ${path} ${what}`, { fields: { path } });
  }

  obj(v: unknown, path: string): Json {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(path, 'is not an object');
    return v as Json;
  }

  str(o: Json, key: string, path: string): string {
    const v = o[key];
    if (typeof v !== 'string') this.fail(`${path}.${key}`, 'is not a string');
    return v;
  }

  int(o: Json, key: string, path: string): number {
    const v = o[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      this.fail(`${path}.${key}`, 'is not a non-negative integer');
    }
    return v;
  }

  bool(o: Json, key: string, path: string): boolean {
    const v = o[key];
    if (typeof v !== 'boolean') this.fail(`${path}.${key}`, 'is not a boolean');
    return v;
  }

  arr(o: Json, key: string, path: string): unknown[] {
    const v = o[key];
    if (!Array.isArray(v)) this.fail(`${path}.${key}`, 'is not an array');
    return v;
  }

  strings(o: Json, key: string, path: string): string[] {
    return this.arr(o, key, path).map((v, i) => {
      if (typeof v !== 'string') this.fail(`${path}.${key}[${i}]`, 'is not a string');
      return v;
    });
  }

  process(o: Json, key: string, path: string): ProcessRef | undefined {
    if (o[key] === undefined) return undefined;
    const p = this.obj(o[key], `${path}.${key}`);
    return {
      pid: this.int(p, 'pid', `${path}.${key}`),
      startTime: this.int(p, 'startTime', `${path}.${key}`),
    };
  }
}

const STATUSES: readonly MachineStatus[] = ['booting', 'running', 'stopped'];

/** Parses and checks a state file's text; `where` names it in errors. */
export function parseClusterState(text: string, where = 'state file'): ClusterState {
  const r = new Reader(where);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InternalError(`${where}: not JSON (${errorMessage(err)})`, { cause: err });
  }
  const o = r.obj(raw, '$');
  if (o.version !== 1) r.fail('$.version', `is ${JSON.stringify(o.version)}, expected 1`);
  const shareNet = r.bool(o, 'shareNet', '$');
  const octet = o.octet === undefined ? undefined : r.int(o, 'octet', '$');
  const hostLink = o.hostLink === undefined ? undefined : r.str(o, 'hostLink', '$');
  if (!shareNet && (octet === undefined || octet > 255 || hostLink === undefined)) {
    r.fail('$.octet', 'and $.hostLink are required without shared networking');
  }
  const hub = r.process(o, 'hub', '$');
  const etcd = r.obj(o.etcd, '$.etcd');
  const members = r.arr(etcd, 'members', '$.etcd').map((v, i): EtcdMemberRecord => {
    const p = `$.etcd.members[${i}]`;
    const m = r.obj(v, p);
    const member: EtcdMemberRecord = {
      name: r.str(m, 'name', p),
      clientUrl: r.str(m, 'clientUrl', p),
      hostClientUrl: r.str(m, 'hostClientUrl', p),
      peerUrl: r.str(m, 'peerUrl', p),
      dataDir: r.str(m, 'dataDir', p),
      logFile: r.str(m, 'logFile', p),
    };
    const proc = r.process(m, 'process', p);
    if (proc !== undefined) member.process = proc;
    return member;
  });
  const machines = r.arr(o, 'machines', '$').map((v, i): MachineRecord => {
    const p = `$.machines[${i}]`;
    const m = r.obj(v, p);
    const status = r.str(m, 'status', p);
    if (!(STATUSES as readonly string[]).includes(status))
      r.fail(`${p}.status`, `is ${JSON.stringify(status)}`);
    const machine: MachineRecord = {
      name: r.str(m, 'name', p),
      index: r.int(m, 'index', p),
      machineID: r.str(m, 'machineID', p),
      ip: r.str(m, 'ip', p),
      status: status as MachineStatus,
      partitioned: r.bool(m, 'partitioned', p),
    };
    const init = r.process(m, 'init', p);
    if (init !== undefined) machine.init = init;
    const wrapper = r.process(m, 'wrapper', p);
    if (wrapper !== undefined) machine.wrapper = wrapper;
    return machine;
  });
  return {
    version: 1,
    name: r.str(o, 'name', '$'),
    createdAt: r.str(o, 'createdAt', '$'),
    shareNet,
    ...(octet === undefined ? {} : { octet }),
    ...(hostLink === undefined ? {} : { hostLink }),
    ...(hub === undefined ? {} : { hub }),
    cgroupRoot: r.str(o, 'cgroupRoot', '$'),
    keepPaths: r.strings(o, 'keepPaths', '$'),
    services: r.strings(o, 'services', '$'),
    etcd: { members },
    machines,
  };
}

/** Reads a cluster's state file; NotFoundError when the cluster does not exist. */
export async function readClusterState(cluster: string): Promise<ClusterState> {
  const file = clusterPaths(cluster).stateFile;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new NotFoundError(`no fleet-lab cluster named ${JSON.stringify(cluster)} (no ${file})`, {
        fields: { cluster },
      });
    }
    throw err;
  }
  return parseClusterState(text, file);
}

/** Writes the state file atomically (write aside, rename), so a reader never sees half of it. */
export async function writeClusterState(state: ClusterState): Promise<void> {
  const file = clusterPaths(state.name).stateFile;
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, file);
}
