/**
 * Helpers for the lab's integration tests: polling with a deadline, talking to
 * a machine's system bus from the host, and snapshots of host state that a
 * lab must never change.
 */
import { readFile, readdir, readlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import dbus from 'dbus-next';

/** A cluster name no other test run uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36).slice(-4)}${Math.random().toString(36).slice(2, 6)}`;
}

/**
 * Polls `check` until it returns a value other than undefined/false, or
 * throws the last failure after the deadline. Never a bare sleep.
 */
export async function eventually<T>(
  check: () => Promise<T | undefined | false>,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      last = undefined;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? `: ${last.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`, { cause: last });
    }
    await sleep(25);
  }
}

/** A system bus connection to one machine, closed by {@link Bus.close}. */
export interface Bus {
  call(
    destination: string,
    path: string,
    iface: string,
    member: string,
    signature?: string,
    body?: unknown[],
  ): Promise<unknown[]>;
  close(): void;
}

/**
 * Connects to a bus address (a machine's `dbusAddress`). The `error` listener
 * matters: without one, a connection failure is an unhandled error.
 */
export function connectBus(address: string): Bus {
  const bus = dbus.sessionBus({ busAddress: address });
  const errors: unknown[] = [];
  bus.on('error', (err) => errors.push(err));
  return {
    async call(destination, path, iface, member, signature, body) {
      if (errors.length > 0) throw new Error(`bus ${address} failed: ${String(errors[0])}`);
      const reply = await bus.call(
        new dbus.Message({
          destination,
          path,
          interface: iface,
          member,
          ...(signature === undefined ? {} : { signature, body: body ?? [] }),
        }),
      );
      return (reply?.body ?? []) as unknown[];
    },
    close() {
      bus.disconnect();
    },
  };
}

/** `org.freedesktop.DBus.Peer.GetMachineId` of systemd (PID 1) on the machine's bus. */
export async function machineIdOverDbus(bus: Bus): Promise<string> {
  const [id] = await bus.call(
    'org.freedesktop.systemd1',
    '/org/freedesktop/systemd1',
    'org.freedesktop.DBus.Peer',
    'GetMachineId',
  );
  return String(id);
}

/** The ActiveState of a loaded unit. */
export async function activeState(bus: Bus, unit: string): Promise<string> {
  const [path] = await bus.call(
    'org.freedesktop.systemd1',
    '/org/freedesktop/systemd1',
    'org.freedesktop.systemd1.Manager',
    'GetUnit',
    's',
    [unit],
  );
  const [variant] = await bus.call(
    'org.freedesktop.systemd1',
    String(path),
    'org.freedesktop.DBus.Properties',
    'Get',
    'ss',
    ['org.freedesktop.systemd1.Unit', 'ActiveState'],
  );
  return String((variant as { value: unknown }).value);
}

/** Host state a lab must leave exactly as it was. */
export interface HostSnapshot {
  readonly machineId: string;
  readonly hostname: string;
  readonly journal: readonly string[];
  /** Child cgroups of the cgroup2 root, minus the lab's own (other runs may use it concurrently). */
  readonly rootCgroups: readonly string[];
}

export const CGROUP2_ROOT = await (async () => {
  for (const root of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified']) {
    if (
      await readFile(`${root}/cgroup.controllers`).then(
        () => true,
        () => false,
      )
    )
      return root;
  }
  throw new Error('no cgroup2');
})();

async function list(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [])).sort();
}

export async function snapshotHost(): Promise<HostSnapshot> {
  const entries = await readdir(CGROUP2_ROOT, { withFileTypes: true });
  return {
    machineId: await readFile('/etc/machine-id', 'utf8'),
    hostname: hostname(),
    journal: await list('/var/log/journal'),
    rootCgroups: entries
      .filter((e) => e.isDirectory() && e.name !== 'fleet-lab')
      .map((e) => e.name)
      .sort(),
  };
}

/** Network namespace identity (`net:[inode]`) of a process, or undefined if it is gone. */
export function netnsOf(pid: number | 'self'): Promise<string | undefined> {
  return readlink(`/proc/${pid}/ns/net`).catch(() => undefined);
}

/** PID namespace identity of a process, or undefined if it is gone. */
export function pidnsOf(pid: number | 'self'): Promise<string | undefined> {
  return readlink(`/proc/${pid}/ns/pid`).catch(() => undefined);
}

/** PIDs of every process on the host. */
export async function allPids(): Promise<number[]> {
  return (await readdir('/proc')).filter((e) => /^[0-9]+$/.test(e)).map(Number);
}

/** Mount points in this process's mount table. */
export async function mountPoints(): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(' ')[4] ?? '');
}
