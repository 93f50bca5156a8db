import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { parseUnitFile, serializeUnitOptions, unitHash } from '@fleet/core';
import { APACHE, HELLO, startCluster, type Cluster } from './harness.js';

let c: Cluster;
beforeEach(async () => {
  c = await startCluster();
});
afterEach(() => c.close());

describe('submit', () => {
  it('creates the unit from the local file and prints nothing', async () => {
    c.write('hello.service', HELLO);
    const r = await c.run(['submit', 'hello.service']);
    assert.deepEqual(r, { code: 0, stdout: '', stderr: '' });
    const unit = c.fake.units.get('hello.service');
    assert.equal(unit?.desiredState, 'inactive');
    assert.equal(unitHash(unit?.options ?? []), unitHash(parseUnitFile(HELLO)));
    const [put] = c.fake.requestsTo('PUT', '/fleet/v1/units/');
    assert.match(
      put?.body ?? '',
      /^\{"name":"hello.service","options":\[\{"name":"Description","section":"Unit",/,
    );
  });

  it('takes the base name of a path and appends .service to a bare name', async () => {
    mkdirSync(join(c.dir, 'units'));
    c.write('units/hello.service', HELLO);
    assert.equal((await c.run(['submit', 'units/hello'])).code, 0);
    assert.ok(c.fake.units.has('hello.service'));
  });

  it('submits every file a shell glob expanded to', async () => {
    c.write('apache.1.service', APACHE);
    c.write('apache.2.service', APACHE);
    const r = await c.run(['submit', 'apache.1.service', 'apache.2.service']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([...c.fake.units.keys()].sort(), ['apache.1.service', 'apache.2.service']);
  });

  it('is a no-op for an identical unit and an error for a different one without --replace', async () => {
    c.write('hello.service', HELLO);
    assert.equal((await c.run(['submit', 'hello.service'])).code, 0);
    // Same text with other comments and spacing: same hash, nothing sent.
    c.write('hello.service', `# comment\n${HELLO.replace('Description=MyApp', 'Description = MyApp')}`);
    assert.equal((await c.run(['submit', 'hello.service'])).code, 0);
    assert.equal(c.fake.requestsTo('PUT', '/fleet/v1/units/').length, 1);

    c.write('hello.service', HELLO.replace('MyApp', 'MyApp v2'));
    const r = await c.run(['submit', 'hello.service']);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      'Error creating units: unit hello.service already exists in the cluster and differs from local ' +
        'unit file hello.service; add --replace to replace it\n',
    );
    assert.equal(c.fake.requestsTo('PUT', '/fleet/v1/units/').length, 1);

    const replaced = await c.run(['submit', '--replace', 'hello.service']);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.match(serializeUnitOptions(c.fake.units.get('hello.service')?.options ?? []), /MyApp v2/);
  });

  it('refuses to replace a launched unit with submit, pointing at start --replace', async () => {
    c.write('hello.service', HELLO);
    assert.equal((await c.run(['start', 'hello.service'])).code, 0);
    c.write('hello.service', HELLO.replace('MyApp', 'v2'));
    const r = await c.run(['submit', '--replace', 'hello.service']);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      'Error creating units: cannot replace unit hello.service in state launched with "fleetctl submit"; ' +
        'use "fleetctl start --replace"\n',
    );
  });

  it('warns about unknown [X-Fleet] keys and still submits', async () => {
    c.write('odd.service', '[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineSomething=x\n');
    const r = await c.run(['submit', 'odd.service']);
    assert.equal(r.code, 0);
    assert.equal(
      r.stderr,
      'WARNING: Unit odd.service: unrecognized requirement in [X-Fleet] section: "MachineSomething"\n',
    );
    assert.ok(c.fake.units.has('odd.service'));
  });

  it('validates before sending: combinations, parse errors, names, missing files', async () => {
    c.write('bad.service', '[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineID=abc\nGlobal=true\n');
    c.write('broken.service', '[Service\nExecStart=/bin/true\n');
    const cases: Array<[string[], number, string]> = [
      [
        ['submit', 'bad.service'],
        1,
        'Error creating units: invalid unit bad.service (unit file bad.service): MachineID cannot be used with Global\n',
      ],
      [
        ['submit', 'broken.service'],
        1,
        'Error creating units: cannot parse unit file broken.service (line 1): unable to find end of section\n',
      ],
      [
        ['submit', 'nope.service'],
        1,
        'Error creating units: unable to find unit nope.service in the cluster or on the filesystem (no file nope.service)\n',
      ],
    ];
    for (const [args, code, stderr] of cases) {
      const r = await c.run(args);
      assert.equal(r.code, code, args.join(' '));
      assert.equal(r.stderr, stderr);
    }
    const bad = await c.run(['submit', 'my unit.service']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^invalid unit name "my unit.service": invalid character " " in unit name\n/);
    assert.equal(c.fake.requestsTo('PUT', '/').length, 0);
  });

  it('checks the whole batch before sending anything: a circular Replaces among the units stores none', async () => {
    c.write('ok.service', HELLO);
    c.write('a.service', '[Service]\nExecStart=/bin/true\n[X-Fleet]\nReplaces=b.service\n');
    c.write('b.service', '[Service]\nExecStart=/bin/true\n[X-Fleet]\nReplaces=c.service\n');
    c.write('c.service', '[Service]\nExecStart=/bin/true\n[X-Fleet]\nReplaces=a.service\n');
    c.write('bad.service', '[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineID=abc\nGlobal=true\n');
    for (const verb of ['submit', 'start']) {
      const r = await c.run([verb, 'ok.service', 'a.service', 'b.service', 'c.service']);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(
        r.stderr,
        'Error creating units: circular Replaces: a.service replaces b.service replaces c.service replaces a.service\n',
      );
      // A unit refused by fleetctl's own checks stops the batch before its first write too.
      const bad = await c.run([verb, 'ok.service', 'bad.service']);
      assert.equal(bad.code, 1, bad.stderr);
      assert.equal(c.fake.requestsTo('PUT', '/').length, 0, verb);
    }
    // The cycle may go through a unit already in the cluster.
    assert.equal((await c.run(['submit', 'b.service'])).code, 0);
    const r = await c.run(['submit', 'ok.service', 'a.service', 'c.service']);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /circular Replaces: a\.service replaces b\.service replaces c\.service replaces a\.service/,
    );
    assert.deepEqual([...c.fake.units.keys()], ['b.service']);
    // Without the cycle the batch goes through.
    assert.equal((await c.run(['submit', 'ok.service', 'a.service'])).code, 0);
  });

  it('wants at least one unit', async () => {
    const r = await c.run(['submit']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^No units given\nUsage: fleetctl submit \[--replace\] UNIT\.\.\.\n/);
  });
});

describe('start, load, stop, unload, destroy, restart', () => {
  it('start prints where the unit was launched, then checks systemd', async () => {
    c.write('hello.service', HELLO);
    const r = await c.run(['start', 'hello.service']);
    assert.deepEqual(r, {
      code: 0,
      stdout: 'Unit hello.service launched on 960a9f62.../192.168.2.52\n',
      stderr: '',
    });
    // The systemd check read the unit's state once it was launched.
    assert.equal(c.fake.requestsTo('GET', '/fleet/v1/state/hello.service').length, 1);
    // One request creates it launched (fleet's fleetctl created it, read it back, then set the state).
    const puts = c.fake.requestsTo('PUT', '/fleet/v1/units/').map((p) => JSON.parse(p.body ?? '') as unknown);
    assert.equal(puts.length, 1);
    assert.deepEqual(Object.keys(puts[0] as object), ['desiredState', 'name', 'options']);
    assert.equal((puts[0] as { desiredState?: string }).desiredState, 'launched');
  });

  it('start of a unit that exists sets its state in one request, as fleet did', async () => {
    c.write('hello.service', HELLO);
    assert.equal((await c.run(['submit', 'hello.service'])).code, 0);
    const before = c.fake.requestsTo('PUT', '/fleet/v1/units/').length;
    assert.equal((await c.run(['start', 'hello.service'])).code, 0);
    const puts = c.fake.requestsTo('PUT', '/fleet/v1/units/').map((p) => p.body);
    assert.deepEqual(puts.slice(before), ['{"desiredState":"launched","name":"hello.service"}']);
  });

  it('names one unit once, however it is spelled', async () => {
    c.write('hello.service', HELLO);
    const r = await c.run(['start', 'hello', './hello.service', 'hello.service']);
    assert.deepEqual(r, {
      code: 0,
      stdout: 'Unit hello.service launched on 960a9f62.../192.168.2.52\n',
      stderr: '',
    });
    assert.equal(c.fake.requestsTo('PUT', '/fleet/v1/units/').length, 1);
  });

  it('start --no-block only triggers', async () => {
    c.write('hello.service', HELLO);
    const r = await c.run(['start', '--no-block', 'hello.service']);
    assert.deepEqual(r, { code: 0, stdout: 'Triggered unit hello.service start\n', stderr: '' });
  });

  it('waits across polls until the cluster converges', async () => {
    await c.close();
    c = await startCluster({ convergeAfterPolls: 4 });
    c.write('hello.service', HELLO);
    const r = await c.run(['start', 'hello.service']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'Unit hello.service launched on 960a9f62.../192.168.2.52\n');
    assert.ok(c.fake.requestsTo('GET', '/fleet/v1/units/hello.service').length >= 4);
  });

  it('says once why a unit cannot be placed and gives up after --block-attempts', async () => {
    c.write('hello.service', HELLO);
    c.fake.unplaceable.set('hello.service', 'no machine satisfies MachineMetadata=region=eu');
    const started = Date.now();
    const r = await c.run(['start', '--block-attempts=2', 'hello.service']);
    const elapsed = Date.now() - started;
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.equal(
      r.stderr,
      'Unit hello.service waiting for a machine: no machine satisfies MachineMetadata=region=eu\n' +
        'Error waiting for units: timed out waiting for unit hello.service to report state launched ' +
        '(not placed: no machine satisfies MachineMetadata=region=eu)\n',
    );
    // 2 attempts × 8 polls × 10 ms, and it polled more than once.
    assert.ok(elapsed >= 150, `waited ${elapsed} ms`);
    assert.ok(c.fake.requestsTo('GET', '/fleet/v1/units/hello.service').length > 5);
  });

  it('one attempt is 2 s of polling at the default interval, sooner at first', async () => {
    c.write('hello.service', HELLO);
    c.fake.unplaceable.set('hello.service', 'no machines');
    const started = Date.now();
    const r = await c.run(['start', '--block-attempts', '1', 'hello.service'], { pollIntervalMs: 250 });
    const elapsed = Date.now() - started;
    assert.equal(r.code, 1);
    assert.ok(elapsed >= 1900 && elapsed < 4000, `waited ${elapsed} ms`);
    // Two reads before the wait (does it exist? what state?), then the wait's polls:
    // 25, 50, 100, 200 ms apart, then every 250 ms until 2 s have passed.
    const polls = c.fake.requestsTo('GET', '/fleet/v1/units/hello.service').length - 2;
    assert.ok(polls >= 10 && polls <= 13, `${polls} polls`);
  });

  it('fails start when systemd does not report the unit active', async () => {
    c.write('hello.service', HELLO);
    c.fake.launchedActiveState = 'failed';
    const r = await c.run(['start', 'hello.service']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, 'Unit hello.service launched on 960a9f62.../192.168.2.52\n');
    assert.equal(
      r.stderr,
      'Error waiting for units: unit hello.service was launched but is not active: ' +
        'systemd reports ActiveState=failed SubState=failed LoadState=loaded\n',
    );
  });

  it('reports a launched unit without a published state instead of crashing on the 404', async () => {
    c.write('hello.service', HELLO);
    c.fake.publishStates = false;
    const r = await c.run(['start', 'hello.service']);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /unit hello.service was launched but is not active: its machine has not reported a systemd state for it\n$/,
    );
  });

  it('start of a template is refused before anything is sent', async () => {
    c.write('web@.service', '[Service]\nExecStart=/bin/true\n');
    const r = await c.run(['start', 'web@.service']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'Error starting units: cannot activate template "web@.service"\n');
    assert.equal(c.fake.requests.length, 0);
  });

  it('creates an instance from the local template beside the argument', async () => {
    mkdirSync(join(c.dir, 'units'));
    c.write('units/web@.service', '[Unit]\nDescription=Web %i\n[Service]\nExecStart=/bin/sleep 1000\n');
    const r = await c.run(['start', 'units/web@1.service', 'units/web@2']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Unit web@1.service launched on /m);
    assert.match(r.stdout, /^Unit web@2.service launched on /m);
    assert.equal(c.fake.units.has('web@.service'), false);
    assert.match(c.fake.requestsTo('PUT', '/fleet/v1/units/web%401.service')[0]?.body ?? '', /Web %i/);
  });

  it('prefers the template in the cluster, warning when the local one differs', async () => {
    c.fake.addUnit({ name: 'web@.service', options: parseUnitFile('[Service]\nExecStart=/bin/cluster\n') });
    c.write('web@.service', '[Service]\nExecStart=/bin/local\n');
    const r = await c.run(['submit', 'web@7.service']);
    assert.equal(r.code, 0);
    assert.equal(
      r.stderr,
      'WARNING: Unit web@.service in the cluster differs from local template unit file web@.service; ' +
        "web@7.service is created from the cluster's\n",
    );
    assert.equal(c.fake.units.get('web@7.service')?.options?.[0]?.value, '/bin/cluster');
  });

  it('load, stop, unload print fleet lines; load of a launched unit says it stops it', async () => {
    c.write('hello.service', HELLO);
    assert.deepEqual(await c.run(['load', 'hello.service']), {
      code: 0,
      stdout: 'Unit hello.service loaded on 960a9f62.../192.168.2.52\n',
      stderr: '',
    });
    assert.equal((await c.run(['start', 'hello'])).code, 0);
    const load = await c.run(['load', 'hello']);
    assert.equal(load.code, 0);
    assert.equal(load.stdout, 'Unit hello.service loaded on 960a9f62.../192.168.2.52\n');
    assert.equal(
      load.stderr,
      'WARNING: Unit hello.service is launched; loading it stops it (desired state launched → loaded)\n',
    );
    assert.equal((await c.run(['start', 'hello'])).code, 0);
    assert.deepEqual(await c.run(['stop', 'hello.service']), {
      code: 0,
      stdout: 'Unit hello.service loaded on 960a9f62.../192.168.2.52\n',
      stderr: '',
    });
    assert.deepEqual(await c.run(['unload', 'hello.service']), {
      code: 0,
      stdout: 'Unit hello.service inactive\n',
      stderr: '',
    });
    assert.deepEqual(await c.run(['stop', '--no-block', 'hello.service']), {
      code: 1,
      stdout: '',
      stderr: 'Unable to stop unit hello.service in state inactive\n',
    });
  });

  it('stop and unload read the whole list once and refuse missing units', async () => {
    const r = await c.run(['stop', 'ghost.service']);
    assert.deepEqual(r, { code: 1, stdout: '', stderr: 'Unit ghost.service does not exist.\n' });
    assert.deepEqual(
      c.fake.requests.map((q) => `${q.method} ${q.url}`),
      ['GET /fleet/v1/units?alt=json'],
    );
  });

  it('--no-block on stop and unload prints Triggered lines', async () => {
    c.write('hello.service', HELLO);
    await c.run(['start', 'hello.service']);
    assert.equal(
      (await c.run(['stop', '--no-block', 'hello.service'])).stdout,
      'Triggered unit hello.service stop\n',
    );
    assert.equal(
      (await c.run(['unload', '--no-block', 'hello'])).stdout,
      'Triggered unit hello.service unload\n',
    );
  });

  it('global units are triggered, never waited on', async () => {
    c.write('monitor.service', '[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\n');
    const r = await c.run(['start', 'monitor.service']);
    assert.deepEqual(r, { code: 0, stdout: 'Triggered global unit monitor.service start\n', stderr: '' });
  });

  it('destroy prints Destroyed and only warns about units that do not exist', async () => {
    c.write('hello.service', HELLO);
    await c.run(['start', 'hello.service']);
    const r = await c.run(['destroy', 'hello.service', 'ghost.service']);
    assert.deepEqual(r, {
      code: 0,
      stdout: 'Destroyed hello.service\n',
      stderr: 'WARNING: Unit ghost.service does not exist\n',
    });
    assert.equal(c.fake.units.size, 0);
  });

  it('restart stops then starts a launched unit', async () => {
    c.write('hello.service', HELLO);
    await c.run(['start', 'hello.service']);
    const r = await c.run(['restart', 'hello.service']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      'Unit hello.service loaded on 960a9f62.../192.168.2.52\nUnit hello.service launched on 960a9f62.../192.168.2.52\n',
    );
    const states = c.fake
      .requestsTo('PUT', '/fleet/v1/units/')
      .map((p) => p.body)
      .slice(-2);
    assert.deepEqual(states, [
      '{"desiredState":"loaded","name":"hello.service"}',
      '{"desiredState":"launched","name":"hello.service"}',
    ]);
  });

  it('restart refuses an inactive unit', async () => {
    c.write('hello.service', HELLO);
    await c.run(['submit', 'hello.service']);
    assert.deepEqual(await c.run(['restart', 'hello.service']), {
      code: 1,
      stdout: '',
      stderr: 'Unable to restart unit hello.service in state inactive\n',
    });
  });
});

