import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FleetClient } from '@fleet/client';
import { globMatches } from '@fleet/core';
import type { Machine } from '@fleet/lab';
import { UnitDir, apiUnit, destroyAll, serviceText, single, systemdShow, unitsOn } from './acceptance.js';
import { FleetCluster, converge } from './harness.js';

/** A blocking command gives up after 30 s instead of hanging the suite. */
const WAIT = '--block-attempts=15';

/**
 * Fleet's cluster-membership tests (functional/cluster_test.go, node_test.go)
 * on one real cluster of 4 machines (a 5th joins in the last test): machines
 * leaving, coming back under a new machine ID, a duplicate machine ID, and a
 * machine joining. The harness's fleetctl talks to the first machine, so the
 * machines that leave are others.
 */
describe('machines', { timeout: 240_000 }, () => {
  let c: FleetCluster;
  let dir: UnitDir;
  const cwd = (): { cwd: string } => ({ cwd: dir.path });

  before(async () => {
    dir = new UnitDir();
    c = await FleetCluster.start({ machines: 4 });
  });
  after(async () => {
    await c?.close();
    dir?.close();
  });

  /** Live machine IDs as list-machines shows them (sorted, duplicates kept). */
  const listedIDs = async (): Promise<string[]> =>
    (await c.rows(['list-machines'])).map((r) => r[0] as string);

  /** Waits until each unit is active on exactly one machine and the engine places it there; unit → machine ID. */
  async function settled(units: readonly string[], message: string): Promise<Map<string, string>> {
    return converge(
      c,
      async () => {
        const active = await c.activeUnits();
        const targets = new Map(
          (await c.rows(['list-unit-files', '--fields=unit,target'])).map((r) => [r[0], r[1]?.split('/')[0]]),
        );
        const where = new Map<string, string>();
        for (const u of units) {
          const m = single(active, u);
          if (m === undefined || targets.get(u) !== m) return undefined;
          where.set(u, m);
        }
        return where;
      },
      { timeoutMs: 30_000, message },
    );
  }

  it('a machine leaves (fleetd stopped): only its units move, each to the least-loaded valid machine', async () => {
    const conflicting = [0, 1, 2].map((i) =>
      dir.write(`conflict.${i}.service`, serviceText('Conflicts=conflict.*.service')),
    );
    const plain = [1, 2, 3, 4, 5].map((i) => dir.write(`p${i}.service`, serviceText()));
    const units = [...conflicting, ...plain];
    await c.ok(['start', WAIT, ...units], cwd());
    const before = await settled(units, 'eight units placed and active');
    const load = (m: Machine): number => [...before.values()].filter((id) => id === m.machineID).length;
    // The busiest machine holding a conflict unit (not the harness's endpoint) leaves.
    const leaving = c.machines
      .slice(1)
      .filter((m) => conflicting.some((u) => before.get(u) === m.machineID))
      .sort((a, b) => load(b) - load(a))[0] as Machine;
    const moving = units.filter((u) => before.get(u) === leaving.machineID).sort();

    // The oracle (docs/scheduler.md): units of the lost machine are placed by name, each on the valid
    // machine with the fewest units (counting placements made so far), ties to the lowest machine ID.
    const expected = new Map([...before].filter(([u]) => !moving.includes(u)));
    const live = c.machines
      .filter((m) => m !== leaving)
      .map((m) => m.machineID)
      .sort();
    const conflict = (a: string, b: string): boolean =>
      a !== b && globMatches('conflict.*.service', a) && globMatches('conflict.*.service', b);
    for (const u of moving) {
      const valid = live.filter((m) => ![...expected].some(([v, on]) => on === m && conflict(u, v)));
      const count = (m: string): number => [...expected.values()].filter((x) => x === m).length;
      const best = valid.reduce((a, b) => (count(b) < count(a) ? b : a));
      expected.set(u, best);
    }

    const r = await c.lab.exec(leaving, ['systemctl', 'stop', 'fleetd']);
    assert.equal(r.code, 0, r.stderr);
    try {
      await converge(c, async () => !(await listedIDs()).includes(leaving.machineID), {
        timeoutMs: 20_000,
        message: `${leaving.name} gone from list-machines`,
      });
      const after = await settled(units, 'units of the leaving machine placed again');
      assert.deepEqual(
        Object.fromEntries([...after].sort()),
        Object.fromEntries([...expected].sort()),
        `moved: ${moving.join(', ')} off ${leaving.name}`,
      );
      // systemd agrees: the units run where fleet says, and no longer on the machine that left.
      const gone = await systemdShow(c, leaving, moving, ['ActiveState']);
      for (const u of moving) assert.equal(gone.get(u)?.ActiveState, 'inactive', `${u} on ${leaving.name}`);
      const leftFiles = join(leaving.rootPath, 'run/fleet/units');
      assert.deepEqual(
        existsSync(leftFiles) ? readdirSync(leftFiles) : [],
        [],
        `unit files left on ${leaving.name}`,
      );
      for (const u of moving) {
        const m = c.machineByID(after.get(u) as string);
        assert.equal((await systemdShow(c, m, [u], ['ActiveState'])).get(u)?.ActiveState, 'active');
      }
    } finally {
      await c.lab.exec(leaving, ['systemctl', 'start', 'fleetd']);
      await c.waitForMachines(4);
    }
    await destroyAll(c, units);
  });

  it('a machine rebooted under a new machine ID: exactly one unit moves (to it)', async () => {
    const units = [0, 1, 2, 3].map((i) =>
      dir.write(`reboot.${i}.service`, serviceText('Conflicts=reboot.*.service')),
    );
    await c.ok(['start', WAIT, ...units], cwd());
    const before = await settled(units, 'one reboot.* unit on each of the 4 machines');
    assert.equal(new Set(before.values()).size, 4);
    const rebooted = c.machines[2] as Machine;
    const oldID = rebooted.machineID;
    const victim = units.find((u) => before.get(u) === oldID) as string;

    await c.lab.restart(rebooted, { newMachineID: true });
    const newID = rebooted.machineID;
    assert.notEqual(newID, oldID);
    const expectedIDs = c.machines.map((m) => m.machineID).sort();
    await converge(c, async () => JSON.stringify(await listedIDs()) === JSON.stringify(expectedIDs), {
      timeoutMs: 30_000,
      message: 'list-machines shows the new machine ID, not the old one',
    });
    const after = await settled(units, 'every reboot.* unit active again');
    const migrated = units.filter((u) => after.get(u) !== before.get(u));
    assert.deepEqual(migrated, [victim], 'exactly one unit moved');
    assert.equal(after.get(victim), newID, 'onto the rebooted machine, the only one it may use');
    assert.equal(
      (await systemdShow(c, rebooted, [victim], ['ActiveState'])).get(victim)?.ActiveState,
      'active',
    );
    await destroyAll(c, units);
  });

  it('a duplicate machine ID is refused: never listed twice, the impostor logs it and runs nothing', async (t) => {
    const owner = c.machines[0] as Machine;
    const impostor = c.machines[3] as Machine;
    const ownID = impostor.machineID;
    const pinned = dir.write('dup-1.service', serviceText(`MachineID=${owner.machineID}`));
    await c.ok(['start', WAIT, pinned], cwd());
    const ids = async (): Promise<string[]> => (await listedIDs()).sort();
    const othersIDs = c.machines
      .filter((m) => m !== impostor)
      .map((m) => m.machineID)
      .sort();

    const ownerPID = (await systemdShow(c, owner, [pinned], ['MainPID'])).get(pinned)?.MainPID;
    // Watch list-machines (through the API, every 100 ms) for the whole time the impostor is up.
    const client = new FleetClient({ endpoint: c.endpoint(owner) });
    const seen: string[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const listed = await client.listMachines().catch(() => []);
        const dups = listed.map((m) => m.id).filter((id, i, all) => all.indexOf(id) !== i);
        if (dups.length > 0) seen.push(dups.join(','));
        await new Promise((r) => setTimeout(r, 100));
      }
      client.close();
    })();
    const stopWatching = (): void => {
      watching = false;
    };
    t.after(stopWatching); // also when an assertion below fails

    const sh = (script: string) => c.lab.exec(impostor, ['sh', '-c', script]);
    let r = await sh(
      `systemctl stop fleetd && echo ${owner.machineID} > /etc/machine-id && systemctl start fleetd`,
    );
    assert.equal(r.code, 0, r.stderr);
    try {
      const refusal = await converge(
        c,
        async () => {
          const log = (await c.lab.exec(impostor, ['journalctl', '-u', 'fleetd', '--no-pager', '-o', 'cat']))
            .stdout;
          return log.split('\n').find((l) => l.includes(`refusing to serve: machine ID ${owner.machineID}`));
        },
        { timeoutMs: 20_000, message: 'the impostor’s fleetd logs that it refuses to serve' },
      );
      assert.match(refusal, /already in use by another live machine/);
      assert.deepEqual(await ids(), othersIDs, 'the owner is listed once, the impostor not at all');
      assert.equal(
        (await c.systemctl(impostor, ['is-active', 'fleetd'])).trim(),
        'active',
        'it keeps trying',
      );

      // A unit placed on the owner after the impostor came up runs on the owner only.
      const later = dir.write('dup-2.service', serviceText(`MachineID=${owner.machineID}`));
      await c.ok(['start', WAIT, later], cwd());
      assert.equal(single(await c.activeUnits(), later), owner.machineID);
      assert.deepEqual(await ids(), othersIDs);
      const there = await systemdShow(c, impostor, [pinned, later], ['LoadState', 'ActiveState']);
      for (const u of [pinned, later]) {
        assert.equal(
          `${there.get(u)?.LoadState}/${there.get(u)?.ActiveState}`,
          'not-found/inactive',
          `${u} in the impostor`,
        );
      }
      const unitsDir = join(impostor.rootPath, 'run/fleet/units');
      assert.deepEqual(existsSync(unitsDir) ? readdirSync(unitsDir) : [], [], 'no unit file in the impostor');
      const states = await unitsOn(c);
      assert.deepEqual(states.get(pinned), [owner.machineID]);
      assert.deepEqual(states.get(later), [owner.machineID]);
      assert.equal(
        (await systemdShow(c, owner, [pinned], ['MainPID'])).get(pinned)?.MainPID,
        ownerPID,
        'the owner’s unit was not disturbed',
      );
    } finally {
      r = await sh(`systemctl stop fleetd; echo ${ownID} > /etc/machine-id && systemctl start fleetd`);
      assert.equal(r.code, 0, r.stderr);
    }
    await converge(c, async () => (await ids()).includes(ownID), {
      timeoutMs: 20_000,
      message: 'the machine is back under its own ID',
    });
    stopWatching();
    await watcher;
    assert.deepEqual(seen, [], 'list-machines never showed a machine ID twice');
    await c.waitForMachines(4);
    await destroyAll(c, [pinned, 'dup-2.service']);
  });

  it('a machine that joins gets every global unit (and one only it qualifies for); nothing else moves', async () => {
    const everywhere = dir.write('global-all.service', serviceText('Global=true'));
    const extraOnly = dir.write(
      'global-extra.service',
      serviceText('Global=true\nMachineMetadata=role=extra'),
    );
    const stay = dir.write('stay.service', serviceText());
    await c.ok(['start', WAIT, stay], cwd());
    await c.ok(['start', everywhere, extraOnly], cwd());
    const stayOn = (await settled([stay], 'stay.service active')).get(stay);
    const all = (): string[] => c.machines.map((m) => m.machineID).sort();
    await converge(
      c,
      async () => JSON.stringify((await c.activeUnits()).get(everywhere)) === JSON.stringify(all()),
      {
        timeoutMs: 30_000,
        message: 'global-all on the 4 machines',
      },
    );
    assert.equal(
      (await apiUnit(c, extraOnly))?.unplacedReason,
      'no machine satisfies MachineMetadata=role=extra',
    );

    const joined = await c.lab.add({ env: { FLEET_METADATA: 'role=extra' } });
    await c.waitForMachines(5);
    const rows = await c.rows(['list-machines', '--fields=machine,metadata']);
    assert.deepEqual(
      rows.find((r) => r[0] === joined.machineID),
      [joined.machineID, 'role=extra'],
    );
    await converge(
      c,
      async () => {
        const a = await c.activeUnits();
        return (
          JSON.stringify(a.get(everywhere)) === JSON.stringify(all()) &&
          JSON.stringify(a.get(extraOnly)) === JSON.stringify([joined.machineID])
        );
      },
      { timeoutMs: 30_000, message: 'the new machine runs both global units' },
    );
    assert.equal(single(await c.activeUnits(), stay), stayOn, 'stay.service did not move');
    const there = await systemdShow(c, joined, [everywhere, extraOnly, stay], ['ActiveState']);
    assert.deepEqual(
      [everywhere, extraOnly, stay].map((u) => there.get(u)?.ActiveState),
      ['active', 'active', 'inactive'],
    );
    assert.equal((await apiUnit(c, extraOnly))?.unplacedReason, undefined);
    await destroyAll(c, [everywhere, extraOnly, stay]);
  });
});
