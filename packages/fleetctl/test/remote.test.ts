import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import {
  newJournalLines,
  outputLines,
  pollDelays,
  shellQuote,
  splitHostPort,
  sshArgs,
  type SshSettings,
} from '@fleet/fleetctl';
import { HELLO, MACHINE_A, MACHINE_B, startCluster, writeFakeSsh, type Cluster } from './harness.js';

const settings: SshSettings = {
  binary: 'ssh',
  username: 'core',
  port: 22,
  strictHostKeyChecking: true,
  knownHostsFile: '/home/u/.fleetctl/known_hosts',
  timeoutSec: 10,
  tunnel: '',
  forwardAgent: false,
};

describe('ssh argument vectors', () => {
  it('map fleet flags to ssh options, with -- before the host', () => {
    assert.deepEqual(sshArgs(settings, '10.0.0.2', 'uptime'), [
      '-o',
      'ConnectTimeout=10',
      '-l',
      'core',
      '-o',
      'StrictHostKeyChecking=ask',
      '-o',
      'UserKnownHostsFile=/home/u/.fleetctl/known_hosts',
      '-p',
      '22',
      '--',
      '10.0.0.2',
      'uptime',
    ]);
  });
  it('turn off host key checking, forward the agent, go through the tunnel', () => {
    const args = sshArgs(
      {
        ...settings,
        strictHostKeyChecking: false,
        forwardAgent: true,
        port: 2222,
        timeoutSec: 0.5,
        tunnel: 'bastion:2200',
      },
      '10.0.0.2',
    );
    assert.deepEqual(args, [
      '-o',
      'ConnectTimeout=1',
      '-l',
      'core',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-p',
      '2222',
      '-A',
      '-o',
      'ProxyCommand=ssh -o ConnectTimeout=1 -l core -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -p 2200 -W %h:%p -- bastion',
      '--',
      '10.0.0.2',
    ]);
  });
  it('quote words for a remote shell', () => {
    assert.equal(shellQuote('hello.service'), 'hello.service');
    assert.equal(shellQuote('a\\x20b.service'), "'a\\x20b.service'");
    assert.equal(shellQuote("it's"), "'it'\\''s'");
    assert.deepEqual(splitHostPort('bastion', 22), { host: 'bastion', port: 22 });
    assert.deepEqual(splitHostPort('[::1]:2200', 22), { host: '::1', port: 2200 });
  });
});

describe('poll delays', () => {
  it('start at a tenth of the interval and double up to it', () => {
    const d = pollDelays(250);
    assert.deepEqual(
      Array.from({ length: 7 }, () => d.next().value),
      [25, 50, 100, 200, 250, 250, 250],
    );
  });
});

describe('journal --follow line diffing', () => {
  it('prints only lines that were not in the previous window', () => {
    assert.deepEqual(newJournalLines(['a', 'b', 'c'], ['b', 'c', 'd', 'e']), ['d', 'e']);
    assert.deepEqual(newJournalLines(['a', 'b'], ['a', 'b', 'c']), ['c']);
    assert.deepEqual(newJournalLines(['a', 'b'], ['a', 'b']), []);
    assert.deepEqual(newJournalLines([], ['x']), ['x']);
    // More new lines than the window holds: everything is new.
    assert.deepEqual(newJournalLines(['a', 'b'], ['x', 'y']), ['x', 'y']);
    assert.deepEqual(outputLines('a\nb\n'), ['a', 'b']);
    assert.deepEqual(outputLines(''), []);
  });
});

let c: Cluster;
beforeEach(async () => {
  c = await startCluster();
  c.write('hello.service', HELLO);
});
afterEach(() => c.close());

describe('status and journal through fleetd', () => {
  it('status prints systemctl output and exits with its status', async () => {
    await c.run(['start', 'hello.service']);
    c.fake.unitCommand = (unit, command) => ({
      exitCode: 3,
      output: `● ${unit.name} - ${command}\n   Active: failed`,
    });
    const r = await c.run(['status', 'hello.service']);
    assert.deepEqual(r, { code: 3, stdout: '● hello.service - status\n   Active: failed\n', stderr: '' });
    assert.equal(c.fake.requestsTo('GET', '/fleet/v1/x-unit-commands/').length, 1);
  });

  it('status of several units separates them with an empty line', async () => {
    c.write('b.service', '[Service]\nExecStart=/bin/true\n');
    await c.run(['start', 'hello.service', 'b.service']);
    c.fake.unitCommand = (unit) => ({ exitCode: 0, output: `${unit.name}\n` });
    const r = await c.run(['status', 'hello.service', 'b']);
    assert.deepEqual(r, { code: 0, stdout: 'hello.service\n\nb.service\n', stderr: '' });
  });

  it('refuses units that are not on a machine, and global units', async () => {
    await c.run(['submit', 'hello.service']);
    c.write('mon.service', '[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\n');
    await c.run(['start', 'mon.service']);
    const cases: Array<[string[], string]> = [
      [['status', 'hello.service'], 'Unit hello.service does not appear to be loaded.\n'],
      [['journal', 'hello.service'], 'Unit hello.service does not appear to be running.\n'],
      [['status', 'mon.service'], 'Unable to determine status of global unit mon.service.\n'],
      [['journal', 'mon.service'], 'Unable to retrieve journal of global unit mon.service.\n'],
      [['status', 'ghost.service'], 'Unit ghost.service does not exist.\n'],
    ];
    for (const [args, stderr] of cases) assert.deepEqual(await c.run(args), { code: 1, stdout: '', stderr });
  });

  it('journal asks for -n lines and the output mode', async () => {
    await c.run(['start', 'hello.service']);
    c.fake.unitCommand = (_unit, command, query) => ({
      exitCode: 0,
      output: `${command} lines=${query.get('lines')} output=${query.get('output')}\n`,
    });
    assert.equal((await c.run(['journal', 'hello'])).stdout, 'journal lines=10 output=short\n');
    assert.equal(
      (await c.run(['journal', '-l', '3', '--output=cat', 'hello'])).stdout,
      'journal lines=3 output=cat\n',
    );
  });

  it('journal -f prints the last lines, then new lines each poll, until interrupted', async () => {
    await c.run(['start', 'hello.service']);
    const log: string[] = ['l1', 'l2', 'l3'];
    c.fake.unitCommand = (_unit, _command, query) => ({
      exitCode: 0,
      output: `${log.slice(-Number(query.get('lines'))).join('\n')}\n`,
    });
    const stop = new AbortController();
    const run = c.run(['journal', '-f', '--lines=2', 'hello'], { signal: stop.signal });
    await new Promise((r) => setTimeout(r, 60));
    log.push('l4', 'l5');
    await new Promise((r) => setTimeout(r, 120));
    log.push('l6');
    await new Promise((r) => setTimeout(r, 120));
    stop.abort();
    const r = await run;
    assert.deepEqual(r, { code: 0, stdout: 'l2\nl3\nl4\nl5\nl6\n', stderr: '' });
  });
});