describe('cat', () => {
  it('prints the canonical unit text exactly', async () => {
    c.write(
      'hello.service',
      `# a comment\n[Unit]\nDescription = MyApp\n[Service]\nExecStart=/bin/true\n[Unit]\nAfter=x\n`,
    );
    await c.run(['submit', 'hello.service']);
    const r = await c.run(['cat', 'hello']);
    assert.deepEqual(r, {
      code: 0,
      stdout: '[Unit]\nDescription=MyApp\nAfter=x\n\n[Service]\nExecStart=/bin/true\n',
      stderr: '',
    });
  });

  it('reports a missing unit and wants exactly one argument', async () => {
    assert.deepEqual(await c.run(['cat', 'nope.service']), {
      code: 1,
      stdout: '',
      stderr: 'Unit nope.service not found\n',
    });
    const two = await c.run(['cat', 'a', 'b']);
    assert.equal(two.code, 2);
    assert.match(two.stderr, /^One unit file must be provided\n/);
  });
});

describe('API failures', () => {
  it('a 503 says fleetd cannot reach etcd', async () => {
    c.fake.failure = { status: 503, message: 'service unavailable' };
    const r = await c.run(['list-unit-files']);
    assert.deepEqual(r, {
      code: 1,
      stdout: '',
      stderr:
        'Error retrieving list of units from repository: googleapi: Error 503: service unavailable ' +
        '(fleetd cannot reach etcd)\n',
    });
  });

  it('an unreachable endpoint is one clear line', async () => {
    const sock = join(c.dir, 'nothing.sock');
    const r = await c.run(['start', 'hello.service'], { env: { FLEETCTL_ENDPOINT: `unix://${sock}` } });
    assert.deepEqual(r, {
      code: 1,
      stdout: '',
      stderr: `Error creating units: cannot reach fleetd at unix://${sock}: ${sock} does not exist (is fleetd running?)\n`,
    });
  });

  it('keeps polling through errors while waiting, saying each once', async () => {
    await c.close();
    c = await startCluster({ convergeAfterPolls: 1000 });
    c.write('hello.service', HELLO);
    const run = c.run(['start', '--block-attempts=3', 'hello.service'], { pollIntervalMs: 20 });
    await new Promise((r) => setTimeout(r, 60));
    c.fake.failure = { status: 503, message: 'etcd: request timed out' };
    const r = await run;
    assert.equal(r.code, 1);
    const lines = r.stderr.trim().split('\n');
    assert.deepEqual(lines, [
      'Error retrieving unit hello.service: googleapi: Error 503: etcd: request timed out',
      'Error waiting for units: timed out waiting for unit hello.service to report state launched',
    ]);
  });
});
