import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FleetClient } from '@fleet/client';
import type { Machine } from '@fleet/lab';
import {
  UnitDir,
  apiUnit,
  destroyAll,
  serviceText,
  single,
  systemdShow,
  systemdState,
  unitFiles,
  unitsOn,
} from './acceptance.js';
import { FleetCluster, converge } from './harness.js';

/** A blocking `start` gives up after 30 s instead of hanging the suite. */
const WAIT = '--block-attempts=15';

/**
 * Fleet's scheduling functional tests (functional/scheduling_test.go,
 * metadata_test.go) on one real 3-machine cluster, plus the rules fleet left
 * open (fleet-compat §3, docs/scheduler.md). Every test removes its units, so
 * each starts from an empty cluster. Machine `mN` has metadata `zone=mN`.
 */
describe('scheduling', { timeout: 240_000 }, () => {
  let c: FleetCluster;
  let dir: UnitDir;
  /** zone → machine, read back from list-machines (what fleetd announced). */
  const byZone = new Map<string, Machine>();
  const cwd = (): { cwd: string } => ({ cwd: dir.path });
  const zoneOf = (name: string): Machine => {
    const m = byZone.get(name);
    if (!m) throw new Error(`no machine in zone ${name}`);
    return m;
  };
  const short = (m: Machine): string => m.machineID.slice(0, 8);

  before(async () => {
    dir = new UnitDir();
    c = await FleetCluster.start({ machines: 3, fleetEnv: (i) => ({ FLEET_METADATA: `zone=m${i}` }) });
    for (const [id, metadata] of await c.rows(['list-machines', '--fields=machine,metadata'])) {
      const zone = /^zone=(m\d+)$/.exec(metadata ?? '')?.[1];
      assert.ok(zone, `machine ${id} announces ${metadata}`);
      byZone.set(zone, c.machineByID(id as string));
    }
    assert.deepEqual([...byZone.keys()].sort(), ['m1', 'm2', 'm3']);
  });
  after(async () => {
    await c?.close();
    dir?.close();
  });

  it('MachineOf: pairs share a machine, and a pair moves together when its machine leaves', async () => {
    const units: string[] = [];
    for (let i = 0; i < 3; i++) {
      units.push(dir.write(`ping.${i}.service`, serviceText()));
      units.push(dir.write(`pong.${i}.service`, serviceText(`MachineOf=ping.${i}.service`)));
    }
    const started = await c.ok(['start', '--no-block', ...units], cwd());
    assert.equal(started, units.map((u) => `Triggered unit ${u} start\n`).join(''));
    assert.equal((await unitFiles(c)).size, 6);
    const before = await converge(
      c,
      async () => {
        const a = await c.activeUnits();
        const where = new Map(units.map((u) => [u, single(a, u)]));
        return [...where.values()].every(Boolean) ? (where as Map<string, string>) : undefined;
      },
      { timeoutMs: 30_000, message: 'six units active, each on one machine' },
    );
    for (let i = 0; i < 3; i++) {
      assert.equal(before.get(`pong.${i}.service`), before.get(`ping.${i}.service`), `pair ${i}`);
      const m = c.machineByID(before.get(`ping.${i}.service`) as string);
      assert.equal(await systemdState(c, m, `ping.${i}.service`), 'active/running');
      assert.equal(await systemdState(c, m, `pong.${i}.service`), 'active/running');
    }

    // The harness talks to the first machine's fleetd: another machine leaves.
    const moving = [0, 1, 2].find((i) => before.get(`ping.${i}.service`) !== c.machines[0]?.machineID);
    assert.ok(moving !== undefined, 'every pair on the first machine');
    const leaving = c.machineByID(before.get(`ping.${moving}.service`) as string);
    const r = await c.lab.exec(leaving, ['systemctl', 'stop', 'fleetd']);
    assert.equal(r.code, 0, r.stderr);
    try {
      await c.waitForMachines(2);
      const after = await converge(
        c,
        async () => {
          const a = await c.activeUnits();
          const where = new Map(units.map((u) => [u, single(a, u)]));
          if (![...where.values()].every(Boolean)) return undefined;
          if (where.get(`ping.${moving}.service`) === leaving.machineID) return undefined;
          return where as Map<string, string>;
        },
        { timeoutMs: 30_000, message: `ping.${moving} moved off the machine that left` },
      );
      for (let i = 0; i < 3; i++) {
        const ping = `ping.${i}.service`;
        const pong = `pong.${i}.service`;
        assert.equal(after.get(pong), after.get(ping), `pong.${i} follows ping.${i}`);
        if (before.get(ping) === leaving.machineID) assert.notEqual(after.get(ping), leaving.machineID);
        else assert.equal(after.get(ping), before.get(ping), `pair ${i} was not on the leaving machine`);
      }
      // The machine that left gave its units up in systemd too (fleet purged on shutdown).
      const states = await systemdShow(c, leaving, units, ['ActiveState']);
      for (const u of units) assert.notEqual(states.get(u)?.ActiveState, 'active', `${u} on ${leaving.name}`);
    } finally {
      await c.lab.exec(leaving, ['systemctl', 'start', 'fleetd']);
      await c.waitForMachines(3);
    }
    await destroyAll(c, units);
  });

  it('Conflicts: 5 replicas on 3 machines → 3 run on distinct machines, 2 wait and say why', async () => {
    const units = [0, 1, 2, 3, 4].map((i) =>
      dir.write(`conflict.${i}.service`, serviceText('Conflicts=conflict.*.service')),
    );
    for (const u of units) await c.ok(['start', '--no-block', u], cwd());
    assert.deepEqual([...(await unitFiles(c)).keys()], units);
    const placed = await converge(
      c,
      async () => {
        const a = await c.activeUnits();
        const running = units.filter((u) => single(a, u) !== undefined);
        const files = await unitFiles(c);
        const waiting = units.filter((u) => files.get(u)?.target === '-');
        return running.length === 3 && waiting.length === 2 ? { a, running, waiting } : undefined;
      },
      { timeoutMs: 30_000, message: '3 conflict units active, 2 unplaced' },
    );
    const machines = placed.running.map((u) => single(placed.a, u));
    assert.equal(new Set(machines).size, 3, `on distinct machines: ${machines.join(' ')}`);
    // systemd agrees: one conflict.* unit per machine.
    for (const m of c.machines) {
      const active = placed.running.filter((u) => single(placed.a, u) === m.machineID);
      assert.equal(active.length, 1, m.name);
      assert.equal(await systemdState(c, m, active[0] as string), 'active/running');
      for (const u of units.filter((x) => x !== active[0])) {
        assert.notEqual(await systemdState(c, m, u), 'active/running', `${u} also on ${m.name}`);
      }
    }
    const expectedReason = `conflicts with units on every machine: ${placed.running.join(', ')}`;
    for (const u of placed.waiting) {
      const files = await unitFiles(c);
      assert.deepEqual(files.get(u), { unit: u, dstate: 'launched', state: 'inactive', target: '-' });
      assert.equal((await apiUnit(c, u))?.unplacedReason, expectedReason);
    }
    const waiter = placed.waiting[0] as string;
    const r = await c.fleetctl(['start', '--block-attempts=1', waiter], cwd());
    assert.notEqual(r.code, 0);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`Unit ${waiter.replace(/\./g, '\\.')} waiting for a machine: `));
    assert.ok(r.stderr.includes(expectedReason), r.stderr);
    assert.ok(r.stderr.includes(`timed out waiting for unit ${waiter} to report state launched`), r.stderr);
    // Still exactly three after the wait.
    const now = await c.activeUnits();
    assert.deepEqual(
      units.filter((u) => now.has(u)),
      placed.running,
    );
    await destroyAll(c, units);
  });

  it('one-way conflict: A conflicts with B, B declares nothing → never together, either order', async () => {
    const zone = zoneOf('m1');
    const a = dir.write(
      'oneway-a.service',
      serviceText('MachineMetadata=zone=m1\nConflicts=oneway-b.service'),
    );
    const b = dir.write('oneway-b.service', serviceText('MachineMetadata=zone=m1'));
    for (const [first, second] of [
      [a, b],
      [b, a],
    ] as const) {
      assert.match(await c.ok(['start', WAIT, first], cwd()), new RegExp(`^Unit ${first} launched on `));
      await c.ok(['start', '--no-block', second], cwd());
      const reason = await converge(c, async () => (await apiUnit(c, second))?.unplacedReason, {
        timeoutMs: 20_000,
        message: `${second} unplaced`,
      });
      assert.match(reason, new RegExp(`^conflicts with ${first.replace(/\./g, '\\.')} on `));
      assert.equal(single(await c.activeUnits(), first), zone.machineID);
      assert.equal((await unitsOn(c)).has(second), false, `${second} must not run anywhere`);
      assert.notEqual(await systemdState(c, zone, second), 'active/running');
      // Without the first, the second takes the machine.
      await destroyAll(c, [first]);
      await converge(c, async () => single(await c.activeUnits(), second) === zone.machineID, {
        timeoutMs: 20_000,
        message: `${second} placed on ${zone.name} once ${first} is gone`,
      });
      await destroyAll(c, [second]);
    }
  });

  it('Conflicts syntaxes: repeated keys, space-separated, quoted, X-Conflicts — both globs, both ways', async () => {
    const z = 'MachineMetadata=zone=m2';
    const variants = [
      dir.write('multi-alias.service', serviceText(`${z}\nX-Conflicts=mx.*.service my.*.service`)),
      dir.write('multi-quoted.service', serviceText(`${z}\nConflicts="mx.*.service" "my.*.service"`)),
      dir.write(
        'multi-repeated.service',
        serviceText(`${z}\nConflicts=mx.*.service\nConflicts=my.*.service`),
      ),
      dir.write('multi-spaces.service', serviceText(`${z}\nConflicts=mx.*.service  my.*.service`)),
    ];
    const mx1 = dir.write('mx.1.service', serviceText(z));
    const my1 = dir.write('my.1.service', serviceText(z));
    const mx2 = dir.write('mx.2.service', serviceText(z));
    const zone = zoneOf('m2');
    const reasons = async (units: readonly string[]): Promise<string[]> =>
      Promise.all(units.map(async (u) => (await apiUnit(c, u))?.unplacedReason ?? '(placed)'));
    const blockedBy = (unit: string) => (r: string) => r.startsWith(`conflicts with ${unit} on `);

    await c.ok(['start', WAIT, mx1], cwd());
    await c.ok(['start', '--no-block', ...variants], cwd());
    await converge(c, async () => (await reasons(variants)).every(blockedBy(mx1)), {
      timeoutMs: 20_000,
      message: 'every variant blocked by mx.1 (first glob)',
    });
    await c.ok(['start', WAIT, my1], cwd());
    await destroyAll(c, [mx1]);
    await converge(c, async () => (await reasons(variants)).every(blockedBy(my1)), {
      timeoutMs: 20_000,
      message: 'every variant blocked by my.1 (second glob)',
    });
    assert.equal((await unitsOn(c)).size, 1, 'only my.1 runs');
    await destroyAll(c, [my1]);
    await converge(
      c,
      async () => {
        const a = await c.activeUnits();
        return variants.every((v) => single(a, v) === zone.machineID);
      },
      { timeoutMs: 30_000, message: 'every variant runs once nothing conflicts' },
    );
    // The other way: mx.2 declares nothing, but every variant's glob matches it.
    await c.ok(['start', '--no-block', mx2], cwd());
    const reason = await converge(c, async () => (await apiUnit(c, mx2))?.unplacedReason, {
      timeoutMs: 20_000,
      message: 'mx.2 unplaced',
    });
    assert.match(reason, /^conflicts with units on \S.*: /);
    assert.equal(reason.slice(reason.lastIndexOf(': ') + 2), variants.join(', '));
    assert.equal((await unitsOn(c)).has(mx2), false);
    await destroyAll(c, [...variants, mx2]);
  });

  it('Replaces: the replacer takes the machine, the replaced unit moves, bystanders stay', async () => {
    const bystander = dir.write('bystander.service', serviceText());
    const old = dir.write('replace.0.service', serviceText());
    const replacer = dir.write('replace.1.service', serviceText('Replaces=replace.0.service'));
    await c.ok(['start', WAIT, bystander, old], cwd());
    const before = await c.activeUnits();
    const oldMachine = single(before, old) as string;
    const bystanderMachine = single(before, bystander) as string;
    assert.ok(oldMachine && bystanderMachine);

    await c.ok(['start', WAIT, replacer], cwd());
    const after = await converge(
      c,
      async () => {
        const a = await c.activeUnits();
        const moved = single(a, old);
        return single(a, replacer) === oldMachine && moved !== undefined && moved !== oldMachine
          ? a
          : undefined;
      },
      { timeoutMs: 30_000, message: 'replace.1 on replace.0’s machine, replace.0 elsewhere' },
    );
    assert.equal(single(after, bystander), bystanderMachine, 'the bystander did not move');
    const m0 = c.machineByID(oldMachine);
    assert.equal(await systemdState(c, m0, replacer), 'active/running');
    assert.notEqual(await systemdState(c, m0, old), 'active/running');
    assert.equal(await systemdState(c, c.machineByID(single(after, old) as string), old), 'active/running');
    await destroyAll(c, [bystander, old, replacer]);
  });

  it('circular Replaces is refused by submit and start, and nothing of the cycle is stored', async () => {
    const a = dir.write('cyc-a.service', serviceText('Replaces=cyc-b.service'));
    const b = dir.write('cyc-b.service', serviceText('Replaces=cyc-a.service'));
    const cycleError =
      /circular Replaces: cyc-(a|b)\.service replaces cyc-(a|b)\.service replaces cyc-(a|b)\.service/;

    // One at a time: the write that would close the cycle is refused.
    assert.equal(await c.ok(['submit', a], cwd()), '');
    for (const verb of ['submit', 'start']) {
      const r = await c.fleetctl([verb, b], cwd());
      assert.equal(r.code, 1, `${verb}: ${r.stderr}`);
      assert.match(r.stderr, cycleError);
      assert.deepEqual([...(await unitFiles(c)).keys()], [a], `${verb} stored nothing`);
    }
    await destroyAll(c, [a]);

    // Both in one command: refused before anything is written.
    for (const verb of ['submit', 'start']) {
      const r = await c.fleetctl([verb, a, b], cwd());
      assert.equal(r.code, 1, `${verb}: ${r.stderr}`);
      assert.match(r.stderr, cycleError);
      assert.deepEqual([...(await unitFiles(c)).keys()], [], `${verb} of the pair stored nothing`);
    }
  });

  it('MachineID: full ID and 8-character prefix pin a unit; an unknown ID waits with a reason', async () => {
    const pinned = new Map<string, Machine>();
    for (const m of c.machines) {
      pinned.set(dir.write(`pin-full-${m.name}.service`, serviceText(`MachineID=${m.machineID}`)), m);
    }
    const m2 = zoneOf('m2');
    pinned.set(dir.write('pin-short.service', serviceText(`MachineID=${short(m2)}`)), m2);
    const units = [...pinned.keys()];
    const out = await c.ok(['start', WAIT, ...units], cwd());
    for (const [u, m] of pinned) {
      assert.ok(out.includes(`Unit ${u} launched on ${short(m)}.../${m.ip}\n`), out);
    }
    const a = await c.activeUnits();
    for (const [u, m] of pinned) {
      assert.equal(single(a, u), m.machineID, u);
      assert.equal(await systemdState(c, m, u), 'active/running');
    }

    const unknownID = '0123456789abcdef0123456789abcdef';
    const lost = dir.write('pin-unknown.service', serviceText(`MachineID=${unknownID}`));
    const r = await c.fleetctl(['start', '--block-attempts=1', lost], cwd());
    assert.equal(r.code, 1);
    assert.ok(
      r.stderr.includes(`Unit ${lost} waiting for a machine: MachineID=${unknownID} is not a live machine\n`),
      r.stderr,
    );
    assert.deepEqual((await unitFiles(c)).get(lost), {
      unit: lost,
      dstate: 'launched',
      state: 'inactive',
      target: '-',
    });
    assert.equal((await unitsOn(c)).has(lost), false);
    await destroyAll(c, [...units, lost]);
  });

  it('Global: on every machine, one list-units row each, restart restarts, a conflict skips a machine', async () => {
    const hello = dir.write('g-hello.service', serviceText());
    const goodbye = dir.write('g-goodbye.service', serviceText());
    const global = dir.write('global.service', serviceText('Global=true'));
    await c.ok(['start', WAIT, hello, goodbye], cwd());
    assert.equal(await c.ok(['start', WAIT, global], cwd()), `Triggered global unit ${global} start\n`);
    const all = c.machines.map((m) => m.machineID).sort();
    await converge(
      c,
      async () => {
        const a = await c.activeUnits();
        return [...a.values()].flat().length === 5 && JSON.stringify(a.get(global)) === JSON.stringify(all);
      },
      { timeoutMs: 30_000, message: '2 + 3 units active, the global one on every machine' },
    );
    const rows = (await c.rows(['list-units'])).filter((r) => r[0] === global);
    assert.equal(rows.length, 3, 'one list-units row per machine');
    assert.deepEqual((await unitFiles(c)).get(global), {
      unit: global,
      dstate: 'launched',
      state: '-',
      target: 'global',
    });

    const pids = async (): Promise<Map<string, string>> =>
      new Map(
        await Promise.all(
          c.machines.map(
            async (m) =>
              [m.name, (await systemdShow(c, m, [global], ['MainPID'])).get(global)?.MainPID ?? ''] as const,
          ),
        ),
      );
    const before = await pids();
    for (const pid of before.values()) assert.match(pid, /^[1-9]\d*$/);
    assert.equal(await c.ok(['restart', global], cwd()), `Triggered global unit ${global} restart\n`);
    await converge(
      c,
      async () => {
        const now = await pids();
        return [...now].every(([m, pid]) => /^[1-9]\d*$/.test(pid) && pid !== before.get(m));
      },
      { timeoutMs: 30_000, message: 'the global unit restarted (new MainPID) on every machine' },
    );
    await converge(
      c,
      async () => JSON.stringify((await c.activeUnits()).get(global)) === JSON.stringify(all),
      {
        timeoutMs: 20_000,
        message: 'the global unit active everywhere after restart',
      },
    );

    // A global unit that conflicts with a unit on one machine runs on the others.
    const solo = dir.write('solo.service', serviceText());
    const gc = dir.write('global-conflict.service', serviceText('Global=true\nConflicts=solo.service'));
    await c.ok(['start', WAIT, solo], cwd());
    const soloMachine = single(await c.activeUnits(), solo) as string;
    await c.ok(['start', WAIT, gc], cwd());
    const expected = all.filter((id) => id !== soloMachine);
    await converge(c, async () => JSON.stringify((await unitsOn(c)).get(gc)) === JSON.stringify(expected), {
      timeoutMs: 30_000,
      message: 'the conflicting global unit on the two other machines',
    });
    await converge(
      c,
      async () => JSON.stringify((await c.activeUnits()).get(gc)) === JSON.stringify(expected),
      {
        timeoutMs: 20_000,
        message: 'and active there',
      },
    );
    assert.notEqual(await systemdState(c, c.machineByID(soloMachine), gc), 'active/running');
    await destroyAll(c, [hello, goodbye, global, solo, gc]);
  });

  it('MachineMetadata with %i: instances started in reverse order land in their zones; an impossible one fails', async () => {
    dir.write('zoned@.service', serviceText('MachineMetadata=zone=%i'));
    await c.ok(['submit', 'zoned@.service'], cwd());
    const instances = ['zoned@m3.service', 'zoned@m2.service', 'zoned@m1.service'];
    for (const u of instances) {
      const zone = zoneOf(u.slice('zoned@'.length, -'.service'.length));
      assert.equal(
        await c.ok(['start', WAIT, u], cwd()),
        `Unit ${u} launched on ${short(zone)}.../${zone.ip}\n`,
      );
    }
    const rows = await c.rows(['list-units', '--fields=unit,active,machine']);
    assert.deepEqual(
      rows.map((r) => [r[0], r[1], r[2]?.split('/')[0]]),
      [...instances].sort().map((u) => [u, 'active', zoneOf(u.slice(6, -8)).machineID]),
    );

    const r = await c.fleetctl(['start', '--block-attempts=2', 'zoned@invalid.service'], cwd());
    assert.equal(r.code, 1);
    assert.ok(
      r.stderr.includes(
        'Unit zoned@invalid.service waiting for a machine: no machine satisfies MachineMetadata=zone=invalid\n',
      ),
      r.stderr,
    );
    assert.ok(r.stderr.includes('timed out waiting for unit zoned@invalid.service to report state launched'));
    await destroyAll(c, [...instances, 'zoned@invalid.service', 'zoned@.service']);
  });

  it('dynamic metadata (PATCH /fleet/v1/machines) places a waiting unit, and moves it when it changes', async () => {
    const db = dir.write('dyn-db.service', serviceText('MachineMetadata=role=db'));
    await c.ok(['start', '--no-block', db], cwd());
    await converge(
      c,
      async () => (await apiUnit(c, db))?.unplacedReason === 'no machine satisfies MachineMetadata=role=db',
      { timeoutMs: 20_000, message: 'dyn-db waits for a machine with role=db' },
    );
    const m2 = zoneOf('m2');
    const m3 = zoneOf('m3');
    const client = new FleetClient({ endpoint: c.endpoint(zoneOf('m1')) });
    try {
      await client.patchMachineMetadata([
        { op: 'add', path: `/${m2.machineID}/metadata/role`, value: { value: 'db' } },
      ]);
      const listed = await c.rows(['list-machines', '--fields=machine,metadata']);
      assert.deepEqual(
        listed.find((r) => r[0] === m2.machineID),
        [m2.machineID, 'role=db,zone=m2'],
      );
      await converge(c, async () => single(await c.activeUnits(), db) === m2.machineID, {
        timeoutMs: 20_000,
        message: 'dyn-db placed on m2 once m2 has role=db',
      });
      assert.equal(await systemdState(c, m2, db), 'active/running');

      await client.patchMachineMetadata([
        { op: 'remove', path: `/${m2.machineID}/metadata/role` },
        { op: 'add', path: `/${m3.machineID}/metadata/role`, value: { value: 'db' } },
      ]);
      await converge(c, async () => single(await c.activeUnits(), db) === m3.machineID, {
        timeoutMs: 20_000,
        message: 'dyn-db moved to m3 when the role moved',
      });
      await converge(c, async () => (await systemdState(c, m2, db)) !== 'active/running', {
        timeoutMs: 20_000,
        message: 'dyn-db stopped on m2',
      });
      await client.patchMachineMetadata([{ op: 'remove', path: `/${m3.machineID}/metadata/role` }]);
    } finally {
      client.close();
    }
    await destroyAll(c, [db]);
  });
});
