import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { parseUnitFile, unitHash } from '@fleet/core';
import { APACHE, HELLO, MACHINE_A, MACHINE_B, expandTabs, startCluster, type Cluster } from './harness.js';

let c: Cluster;
beforeEach(async () => {
  c = await startCluster();
});
afterEach(() => c.close());

describe('list-machines', () => {
  it('prints the story table, sorted by machine ID', async () => {
    const r = await c.run(['list-machines']);
    assert.equal(r.code, 0);
    assert.equal(
      r.stdout,
      'MACHINE\t\tIP\t\tMETADATA\n960a9f62...\t192.168.2.52\t-\ndeb19cd2...\t192.168.2.53\t-\n',
    );
  });

  it('--full, --no-legend, --fields and sorted metadata', async () => {
    c.fake.addMachine({ id: MACHINE_B, primaryIP: '192.168.2.53', metadata: { region: 'eu', az: '1' } });
    const r = await c.run(['list-machines', '--full', '--no-legend', '--fields=machine,metadata']);
    assert.equal(r.stdout, `${MACHINE_A}\t-\n${MACHINE_B}\taz=1,region=eu\n`);
    const short = await c.run(['list-machines', '-l', '--fields', 'ip']);
    assert.equal(short.stdout, 'IP\n192.168.2.52\n192.168.2.53\n');
  });

  it('refuses an unknown field, listing the valid ones', async () => {
    const r = await c.run(['list-machines', '--fields=machine,cpu']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^Invalid key in output format: "cpu" \(valid fields: ip,machine,metadata\)\n/);
    const empty = await c.run(['list-machines', '--fields=']);
    assert.equal(empty.code, 2);
    assert.match(empty.stderr, /^Must define output format\n/);
  });

  it('--output json prints the machines as the API returns them', async () => {
    const r = await c.run(['list-machines', '--output=json']);
    assert.equal(r.code, 0);
    assert.deepEqual(JSON.parse(r.stdout), [
      { id: MACHINE_A, primaryIP: '192.168.2.52' },
      { id: MACHINE_B, primaryIP: '192.168.2.53' },
    ]);
    const bad = await c.run(['list-machines', '--output=yaml']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /must be "table" or "json"/);
  });
});

