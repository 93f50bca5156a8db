import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Machine } from '@fleet/lab';
import { FleetCluster } from './harness.js';
import { UnitDir, convergeExactlyOnce, hold, BOUNDED } from './faults-support.js';

/** A small seedable PRNG (mulberry32): the same seed replays the same chaos. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = Number(process.env['CHAOS_SEED'] ?? 20240611);
const EVENTS = Number(process.env['CHAOS_EVENTS'] ?? 50);
const MACHINES = 5;
/** At most this many machines are down or cut off at once (the rest must be able to take the units). */
const MAX_UNHEALTHY = 2;

type Kind =
  'kill' | 'boot' | 'reboot' | 'partition' | 'heal' | 'fleetd-crash' | 'fleetd-handover' | 'fleetd-stop';

/** targets.md R5, scaled for CI: random kills, reboots, partitions and fleetd restarts across 5 machines. */
// A hang must fail the file, not use up CI's time.
describe('faults: chaos', { timeout: 10 * 60_000 }, () => {
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

  it(`R5: ${EVENTS} random events (CHAOS_SEED=${SEED}), then every launched unit runs exactly once`, async (t) => {
    const normal = dir.add(...Array.from({ length: 10 }, (_, i) => ({ name: `r5-n${i + 1}.service` })));
    const conflicting = dir.add(
      ...Array.from({ length: 4 }, (_, i) => ({ name: `r5-c${i + 1}.service`, conflicts: 'r5-c*.service' })),
    );
    const globals = dir.add({ name: 'r5-g1.service', global: true }, { name: 'r5-g2.service', global: true });
    const pinnedTo = c.machines[0] as Machine;
    const pinned = dir.add({ name: 'r5-p1.service', machineID: pinnedTo.machineID });
    await c.ok(['start', BOUNDED, ...normal, ...conflicting, ...globals, ...pinned], { cwd: dir.path });
    const expected = new Map<string, number | readonly string[]>([
      ...normal.map((u) => [u, 1] as const),
      ...conflicting.map((u) => [u, 1] as const),
      ...globals.map((u) => [u, MACHINES] as const),
      ...pinned.map((u) => [u, [pinnedTo.name]] as const),
    ]);
    await convergeExactlyOnce(c, 'r5-', expected);

    const random = prng(SEED);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    const down = (m: Machine): boolean => !m.running;
    const unhealthy = (): number => c.machines.filter((m) => down(m) || m.partitioned).length;
    const log: string[] = [];
    // A user keeps working meanwhile: stops and starts units through whichever fleetd is up.
    // unit → the desired state last set by a command that succeeded; a failed command may or
    // may not have been applied, so its unit's expectation is read back from the cluster.
    const userSet = new Map<string, 'launched' | 'loaded'>(normal.map((u) => [u, 'launched']));
    const ambiguous = new Set<string>();
    for (let i = 0; i < EVENTS; i++) {
      const kinds: Kind[] = [];
      const healthyNow = c.machines.filter((m) => m.running && !m.partitioned);
      if (unhealthy() < MAX_UNHEALTHY) kinds.push('kill', 'partition', 'reboot');
      if (c.machines.some(down)) kinds.push('boot', 'boot');
      if (c.machines.some((m) => m.partitioned)) kinds.push('heal', 'heal');
      kinds.push('fleetd-crash', 'fleetd-handover', 'fleetd-stop');
      const kind = pick(kinds);
      let target: Machine;
      switch (kind) {
        case 'kill':
          target = pick(healthyNow);
          await c.lab.kill(target);
          break;
        case 'boot':
          target = pick(c.machines.filter(down));
          await c.lab.restart(target);
          break;
        case 'reboot':
          target = pick(healthyNow);
          await c.lab.restart(target);
          break;
        case 'partition':
          target = pick(healthyNow);
          await c.lab.partition(target);
          break;
        case 'heal':
          target = pick(c.machines.filter((m) => m.partitioned));
          await c.lab.heal(target);
          break;
        default: {
          target = pick(c.machines.filter((m) => m.running));
          const signal =
            kind === 'fleetd-crash' ? 'SIGKILL' : kind === 'fleetd-handover' ? 'SIGUSR2' : 'SIGTERM';
          await c.lab.exec(target, ['systemctl', 'kill', '-s', signal, 'fleetd.service']);
        }
      }
      const pause = Math.round(200 + random() * 2300);
      log.push(`${i + 1}. ${kind} ${target.name}, hold ${pause} ms`);
      await hold(pause);
      const unit = pick(normal);
      const via = pick(c.machines.filter((m) => m.running && !m.partitioned));
      const next = userSet.get(unit) === 'loaded' ? 'launched' : 'loaded';
      const r = await c.fleetctl([next === 'loaded' ? 'stop' : 'start', '--no-block', unit], {
        machine: via,
      });
      if (r.code === 0) {
        userSet.set(unit, next);
        ambiguous.delete(unit);
      } else ambiguous.add(unit);
      log.push(
        `   user: ${next === 'loaded' ? 'stop' : 'start'} ${unit} via ${via.name}: exit ${r.code}${r.code === 0 ? '' : ` ${r.stderr.trim()}`}`,
      );
    }
    t.diagnostic(`events:\n${log.join('\n')}`);

    for (const m of c.machines) {
      if (m.partitioned) await c.lab.heal(m);
      if (!m.running) await c.lab.restart(m);
    }
    await c.waitForMachines(MACHINES, 60_000);
    // No update the user saw succeed is lost; units stopped by the user must not run anywhere.
    const dstate = new Map(
      (await c.rows(['list-unit-files', '--fields=unit,dstate'])).map(([u, d]) => [u as string, d as string]),
    );
    for (const u of normal) {
      const want = ambiguous.has(u) ? dstate.get(u) : userSet.get(u);
      assert.equal(dstate.get(u), want, `${u}: desired state after the chaos`);
      if (want === 'launched') expected.set(u, 1);
      else expected.delete(u);
    }
    const final = await convergeExactlyOnce(c, 'r5-', expected, {
      timeoutMs: 90_000,
      message: `every launched unit exactly once after the chaos (CHAOS_SEED=${SEED})\n${log.join('\n')}`,
    });
    const conflictMachines = conflicting.map((u) => final.get(u)?.[0]);
    assert.equal(
      new Set(conflictMachines).size,
      conflicting.length,
      `conflicting units share a machine: ${conflictMachines.join(' ')}`,
    );
  });
});
