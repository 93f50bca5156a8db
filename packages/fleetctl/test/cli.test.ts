import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import {
  COMMANDS,
  FLEETCTL_VERSION,
  GLOBAL_FLAGS,
  envName,
  prepareArgv,
  resolveCommandName,
} from '@fleet/fleetctl';
import { runFleetctl, startCluster, type Cluster } from './harness.js';

const scratch = mkdtempSync(join(tmpdir(), 'fleetctl-cli-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
/** Runs against nothing: for what must fail before any request. */
const offline = (args: string[], env: Record<string, string> = {}) =>
  runFleetctl(args, {
    cwd: scratch,
    env: { FLEETCTL_ENDPOINT: `unix://${join(scratch, 'none.sock')}`, ...env },
  });

describe('command words', () => {
  it('resolves exact names and unambiguous prefixes', () => {
    assert.equal(resolveCommandName('list-m', COMMANDS), 'list-machines');
    assert.equal(resolveCommandName('list-unit-f', COMMANDS), 'list-unit-files');
    assert.equal(resolveCommandName('star', COMMANDS), 'start');
    assert.equal(resolveCommandName('stop', COMMANDS), 'stop');
  });
  it('refuses ambiguous and unknown words', () => {
    assert.throws(
      () => resolveCommandName('s', COMMANDS),
      /ambiguous subcommand "s": could be ssh, start, status, stop, submit/,
    );
    assert.throws(() => resolveCommandName('frobnicate', COMMANDS), /unknown subcommand: "frobnicate"/);
  });
});

describe('argv preparation', () => {
  const prep = (argv: string[]) => prepareArgv(argv, COMMANDS, GLOBAL_FLAGS);
  it('finds the command after global flags with values', () => {
    assert.deepEqual(prep(['--endpoint', 'http://x:1', 'list-m', '--full']), {
      argv: ['--endpoint', 'http://x:1', 'list-machines', '--full'],
      command: 'list-machines',
    });
  });
  it('turns Go-style boolean values into commander forms', () => {
    assert.deepEqual(
      prep(['--debug=true', '--strict-host-key-checking=false', 'list-units', '--full=false']).argv,
      ['--debug', '--no-strict-host-key-checking', 'list-units'],
    );
    assert.throws(() => prep(['--debug=maybe', 'version']), /invalid boolean value "maybe" for --debug/);
  });
  it('ends option parsing after the ssh target so the remote command keeps its options', () => {
    assert.deepEqual(prep(['ssh', '-A', 'abc123', 'ls', '-la', '/tmp']).argv, [
      'ssh',
      '-A',
      'abc123',
      '--',
      'ls',
      '-la',
      '/tmp',
    ]);
    assert.deepEqual(prep(['ssh', '--machine', 'abc', 'uptime', '-p']).argv, [
      'ssh',
      '--machine',
      'abc',
      '--',
      'uptime',
      '-p',
    ]);
    assert.deepEqual(prep(['ssh', 'abc']).argv, ['ssh', 'abc']);
  });
  it('derives environment names as fleet did', () => {
    const names = GLOBAL_FLAGS.map(envName);
    assert.ok(names.includes('FLEETCTL_STRICT_HOST_KEY_CHECKING'));
    assert.ok(names.includes('FLEETCTL_REQUEST_TIMEOUT'));
  });
});

describe('usage errors exit 2 with a usage line', () => {
  const cases: Array<[string[], RegExp]> = [
    [['frobnicate'], /^unknown subcommand: "frobnicate"\nUsage: fleetctl \[global options\] <command>/],
    [['list'], /^ambiguous subcommand "list": could be list-machines, list-unit-files, list-units\n/],
    [['list-units', '--bogus'], /^unknown option '--bogus'\nUsage: fleetctl list-units \[--no-legend\]/],
    [['--bogus', 'list-units'], /^unknown option '--bogus'\n/],
    [
      ['start', '--block-attempts=x', 'a'],
      /^option '--block-attempts <N>' argument 'x' is invalid\. must be a whole number ≥ 0\n/,
    ],
    [['journal', '-l', 'ten', 'a'], /argument 'ten' is invalid/],
    [['list-units', 'extra'], /^too many arguments for 'list-units'/],
    [['--request-timeout=0', 'list-units'], /must be a number of seconds > 0/],
    [
      ['--driver=etcd', 'list-units'],
      /only "API" is supported \(fleetctl talks to fleetd's HTTP API, never to etcd\)/,
    ],
    [
      ['--endpoint=127.0.0.1:4001', 'list-units'],
      /^Unable to initialize client: invalid endpoint "127.0.0.1:4001": URL scheme undefined/,
    ],
    [
      ['ssh', '--machine', 'a', '--unit', 'b'],
      /^Both machine and unit flags provided, please specify only one\.\n/,
    ],
  ];
  for (const [args, re] of cases) {
    it(args.join(' '), async () => {
      const r = await offline(args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, re);
      assert.match(r.stderr, /\nRun 'fleetctl help( [a-z-]+)?' for usage\.\n$/);
      assert.ok(!r.stderr.includes('    at '), 'no stack trace');
    });
  }
  it('names the environment variable that holds a bad value', async () => {
    const r = await offline(['list-units'], { FLEETCTL_REQUEST_TIMEOUT: 'soon' });
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /^invalid value "soon" for FLEETCTL_REQUEST_TIMEOUT: must be a number of seconds > 0\n/,
    );
  });
});

describe('version and help', () => {
  it('version and --version print fleetctl version <v>', async () => {
    for (const args of [['version'], ['--version'], ['--version', 'list-units']]) {
      const r = await offline(args);
      assert.deepEqual(r, { code: 0, stdout: `fleetctl version ${FLEETCTL_VERSION}\n`, stderr: '' });
    }
    assert.match(FLEETCTL_VERSION, /^\d+\.\d+\.\d+/);
  });
  it('help lists commands, documents exit statuses and environment', async () => {
    for (const args of [['help'], [], ['--help'], ['-h']]) {
      const r = await offline(args);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^NAME:\n\tfleetctl - /);
      assert.match(r.stdout, /\n\tlist-machines\tEnumerate the current hosts in the cluster\n/);
      assert.match(r.stdout, /EXIT STATUS:\n\t0\tsuccess\n\t1\tfailure: .*\n\t2\tusage error: /);
      assert.match(r.stdout, /FLEETCTL_<OPTION>/);
    }
  });
  it('help COMMAND (by prefix) and COMMAND --help show the command', async () => {
    const a = await offline(['help', 'jour']);
    assert.match(a.stdout, /^NAME:\n\tfleetctl journal - /);
    assert.match(a.stdout, /-l, --lines=N\t+Number of recent log lines to return \(default 10\)/);
    const b = await offline(['start', '--help']);
    assert.match(
      b.stdout,
      /USAGE:\n\tfleetctl start \[--no-block\|--block-attempts=N\] \[--replace\] UNIT\.\.\.\n/,
    );
  });
});

describe('global flags and the environment', () => {
  let c: Cluster;
  beforeEach(async () => {
    c = await startCluster({ tcp: true, pathPrefix: '/prefix' });
  });
  afterEach(() => c.close());

  it('reads FLEETCTL_ENDPOINT (with a path prefix); a flag wins over it', async () => {
    const viaEnv = await c.run(['list-machines', '--no-legend', '--fields=ip']);
    assert.equal(viaEnv.stdout, '192.168.2.52\n192.168.2.53\n');
    assert.equal(c.fake.requests[0]?.url, '/prefix/fleet/v1/machines?alt=json');
    const flagWins = await c.run(['--endpoint', c.endpoint, 'list-machines'], {
      env: { FLEETCTL_ENDPOINT: 'unix:///nonexistent.sock' },
    });
    assert.equal(flagWins.code, 0, flagWins.stderr);
    // A global flag may also follow the command.
    const after = await c.run(['list-machines', '--endpoint', c.endpoint], {
      env: { FLEETCTL_ENDPOINT: 'unix:///nonexistent.sock' },
    });
    assert.equal(after.code, 0, after.stderr);
  });

  it('uses the first of several endpoints and says so', async () => {
    const r = await c.run(['list-machines', '--no-legend'], {
      env: { FLEETCTL_ENDPOINT: `${c.endpoint},http://other:1` },
    });
    assert.equal(r.code, 0);
    assert.equal(
      r.stderr,
      `WARNING: multiple endpoints provided but only the first (${c.endpoint}) is used\n`,
    );
  });

  it('--debug logs every request on stderr; FLEETCTL_DEBUG=true does too', async () => {
    const r = await c.run(['--debug', 'list-machines', '--no-legend']);
    assert.match(r.stderr, /^DEBUG: GET \/prefix\/fleet\/v1\/machines\?alt=json → 200 \(\d+ ms\)\n$/);
    const e = await c.run(['list-machines', '--no-legend'], { env: { FLEETCTL_DEBUG: 'true' } });
    assert.match(e.stderr, /^DEBUG: GET /);
  });

  it('--request-timeout bounds a request', async () => {
    const { createServer } = await import('node:net');
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    const started = Date.now();
    const r = await c.run(['--request-timeout=0.2', 'list-machines'], {
      env: { FLEETCTL_ENDPOINT: `http://127.0.0.1:${port}` },
    });
    silent.close();
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `Error retrieving list of active machines: cannot reach fleetd at http://127.0.0.1:${port}: no answer within 0.2s (--request-timeout)\n`,
    );
    assert.ok(Date.now() - started < 2000);
  });

  it('sends the User-Agent of this fleetctl', async () => {
    await c.run(['list-machines']);
    assert.equal(c.fake.requests[0]?.headers['user-agent'], `fleetctl/${FLEETCTL_VERSION}`);
  });

  it('reports an unreadable --ca-file as one line', async () => {
    const r = await c.run(['--ca-file', '/nonexistent/ca.pem', 'list-machines']);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /^Unable to initialize client: cannot read --ca-file \/nonexistent\/ca.pem: ENOENT/,
    );
  });
});