describe('list-units', () => {
  it('shows one row per reported state, sorted by unit then machine, as the story does', async () => {
    c.write('apache.1.service', APACHE);
    c.write('apache.2.service', APACHE);
    c.write('hello.service', HELLO);
    await c.run(['submit', 'hello.service']);
    assert.equal((await c.run(['start', 'apache.2.service', 'apache.1.service'])).code, 0);
    // The fake puts everything on the first machine; move one as a scheduler would.
    const s2 = c.fake.stateOf('apache.2.service');
    assert.ok(s2);
    c.fake.states.clear();
    c.fake.setState({ ...s2, machineID: MACHINE_B });
    c.fake.setState({ ...s2, name: 'apache.1.service' });
    const r = await c.run(['list-units']);
    assert.equal(r.code, 0);
    assert.equal(
      r.stdout,
      'UNIT\t\t\tMACHINE\t\t\t\tACTIVE\tSUB\n' +
        'apache.1.service\t960a9f62.../192.168.2.52\tactive\trunning\n' +
        'apache.2.service\tdeb19cd2.../192.168.2.53\tactive\trunning\n',
    );
    // Only states and machines are read (fleet-compat §6).
    assert.deepEqual([...new Set(c.fake.requests.slice(-2).map((q) => q.url))].sort(), [
      '/fleet/v1/machines?alt=json',
      '/fleet/v1/state?alt=json',
    ]);
    const story = await c.run(['list-units', '--fields=unit,load,active,sub,machine']);
    assert.equal(
      expandTabs(story.stdout),
      [
        'UNIT                    LOAD    ACTIVE  SUB     MACHINE',
        'apache.1.service        loaded  active  running 960a9f62.../192.168.2.52',
        'apache.2.service        loaded  active  running deb19cd2.../192.168.2.53',
        '',
      ].join('\n'),
    );
  });

  it('sorts by unit, then machine (a global unit has a row per machine)', async () => {
    c.fake.setState({ name: 'mon.service', machineID: MACHINE_B, systemdActiveState: 'active' });
    c.fake.setState({ name: 'b.service', machineID: MACHINE_A, systemdActiveState: 'active' });
    c.fake.setState({ name: 'mon.service', machineID: MACHINE_A, systemdActiveState: 'active' });
    const r = await c.run(['list-units', '--no-legend', '--fields=unit,machine']);
    assert.equal(
      r.stdout,
      'b.service\t960a9f62.../192.168.2.52\nmon.service\t960a9f62.../192.168.2.52\nmon.service\tdeb19cd2.../192.168.2.53\n',
    );
  });

  it('hash is 7 characters, 40 with --full; unknown machines print their ID; missing values print -', async () => {
    const hash = unitHash(parseUnitFile(HELLO));
    c.fake.setState({ name: 'hello.service', hash, machineID: 'ffffffffffffffff' });
    const r = await c.run(['list-units', '--no-legend', '--fields=unit,hash,machine,load']);
    assert.equal(r.stdout, `hello.service\t${hash.slice(0, 7)}\tffffffff...\t-\n`);
    const full = await c.run(['list-units', '--no-legend', '--full', '--fields=hash,machine']);
    assert.equal(full.stdout, `${hash}\tffffffffffffffff\n`);
  });

  it('prints only the header when nothing runs', async () => {
    assert.equal((await c.run(['list-units'])).stdout, 'UNIT\tMACHINE\tACTIVE\tSUB\n');
  });
});

describe('list-unit-files', () => {
  it('one row per unit: hash, desired and current state, target', async () => {
    c.write('hello.service', HELLO);
    c.write(
      'monitor.service',
      '[Unit]\nDescription=Monitor\n[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\n',
    );
    c.write('idle.service', '[Service]\nExecStart=/bin/true\n');
    await c.run(['start', 'hello.service', 'monitor.service']);
    await c.run(['submit', 'idle.service']);
    const h = (name: string) => unitHash(c.fake.units.get(name)?.options ?? []).slice(0, 7);
    const r = await c.run(['list-unit-files']);
    assert.equal(r.code, 0);
    assert.equal(
      r.stdout,
      'UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n' +
        `hello.service\t${h('hello.service')}\tlaunched\tlaunched\t960a9f62.../192.168.2.52\n` +
        `idle.service\t${h('idle.service')}\tinactive\tinactive\t-\n` +
        `monitor.service\t${h('monitor.service')}\tlaunched\t-\t\tglobal\n`,
    );
    const more = await c.run(['list-unit-files', '--no-legend', '--fields=unit,desc,global']);
    assert.equal(
      more.stdout,
      'hello.service\tMyApp\tfalse\nidle.service\t-\tfalse\nmonitor.service\tMonitor\ttrue\n',
    );
  });

  it('accepts the deprecated tmachine field with a warning', async () => {
    const r = await c.run(['list-unit-files', '--fields=unit,tmachine']);
    assert.equal(r.code, 0);
    assert.equal(r.stderr, 'WARNING: The "tmachine" field is deprecated. Use "target" instead\n');
    assert.equal(r.stdout, 'UNIT\tTMACHINE\n');
  });

  it('follows every page of the unit list', async () => {
    await c.close();
    c = await startCluster({ pageSize: 2 });
    for (const n of ['a', 'b', 'c', 'd', 'e'])
      c.fake.addUnit({ name: `${n}.service`, options: parseUnitFile(HELLO) });
    const r = await c.run(['list-unit-files', '--no-legend', '--fields=unit']);
    assert.equal(r.stdout, 'a.service\nb.service\nc.service\nd.service\ne.service\n');
  });
});
