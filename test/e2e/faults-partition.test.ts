import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Machine } from '@fleet/lab';
import { FleetCluster, converge } from './harness.js';
import {
  UnitDir,
  activeByName,
  assertUntouched,
  byMachine,
  convergeExactlyOnce,
  engineLeader,
  hold,
  listedMachines,
  mainPIDs,
  runningInSystemd,
  BOUNDED,
} from './faults-support.js';

/** targets.md R1 (shortened: cut off for 4× agent_ttl, not 5 minutes) and "engine leader killed". */
// A hang must fail the file, not use up CI's time.
describe('faults: a machine cut off from etcd; the engine leader killed', { timeout: 5 * 60_000 }, () => {
  const TTL_MS = 2000;
  const MACHINES = 4;
  let c: FleetCluster;
  let dir: UnitDir;
  // Set by R1, used by the short cut that follows.
  let victim: Machine;
  let onlyThere: string[];
  let expected: Map<string, number | readonly string[]>;
  before(async () => {
    c = await FleetCluster.start({ machines: MACHINES, agentTtl: `${TTL_MS / 1000}s` });
    dir = new UnitDir();
  });
  after(async () => {
    await c?.close();
    dir?.remove();
  });

  it('R1: the leader cut off: its units keep running, moved copies run elsewhere; after the heal one copy each and the machine is back', async () => {
    const units = dir.add(...Array.from({ length: 8 }, (_, i) => ({ name: `r1-u${i + 1}.service` })));
    const [global] = dir.add({ name: 'r1-global.service', global: true });
    await c.ok(['start', BOUNDED, ...units, global as string], { cwd: dir.path });
    expected = new Map<string, number | readonly string[]>(units.map((u) => [u, 1]));
    expected.set(global as string, MACHINES);
    const placed = await convergeExactlyOnce(c, 'r1-', expected);

    // Cut off the engine leader: it is deposed too, and its writes must be refused while a new
    // leader moves its units.
    const perMachine = byMachine(placed);
    victim = await converge(c, () => engineLeader(c), { message: 'an engine leader' });
    // A unit pinned to the victim (MachineID) can run nowhere else: like the global unit, it
    // must run on through the partition and the heal.
    const [pinned] = dir.add({ name: 'r1-pinned.service', machineID: victim.machineID });
    await c.ok(['start', BOUNDED, pinned as string], { cwd: dir.path });
    expected.set(pinned as string, [victim.name]);
    const placedAll = await convergeExactlyOnce(c, 'r1-', expected);
    const victimUnits = byMachine(placedAll).get(victim.name) ?? [];
    onlyThere = [global as string, pinned as string];
    const moved = victimUnits.filter((u) => !onlyThere.includes(u));
    assert.ok(moved.length > 0, `${victim.name} runs no movable unit: ${JSON.stringify([...placed])}`);
    const pids = await mainPIDs(c, victim, victimUnits);
    const others = c.machines.filter((m) => m !== victim);
    const otherPids = new Map<Machine, Map<string, number>>();
    for (const m of others) otherPids.set(m, await mainPIDs(c, m, perMachine.get(m.name) ?? []));

    const cutAt = Date.now();
    await c.lab.partition(victim);
    // The cluster forgets the machine and runs its units elsewhere…
    await converge(
      c,
      async () => {
        const machines = await listedMachines(c);
        if (machines.includes(victim.name)) throw new Error(`${victim.name} still listed`);
        const listed = await activeByName(c);
        for (const u of moved) {
          const where = listed.get(u) ?? [];
          if (where.length !== 1 || where[0] === victim.name)
            throw new Error(`${u} active on [${where.join(' ')}]`);
        }
        const running = await runningInSystemd(c, 'r1-');
        for (const u of moved) {
          if ((running.get(u) ?? []).length !== 2)
            throw new Error(`${u} runs on [${running.get(u)?.join(' ')}]`);
        }
        return true;
      },
      { timeoutMs: 30_000, message: `units of the cut-off ${victim.name} running elsewhere` },
    );
    // A user on the cut-off machine gets a clear one-line error, not a hang or a stack trace.
    for (const args of [['list-units'], ['start', 'r1-u1.service']]) {
      const r = await c.fleetctl(args, { machine: victim });
      assert.notEqual(r.code, 0, `fleetctl ${args.join(' ')} on the cut-off machine`);
      assert.match(r.stderr, /^[^\n]*cannot reach etcd[^\n]*\n?$/, `fleetctl ${args.join(' ')}: ${r.stderr}`);
    }
    // The new leader places a unit started meanwhile (elsewhere, once).
    const [during] = dir.add({ name: 'r1-during.service' });
    await c.ok(['start', BOUNDED, during as string], { cwd: dir.path, machine: others[0] as Machine });
    expected.set(during as string, 1);
    // …while the cut-off machine keeps running its copies, well past the TTL.
    await hold(Math.max(0, cutAt + 4 * TTL_MS - Date.now()));
    await assertUntouched(c, victim, pids, 'while cut off');

    await c.lab.heal(victim);
    await converge(c, async () => (await listedMachines(c)).includes(victim.name), {
      timeoutMs: 30_000,
      message: `${victim.name} registered again after the heal`,
    });
    const afterHeal = await convergeExactlyOnce(c, 'r1-', expected, {
      timeoutMs: 30_000,
      message: 'exactly one copy of each unit after the heal',
    });
    for (const u of moved) {
      assert.notEqual(afterHeal.get(u)?.[0], victim.name, `${u} moved back to ${victim.name}`);
    }
    // The units that can run only there never stopped in the healed machine; units elsewhere
    // were never touched.
    const stayed = new Map([...pids].filter(([u]) => onlyThere.includes(u)));
    assert.equal(stayed.size, 2);
    await assertUntouched(c, victim, stayed, 'after the heal');
    for (const [m, p] of otherPids) await assertUntouched(c, m, p, `while ${victim.name} was cut off`);
  });

  it('a cut just past agent_ttl, healed before etcd3 alone notices the lease lost: what can run only there never stops', async (t) => {
    // New units go to the least-loaded machine: the one R1 cut off.
    const fresh = dir.add({ name: 'r1-v1.service' }, { name: 'r1-v2.service' });
    await c.ok(['start', BOUNDED, ...fresh], { cwd: dir.path });
    for (const u of fresh) expected.set(u, 1);
    const before = byMachine(await convergeExactlyOnce(c, 'r1-', expected)).get(victim.name) ?? [];
    const pids = await mainPIDs(c, victim, onlyThere);
    await c.lab.partition(victim);
    // Its lease expires in etcd (and the engine moves its units), but the etcd3 client alone
    // would report the loss only after 2 × agent_ttl.
    await hold(1.75 * TTL_MS);
    await c.lab.heal(victim);
    await converge(c, async () => (await listedMachines(c)).includes(victim.name), {
      timeoutMs: 30_000,
      message: `${victim.name} registered again after the short cut`,
    });
    const after = await convergeExactlyOnce(c, 'r1-', expected, {
      message: 'exactly one copy of each unit after the short cut',
    });
    t.diagnostic(
      `${victim.name} ran ${before.join(' ')}; after: ${byMachine(after).get(victim.name)?.join(' ')}`,
    );
    await assertUntouched(c, victim, pids, 'after the short cut');
  });

  it('engine leader killed: a new leader places a newly started unit', async () => {
    const old = await converge(c, () => engineLeader(c), { message: 'an engine leader' });
    await c.lab.kill(old);
    const via = c.machines.find((m) => m.running && !m.partitioned) as Machine;
    const [unit] = dir.add({ name: 'r1-after-leader.service' });
    await c.ok(['start', BOUNDED, '--no-block', unit as string], { cwd: dir.path, machine: via });
    const where = await converge(
      c,
      async () => {
        const running = await runningInSystemd(c, 'r1-after-leader');
        const listed = (await activeByName(c, via)).get(unit as string) ?? [];
        const r = running.get(unit as string) ?? [];
        return r.length === 1 && listed.join() === r.join() ? r[0] : undefined;
      },
      { timeoutMs: 30_000, message: `${unit} placed by a new leader` },
    );
    assert.notEqual(where, old.name);
    const now = await engineLeader(c);
    assert.ok(now && now !== old, `leader after the kill: ${now?.name}`);
  });
});
