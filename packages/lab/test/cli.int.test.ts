/**
 * The fleet-lab CLI, each command in its own process (as users run it), and
 * the guarantee that matters most for CI: a run killed in the middle of
 * starting a cluster is cleaned up completely by `fleet-lab down` from
 * another process. Needs root.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { destroyCluster } from '@fleet/lab';
import { cgroupPids } from '../src/cgroup.js';
import { clusterPaths, hostLinkName } from '../src/layout.js';
import { isAlive, run, type RunResult } from '../src/proc.js';
import { type ProcessRef, readClusterState } from '../src/state.js';
import { CGROUP2_ROOT, eventually, uniqueName } from './support.js';

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const NODE_ARGS = ['--conditions=source', '--import', 'tsx', CLI];

function cli(...args: string[]): Promise<RunResult> {
  return run(process.execPath, [...NODE_ARGS, ...args], { env: process.env, timeoutMs: 60_000 });
}

/** One line, no stack trace. */
function assertOneLineError(r: RunResult, pattern: RegExp): void {
  assert.equal(r.code, 1);
  assert.match(r.stderr, pattern);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
}

describe('fleet-lab CLI', () => {
  const names: string[] = [];
  let work: string | undefined;

  after(async () => {
    for (const name of names) await destroyCluster(name).catch(() => undefined);
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('up, partition, status, exec and down, each from its own process', async () => {
    const name = uniqueName('c');
    names.push(name);
    const up = await cli('up', '--name', name, '--machines', '1', '--json');
    assert.equal(up.code, 0, up.stderr);
    const described = JSON.parse(up.stdout) as {
      machines: Array<{ name: string; machineID: string; status: string; dbusAddress: string; pid: number }>;
      etcdEndpoints: string[];
    };
    const [m1] = described.machines;
    assert.ok(m1);
    assert.equal(m1.status, 'running');
    assert.equal(m1.dbusAddress, `unix:path=/proc/${m1.pid}/root/run/dbus/system_bus_socket`);

    assert.equal((await cli('partition', name, 'm1')).code, 0);
    const status = await cli('status', name);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`^m1 +running,partitioned +${m1.machineID} `, 'm'));

    assert.equal((await cli('exec', name, 'm1', '--', 'sh', '-c', 'exit 3')).code, 3);

    assertOneLineError(
      await cli('exec', name, 'm7', '--', 'true'),
      /^fleet-lab: cluster .* has no machine m7/,
    );

    const down = await cli('down', name);
    assert.equal(down.code, 0, down.stderr);
    await assert.rejects(stat(clusterPaths(name).stateDir));
    assertOneLineError(await cli('down', name), /^fleet-lab: no fleet-lab cluster named/);
    assertOneLineError(await cli('up', '--name', 'Not_Valid'), /invalid cluster name/);
  });

  it('cleans up a start that was killed midway, with down from another process', async () => {
    const name = uniqueName('k');
    names.push(name);
    work = await mkdtemp(join(tmpdir(), 'fleet-lab-cli-'));
    // Holds every machine's boot open (is-system-running stays "starting"),
    // so the kill below lands in the middle of `up`.
    const slow = join(work, 'slow-boot.service');
    await writeFile(slow, '[Service]\nType=oneshot\nExecStart=/bin/sleep 300\n');
    const child = spawn(
      process.execPath,
      [...NODE_ARGS, 'up', '--name', name, '--machines', '2', '--service-file', slow],
      {
        stdio: 'ignore',
      },
    );
    const exited = new Promise((resolve) => child.once('exit', resolve));

    const state = await eventually(
      async () => {
        const s = await readClusterState(name).catch(() => undefined);
        return s !== undefined && s.machines.length === 2 && s.machines.every((m) => m.init !== undefined)
          ? s
          : undefined;
      },
      'both machines to be booting',
      30_000,
    );
    assert.ok(
      state.machines.every((m) => m.status === 'booting'),
      'killed before the machines finished booting',
    );
    child.kill('SIGKILL');
    await exited;

    const cgroup = join(CGROUP2_ROOT, clusterPaths(name).cgroup);
    const refs: ProcessRef[] = [
      ...(state.hub === undefined ? [] : [state.hub]),
      ...state.machines.flatMap((m) => [m.init, m.wrapper]).filter((r) => r !== undefined),
    ];
    assert.ok((await cgroupPids(cgroup, '.')).length > 0, 'the orphaned cluster is still running');

    const down = await cli('down', name);
    assert.equal(down.code, 0, down.stderr);
    // Orphaned by the killed CLI, their parent is the host's init: dead, reaped whenever that init reaps.
    for (const ref of refs) assert.equal(await isAlive(ref), false, `process ${ref.pid} is dead`);
    await assert.rejects(stat(cgroup), 'cgroups removed');
    await assert.rejects(stat(clusterPaths(name).stateDir), 'state removed');
    assert.ok(state.octet !== undefined);
    assert.notEqual((await run('ip', ['link', 'show', 'dev', hostLinkName(state.octet)])).code, 0);
  });
});
