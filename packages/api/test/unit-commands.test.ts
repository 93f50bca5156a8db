import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { UnavailableError, ValidationError } from '@fleet/core';
import { localUnitCommands } from '@fleet/api';

describe('localUnitCommands: systemctl/journalctl on this machine', () => {
  let dir: string;
  const script = (name: string, body: string): string => {
    const p = join(dir, name);
    writeFileSync(p, `#!/bin/sh\n${body}\n`);
    chmodSync(p, 0o755);
    return p;
  };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fleet-api-cmd-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs systemctl status with a fixed argument list, the name after "--"', async () => {
    const cmds = localUnitCommands({ systemctlPath: '/bin/echo' });
    const out = await cmds.status('web@1.service', 'm1');
    assert.deepEqual(out, { exitCode: 0, output: 'status -l --no-pager -- web@1.service\n' });
  });

  it('runs journalctl with --unit=NAME, -n and an allowed -o', async () => {
    const cmds = localUnitCommands({ journalctlPath: '/bin/echo', user: true });
    assert.equal(
      (await cmds.journal('-dash.service', 'm1', { lines: 5, output: 'short' })).output,
      '--user --unit=-dash.service --no-pager -n 5 -o short\n',
    );
    assert.equal(
      (await cmds.journal('a.service', 'm1', { lines: 10 })).output,
      '--user --unit=a.service --no-pager -n 10\n',
    );
  });

  it('never runs anything for a name that is not a unit name (no injection)', async () => {
    const marker = join(dir, 'pwned');
    const cmds = localUnitCommands({ systemctlPath: '/bin/sh', journalctlPath: '/bin/sh' });
    for (const name of [
      `x.service; touch ${marker}`,
      '$(touch /tmp/x).service',
      'a\nb.service',
      '../x.service',
    ]) {
      await assert.rejects(cmds.status(name, 'm1'), ValidationError);
      await assert.rejects(cmds.journal(name, 'm1', { lines: 1 }), ValidationError);
    }
    assert.equal(existsSync(marker), false);
  });

  it('refuses journal options outside the bounds and the allow-list', async () => {
    const cmds = localUnitCommands({ journalctlPath: '/bin/echo' });
    for (const lines of [0, -1, 10_001, 1.5, NaN]) {
      await assert.rejects(cmds.journal('a.service', 'm1', { lines }), /invalid lines/);
    }
    for (const output of ['--follow', 'short;id', 'json -f']) {
      await assert.rejects(cmds.journal('a.service', 'm1', { lines: 1, output }), /invalid output mode/);
    }
  });

  it('passes a non-zero exit code through as an answer (systemctl status of a stopped unit exits 3)', async () => {
    const cmds = localUnitCommands({
      systemctlPath: script('exit3', 'echo "● a.service - dead"; echo oops >&2; exit 3'),
    });
    assert.deepEqual(await cmds.status('a.service', 'm1'), {
      exitCode: 3,
      output: '● a.service - dead\noops\n',
    });
  });

  it('kills a command that runs too long', async () => {
    const cmds = localUnitCommands({ systemctlPath: script('slow', 'exec sleep 5'), timeoutMs: 200 });
    const started = Date.now();
    await assert.rejects(cmds.status('a.service', 'm1'), (err: unknown) => {
      assert.ok(err instanceof UnavailableError);
      assert.match(err.message, /did not finish within 200 ms/);
      return true;
    });
    assert.ok(Date.now() - started < 3000);
  });

  it('cuts output beyond the cap and says so', async () => {
    const cmds = localUnitCommands({
      systemctlPath: script('chatty', 'i=0; while [ $i -lt 2000 ]; do echo 0123456789; i=$((i+1)); done'),
      maxOutputBytes: 1000,
    });
    const out = await cmds.status('a.service', 'm1');
    assert.ok(out.output.length < 1100);
    assert.match(out.output, /\[output truncated at 1000 bytes\]\n$/);
  });

  it('reports a missing binary as unavailable', async () => {
    const cmds = localUnitCommands({ systemctlPath: join(dir, 'no-such-systemctl') });
    await assert.rejects(
      cmds.status('a.service', 'm1'),
      /no-such-systemctl is not available on this machine/,
    );
  });

  it('refuses commands for another machine when it knows its own ID', async () => {
    const cmds = localUnitCommands({ systemctlPath: '/bin/echo', machineID: 'me' });
    assert.equal((await cmds.status('a.service', 'me')).exitCode, 0);
    await assert.rejects(cmds.status('a.service', 'other'), /cannot run on this machine \(me\)/);
  });
});
