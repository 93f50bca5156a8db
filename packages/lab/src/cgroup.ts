/**
 * The lab's cgroup2 directories: `<root>/fleet-lab/<cluster>/{etcd,<machine>}`.
 * Each machine's directory is the root of its cgroup namespace, so its systemd
 * builds `init.scope`, `system.slice`… there and never in the host's root
 * cgroup. No controller is enabled below `fleet-lab`, so no machine can set
 * limits that affect the host, and the lab may add processes to any of them.
 */
import { access, mkdir, readFile, readdir, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UnavailableError } from '@fleet/core';
import { waitFor } from './proc.js';

/**
 * Where cgroup2 is mounted: /sys/fs/cgroup on a unified host, or
 * /sys/fs/cgroup/unified on a hybrid one (Debian's default without systemd).
 */
export async function findCgroupRoot(): Promise<string> {
  for (const root of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified']) {
    try {
      await access(join(root, 'cgroup.controllers'));
      return root;
    } catch {
      // not cgroup2 here
    }
  }
  throw new UnavailableError(
    'no cgroup2 hierarchy found at /sys/fs/cgroup or /sys/fs/cgroup/unified; fleet-lab needs cgroup2',
  );
}

export async function createCgroup(root: string, rel: string): Promise<string> {
  const dir = join(root, rel);
  // Another cluster's `down` may remove the empty shared top directory meanwhile: retry.
  for (let attempt = 0; ; attempt++) {
    try {
      await mkdir(dir, { recursive: true });
      return dir;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 3) throw err;
    }
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** True while any process is in the cgroup or below it (false when it does not exist). */
export async function isPopulated(root: string, rel: string): Promise<boolean> {
  try {
    const events = await readFile(join(root, rel, 'cgroup.events'), 'utf8');
    return /^populated 1$/m.test(events);
  } catch {
    return false;
  }
}

/** PIDs in the cgroup and every cgroup below it. */
export async function cgroupPids(root: string, rel: string): Promise<number[]> {
  const dir = join(root, rel);
  const pids: number[] = [];
  let procs: string;
  try {
    procs = await readFile(join(dir, 'cgroup.procs'), 'utf8');
  } catch {
    return pids;
  }
  for (const line of procs.split('\n')) if (line !== '') pids.push(Number(line));
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (entry.isDirectory()) pids.push(...(await cgroupPids(root, join(rel, entry.name))));
  }
  return pids;
}

/**
 * SIGKILLs every process in the cgroup subtree (cgroup.kill on Linux ≥ 5.14;
 * otherwise each listed PID, repeated until empty) and waits until it is
 * empty. These are exactly the processes the lab put there and their
 * descendants: nothing is selected by name.
 */
export async function killCgroup(root: string, rel: string, timeoutMs = 10_000): Promise<void> {
  const dir = join(root, rel);
  if (!(await exists(dir))) return;
  const hasKill = await exists(join(dir, 'cgroup.kill'));
  await waitFor(
    async () => {
      if (!(await isPopulated(root, rel))) return true;
      if (hasKill) {
        await writeFile(join(dir, 'cgroup.kill'), '1').catch(() => undefined);
      } else {
        for (const pid of await cgroupPids(root, rel)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // exited meanwhile
          }
        }
      }
      return undefined;
    },
    { timeoutMs, intervalMs: 10, what: `cgroup ${dir} to empty` },
  );
}

/** Removes a cgroup and all cgroups below it, deepest first. Missing is fine. */
export async function removeCgroup(root: string, rel: string): Promise<void> {
  const dir = join(root, rel);
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries) {
    if (entry.isDirectory()) await removeCgroup(root, join(rel, entry.name));
  }
  // The kernel may still be releasing the last exited task for a moment.
  await waitFor(
    async (note) => {
      try {
        await rmdir(dir);
        return true;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return true;
        note(`rmdir: ${code}`);
        return undefined;
      }
    },
    { timeoutMs: 5_000, intervalMs: 10, what: `removal of cgroup ${dir}` },
  );
}

/** Moves a process into a cgroup. */
export async function moveToCgroup(root: string, rel: string, pid: number): Promise<void> {
  await writeFile(join(root, rel, 'cgroup.procs'), String(pid));
}
