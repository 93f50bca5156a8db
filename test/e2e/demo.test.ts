/**
 * `make demo` (scripts/demo.ts) played on a fresh cluster of its own, as CI's
 * proof that the README's main command works: it must exit 0, and what it
 * prints must show the story's outcomes, not only that it ran.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { REPO_ROOT, destroyCluster, listClusters } from '@fleet/lab';
import { uniqueId } from '../support/eventually.js';

const NAME = uniqueId('demo');

/** Runs the demo script as `make demo` does; resolves with its exit code and output. */
function runDemo(): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', 'scripts/demo.ts'], {
      cwd: REPO_ROOT,
      env: { ...process.env, DEMO_NAME: NAME },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}

// A hang must fail the file, not use up CI's time.
describe('make demo', { timeout: 5 * 60_000 }, () => {
  after(async () => {
    if ((await listClusters()).some((c) => c.name === NAME)) await destroyCluster(NAME);
  });

  it('plays the walkthrough on its own cluster and leaves it running for the user', async () => {
    const { code, out, err } = await runDemo();
    assert.equal(code, 0, `demo failed: ${err}\n${out}`);
    assert.equal(err, '');
    // Three machines listed, each with a machine ID and an address.
    const machines = out.split('# 1. The cluster is there')[1]?.split('# 2.')[0] ?? '';
    assert.equal(machines.match(/^[0-9a-f]{8}\.\.\.\t/gm)?.length, 3, machines);
    // hello.service started and reported running somewhere.
    assert.match(out, /Unit hello\.service launched on [0-9a-f]{8}\.\.\.\/\S+/);
    // apache.1-3 on three distinct machines; apache.4 waits and says why.
    const launched = [...out.matchAll(/Unit (apache\.[123]\.service) launched on ([0-9a-f]{8})/g)];
    assert.equal(new Set(launched.map((m) => m[1])).size, 3, out);
    assert.equal(new Set(launched.map((m) => m[2])).size, 3, out);
    assert.match(out, /apache\.4\.service[^\n]*conflict/i);
    // The added machine takes apache.4; the killed machine's hello.service comes back elsewhere.
    assert.match(out, /\$ fleet-lab add /);
    assert.match(out, /hello\.service was running again on another machine \d+\.\d s after m\d died/);
    assert.match(out, new RegExp(`bin/fleet-lab down ${NAME}`));
    // It really left the cluster running.
    assert.ok((await listClusters()).some((c) => c.name === NAME));
  });
});