describe('over ssh', () => {
  it('status --ssh-port runs systemctl on the unit machine through ssh', async () => {
    await c.run(['start', 'hello.service']);
    const ssh = writeFakeSsh(c.dir);
    const r = await c.run(
      ['--strict-host-key-checking=false', 'status', '--ssh-port', '2222', 'hello.service'],
      {
        env: { FLEETCTL_SSH_BINARY: ssh, FAKE_SSH_EXIT: '3' },
      },
    );
    assert.equal(r.code, 3);
    const argv = JSON.parse(r.stdout) as string[];
    assert.deepEqual(argv.slice(-5), [
      '-p',
      '2222',
      '--',
      '192.168.2.52',
      'systemctl status -l hello.service',
    ]);
    assert.ok(argv.includes('StrictHostKeyChecking=no'));
  });

  it('journal --sudo -f runs journalctl -f with sudo', async () => {
    await c.run(['start', 'hello.service']);
    const ssh = writeFakeSsh(c.dir);
    const r = await c.run(['journal', '--sudo', '-f', '-l', '5', 'hello.service'], {
      env: { FLEETCTL_SSH_BINARY: ssh },
    });
    assert.equal(r.code, 0, r.stderr);
    const argv = JSON.parse(r.stdout) as string[];
    assert.equal(argv.at(-1), 'sudo journalctl --unit hello.service --no-pager -n 5 --output short -f');
    assert.ok(argv.includes(`UserKnownHostsFile=${c.dir}/.fleetctl/known_hosts`));
  });

  it('ssh finds a machine by ID prefix or by unit, and passes the command through', async () => {
    const ssh = writeFakeSsh(c.dir);
    const env = { FLEETCTL_SSH_BINARY: ssh };
    const byMachine = await c.run(['ssh', '-A', 'deb19', 'ls', '-la', '/tmp'], { env });
    assert.equal(byMachine.code, 0, byMachine.stderr);
    assert.deepEqual((JSON.parse(byMachine.stdout) as string[]).slice(-5), [
      '22',
      '-A',
      '--',
      '192.168.2.53',
      'ls -la /tmp',
    ]);
    await c.run(['start', 'hello.service']);
    const byUnit = await c.run(['ssh', '--unit', 'hello', 'uptime'], { env });
    assert.deepEqual((JSON.parse(byUnit.stdout) as string[]).slice(-3), ['--', '192.168.2.52', 'uptime']);
    const shell = await c.run(['ssh', MACHINE_A], { env });
    assert.deepEqual((JSON.parse(shell.stdout) as string[]).slice(-2), ['--', '192.168.2.52']);
  });

  it('ssh explains what it cannot find', async () => {
    const ssh = writeFakeSsh(c.dir);
    const env = { FLEETCTL_SSH_BINARY: ssh };
    c.fake.addMachine({ id: `${MACHINE_B.slice(0, 4)}ffff`, primaryIP: '10.0.0.9' });
    const cases: Array<[string[], number, string]> = [
      [['ssh', 'deb1'], 1, 'Unable to proceed: could not find matching unit or machine\n'],
      [['ssh', '--machine', 'deb1'], 1, 'Unable to proceed: found more than one machine\n'],
      [['ssh', '--unit', 'ghost'], 1, 'Unable to proceed: unit does not exist\n'],
      [['ssh', 'nothing-here'], 1, 'Unable to proceed: could not find matching unit or machine\n'],
    ];
    for (const [args, code, stderr] of cases)
      assert.deepEqual(await c.run(args, { env }), { code, stdout: '', stderr });
    const none = await c.run(['ssh'], { env });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /^one machine or unit must be provided\n/);
  });

  it('--tunnel reaches fleetd through an ssh-forwarded socket', async () => {
    const ssh = writeFakeSsh(c.dir);
    const r = await c.run(['--tunnel', 'bastion.example', 'list-machines', '--no-legend', '--fields=ip'], {
      env: { FLEETCTL_SSH_BINARY: ssh },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '192.168.2.52\n192.168.2.53\n');
    // Over the forwarded socket, the request still looks like fleet's.
    assert.equal(c.fake.requests[0]?.headers.host, 'domain-sock');
  });

  it('--tunnel through a bastion that fails is one clear line', async () => {
    const r = await c.run(['--tunnel', 'bastion.example', '--ssh-timeout=1', 'list-machines'], {
      env: { FLEETCTL_SSH_BINARY: '/bin/false' },
    });
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      'failed initializing SSH tunnel through bastion.example: ssh exited with status 1\n',
    );
  });
});
