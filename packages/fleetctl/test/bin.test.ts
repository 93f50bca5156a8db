import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { HELLO, startCluster, type Cluster } from './harness.js';

const bin = fileURLToPath(new URL('../../../bin/fleetctl', import.meta.url));

/** Runs the real `bin/fleetctl` as a process. */
function spawnFleetctl(args: string[], cwd: string, env: Record<string, string>) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(bin, args, { cwd, env: { PATH: process.env.PATH ?? '', HOME: cwd, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let c: Cluster;
beforeEach(async () => {
  c = await startCluster();
});
afterEach(() => c.close());

describe('bin/fleetctl (spawned)', () => {
  it('submits a file relative to its working directory and lists it', async () => {
    c.write('hello.service', HELLO);
    const env = { FLEETCTL_ENDPOINT: c.endpoint };
    const start = await spawnFleetctl(['start', 'hello.service'], c.dir, env);
    assert.deepEqual(start, {
      code: 0,
      stdout: 'Unit hello.service launched on 960a9f62.../192.168.2.52\n',
      stderr: '',
    });
    const list = await spawnFleetctl(['list-m'], c.dir, env);
    assert.deepEqual(list, {
      code: 0,
      stdout: 'MACHINE\t\tIP\t\tMETADATA\n960a9f62...\t192.168.2.52\t-\ndeb19cd2...\t192.168.2.53\t-\n',
      stderr: '',
    });
  });

  it('exits 2 on an unknown command, with no stack trace', async () => {
    const r = await spawnFleetctl(['frobnicate'], c.dir, {});
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      'unknown subcommand: "frobnicate"\n' +
        'Usage: fleetctl [global options] <command> [command options] [arguments...]\n' +
        "Run 'fleetctl help' for usage.\n",
    );
  });
});
