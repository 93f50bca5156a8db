import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FleetCluster, converge } from './harness.js';

/** ../shared/spec/story.md on a real 3-machine cluster: fleetd under systemd in each machine. */
describe('the walkthrough, end to end', () => {
  let c: FleetCluster;
  before(async () => {
    c = await FleetCluster.start({ machines: 3 });
  });
  after(async () => {
    await c?.close();
  });

  it('1. list-machines shows every machine with its IP', async () => {
    const out = await c.ok(['list-machines']);
    const lines = out.trimEnd().split('\n');
    assert.deepEqual(lines[0]?.split(/\s+/), ['MACHINE', 'IP', 'METADATA']);
    assert.equal(lines.length, 4);
    for (const m of c.machines) {
      assert.ok(
        lines.some((l) => l.startsWith(`${m.machineID.slice(0, 8)}...`) && l.includes(m.ip)),
        m.name,
      );
    }
  });

  it('2. hello.service: submitted (nowhere), started (somewhere, running under systemd), stopped', async () => {
    assert.equal(await c.ok(['submit', 'hello.service']), '');
    const files = await c.rows(['list-unit-files', '--fields=unit,dstate,state,target']);
    assert.deepEqual(files, [['hello.service', 'inactive', 'inactive', '-']]);
    const started = await c.ok(['start', 'hello.service']);
    assert.match(started, /^Unit hello\.service launched on [0-9a-f]{8}\.\.\.\/172\.\S+\n$/);
    const where = await converge(c, async () => {
      const m = (await c.activeUnits()).get('hello.service');
      return m?.length === 1 ? m[0] : undefined;
    });
    const machine = c.machineByID(where as string);
    assert.match(await c.systemctl(machine, ['is-active', 'hello.service']), /^active/);
    assert.match(await c.ok(['stop', 'hello.service']), /^Unit hello\.service loaded on /);
    await converge(c, async () => !(await c.activeUnits()).has('hello.service'));
    assert.match(
      await c.systemctl(machine, ['is-active', 'hello.service']).catch(() => 'inactive'),
      /inactive/,
    );
  });

  it('3. apache.1/apache.2 never share a machine; apache.3 waits with a reason', async () => {
    await c.ok(['submit', 'apache.1.service', 'apache.2.service', 'apache.3.service']);
    await c.ok(['start', 'apache.1.service', 'apache.2.service']);
    const placed = await converge(c, async () => {
      const a = await c.activeUnits();
      const m1 = a.get('apache.1.service');
      const m2 = a.get('apache.2.service');
      return m1?.length === 1 && m2?.length === 1 ? [m1[0], m2[0]] : undefined;
    });
    assert.notEqual(placed[0], placed[1]);
  });
});
