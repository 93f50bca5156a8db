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
  listedMachines,
  mainPIDs,
  BOUNDED,
} from './faults-support.js';

/** targets.md R3: the whole etcd down for 60 s (the real duration), then back. */
// A hang must fail the file, not use up CI's time.
describe('faults: the whole etcd down for 60 s', { timeout: 5 * 60_000 }, () => {
  const OUTAGE_MS = 60_000;
  const MACHINES = 3;
  let c: FleetCluster;
  let dir: UnitDir;
  before(async () => {
    c = await FleetCluster.start({ machines: MACHINES, agentTtl: '2s' });
    dir = new UnitDir();
  });
  after(async () => {
    await c?.close();
    dir?.remove();
  });

  it('R3: nothing stops, every command fails with "cannot reach etcd", and everything converges after', async (t) => {
    const units = dir.add(...Array.from({ length: 6 }, (_, i) => ({ name: `r3-u${i + 1}.service` })));
    units.push(...dir.add({ name: 'r3-global.service', global: true }));
    dir.add({ name: 'r3-during.service' }, { name: 'r3-after.service' });
    await c.ok(['start', BOUNDED, ...units], { cwd: dir.path });
    const expected = new Map<string, number | readonly string[]>(
      units.map((u) => [u, u === 'r3-global.service' ? MACHINES : 1]),
    );
    const placed = await convergeExactlyOnce(c, 'r3-', expected);
    const perMachine = byMachine(placed);
    const pids = new Map<Machine, Map<string, number>>();
    for (const m of c.machines) pids.set(m, await mainPIDs(c, m, perMachine.get(m.name) ?? []));

    await c.lab.stopEtcd({ signal: 'SIGKILL' });
    const until = Date.now() + OUTAGE_MS;
    const commands: string[][] = [
      ['list-units'],
      ['list-unit-files'],
      ['list-machines'],
      ['submit', 'r3-during.service'],
      ['start', 'r3-during.service'],
      ['stop', 'r3-u1.service'],
      ['destroy', 'r3-u2.service'],
      ['cat', 'r3-u3.service'],
      ['status', 'r3-u4.service'],
    ];
    const failures: string[] = [];
    let issued = 0;
    let sample = '';
    for (let i = 0; Date.now() < until; i++) {
      const args = commands[i % commands.length] as string[];
      const machine = c.machines[i % MACHINES] as Machine;
      const r = await c.fleetctl(args, { machine, cwd: dir.path });
      issued++;
      await hold(100); // a user's pace, not a busy loop (a refused connection fails in microseconds)
      sample ||= r.stderr.trim();
      const what = `fleetctl ${args.join(' ')} via ${machine.name}: exit ${r.code}, stdout ${JSON.stringify(r.stdout)}, stderr ${JSON.stringify(r.stderr)}`;
      const lines = r.stderr.trimEnd().split('\n');
      if (
        r.code === 0 ||
        lines.length !== 1 ||
        !/cannot reach etcd/i.test(r.stderr) ||
        /\n\s+at /.test(r.stderr) ||
        r.stdout.trim() !== ''
      ) {
        failures.push(what);
      }
    }
    // Units keep running everywhere, untouched, for the whole outage.
    for (const [m, p] of pids) await assertUntouched(c, m, p, 'during the etcd outage');
    await c.lab.startEtcd();
    const back = Date.now();
    t.diagnostic(`${issued} commands during the outage, e.g. ${sample}`);
    assert.deepEqual(failures, [], `${failures.length} of ${issued} commands during the outage`);

    // Everything converges: machines, states, and a unit started after the outage runs.
    await convergeExactlyOnce(c, 'r3-', expected, { message: 'the cluster picture after etcd returned' });
    t.diagnostic(`list-units complete ${Date.now() - back} ms after etcd served again (not a target here)`);
    assert.deepEqual(await listedMachines(c), c.machines.map((m) => m.name).sort());
    await c.ok(['start', BOUNDED, 'r3-after.service'], { cwd: dir.path });
    expected.set('r3-after.service', 1);
    const final = await convergeExactlyOnce(c, 'r3-', expected, {
      message: 'a unit started after the outage',
    });
    for (const [u, where] of placed) assert.deepEqual(final.get(u), where, `${u} moved`);
    for (const [m, p] of pids) await assertUntouched(c, m, p, 'after the etcd outage');
  });
});
