import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Machine } from '@fleet/lab';
import { FleetCluster } from './harness.js';
import {
  UnitDir,
  assertUntouched,
  byMachine,
  convergeExactlyOnce,
  hold,
  mainPIDs,
  BOUNDED,
} from './faults-support.js';

/** targets.md R2: one member of a 3-member etcd killed and restarted, each member in turn. */
// A hang must fail the file, not use up CI's time.
describe('faults: one etcd member of three killed and restarted', { timeout: 4 * 60_000 }, () => {
  const MACHINES = 3;
  let c: FleetCluster;
  let dir: UnitDir;
  before(async () => {
    c = await FleetCluster.start({ machines: MACHINES, etcdMembers: 3, agentTtl: '2s' });
    dir = new UnitDir();
  });
  after(async () => {
    await c?.close();
    dir?.remove();
  });

  it('R2: no user command fails and no unit stops while members die and come back', async () => {
    const units = dir.add(...Array.from({ length: 6 }, (_, i) => ({ name: `r2-u${i + 1}.service` })));
    units.push(...dir.add({ name: 'r2-global.service', global: true }));
    await c.ok(['start', BOUNDED, ...units], { cwd: dir.path });
    const expected = new Map<string, number | readonly string[]>(
      units.map((u) => [u, u === 'r2-global.service' ? MACHINES : 1]),
    );
    const placed = await convergeExactlyOnce(c, 'r2-', expected);
    const perMachine = byMachine(placed);
    const pids = new Map<Machine, Map<string, number>>();
    for (const m of c.machines) pids.set(m, await mainPIDs(c, m, perMachine.get(m.name) ?? []));

    // A user at work: each round submits, starts, lists, stops and destroys a unit of its own,
    // through a different machine's fleetd each time.
    let done = false;
    let issued = 0;
    const failures: string[] = [];
    const user = (async () => {
      for (let i = 0; !done; i++) {
        const [name] = dir.add({ name: `r2-loop${i}.service` });
        const machine = c.machines[i % MACHINES] as Machine;
        for (const args of [
          ['submit', name as string],
          ['start', BOUNDED, name as string],
          ['list-units'],
          ['list-unit-files'],
          ['list-machines'],
          ['stop', BOUNDED, name as string],
          ['destroy', name as string],
        ]) {
          const r = await c.fleetctl(args, { machine, cwd: dir.path });
          issued++;
          if (r.code !== 0)
            failures.push(`fleetctl ${args.join(' ')} via ${machine.name}: exit ${r.code}: ${r.stderr}`);
        }
      }
    })();
    try {
      for (const member of [0, 1, 2]) {
        await hold(1500);
        await c.lab.stopEtcdMember(member, { signal: 'SIGKILL' });
        await hold(3000);
        await c.lab.startEtcdMember(member);
      }
      await hold(1500);
    } finally {
      done = true;
      await user;
    }
    assert.deepEqual(failures, [], `${failures.length} of ${issued} commands failed`);
    assert.ok(issued >= 14, `only ${issued} commands ran`);

    const final = await convergeExactlyOnce(c, 'r2-', expected);
    assert.deepEqual(final, placed, 'nothing moved');
    for (const [m, p] of pids) await assertUntouched(c, m, p, 'while etcd members died and came back');
  });
});
