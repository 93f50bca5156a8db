/**
 * The engine alone against a real etcd, with simulated machines that hold
 * real leases but run no agents (presences only), and the unit mix of P6:
 *
 * - P6: placements committed per second at 10,000 units × 1,000 machines
 *   (a cold leader with every unit launched and none placed);
 * - P7: how the cost of a placement decision grows from 100 units × 10
 *   machines to 100,000 units × 1,000 machines, timed on the engine's own
 *   snapshot of etcd.
 *
 * Without agents nothing but the engine writes while it places, so this is
 * the engine's throughput; scale.ts measures P6 again with 1,000 agents
 * reacting to the placements.
 */
import { join } from 'node:path';
import { EtcdKv, Registry } from '@fleet/registry';
import { coldPlacement, timeDecide, type ColdPlacement, type DecideTiming } from '../lib/engine-run.js';
import { countKeys, startEtcd, walFsync } from '../lib/etcd.js';
import { metricResult, step, type BenchContext, type Suite } from '../lib/report.js';
import { SIM_TTL_SECONDS, SimMachines, simMachines } from '../lib/sim.js';
import { workload, writeUnits } from '../lib/workload.js';

interface Size {
  readonly units: number;
  readonly machines: number;
}

interface Point extends Size {
  readonly decide: DecideTiming;
  readonly colds: readonly Omit<ColdPlacement, 'engine'>[];
  readonly scheduleKeys: number;
  readonly writeSeconds: number;
  readonly fsync: Awaited<ReturnType<typeof walFsync>>;
  readonly simReadySeconds: number;
}

export const placementSuite: Suite = {
  name: 'placement: the engine on a real etcd, 100 × 10 → 100,000 units × 1,000 simulated machines',
  ids: ['P6', 'P7'],
  run,
};

const SMALL: Size = { units: 100, machines: 10 };
const P6_SIZE: Size = { units: 10_000, machines: 1_000 };
const LARGE: Size = { units: 100_000, machines: 1_000 };

/** Boots etcd and presences, writes the units, and places them `repeats` times with a fresh leader. */
async function measure(ctx: BenchContext, size: Size, repeats: number): Promise<Point> {
  const label = `${size.units.toLocaleString('en-US')} × ${size.machines.toLocaleString('en-US')}`;
  const etcd = await startEtcd();
  const closeEtcd = ctx.defer(() => etcd.close());
  let sims: SimMachines | undefined;
  const closeSims = ctx.defer(() => sims?.close());
  const kv = new EtcdKv({ endpoints: [etcd.endpoint], requestTimeoutMs: 5000 });
  const registry = new Registry(kv);
  try {
    sims = await SimMachines.start({
      endpoints: [etcd.endpoint],
      machines: simMachines(size.machines),
      ttlSeconds: SIM_TTL_SECONDS,
      agents: false,
      clients: Math.max(1, Math.ceil(size.machines / 50)),
      stateDir: join(ctx.tmpDir, 'sim-state'),
    });
    const w0 = performance.now();
    await writeUnits(registry, workload(size.units), 'launched');
    const writeSeconds = (performance.now() - w0) / 1000;
    ctx.log(
      `  ${label}: ${size.machines} machines up in ${(sims.readyMs / 1000).toFixed(1)} s, ` +
        `${size.units} units written in ${writeSeconds.toFixed(1)} s`,
    );
    const colds: Array<Omit<ColdPlacement, 'engine'>> = [];
    let decide: DecideTiming | undefined;
    let scheduleKeys = 0;
    for (let rep = 0; rep < repeats; rep++) {
      const { engine, ...cold } = await coldPlacement(registry, `bench-engine-${rep}`);
      try {
        colds.push(cold);
        ctx.log(
          `  ${label} rep ${rep + 1}: ${cold.placed} placed, ${cold.unplaced} unplaced; leader→committed ` +
            `${cold.leaderToDoneMs.toFixed(0)} ms (reconcile ${cold.reconcileMs.toFixed(0)} ms)`,
        );
        if (rep === repeats - 1) {
          scheduleKeys = await countKeys(kv, registry.keys.schedulePrefix);
          const samples = size.units >= 100_000 ? 5 : size.units >= 10_000 ? 9 : 31;
          decide = timeDecide(engine, { samples });
          ctx.log(`  ${label}: decide ${decide.cpuUsPerUnit.toFixed(2)} µs CPU per unit`);
        }
      } finally {
        await engine.stop();
      }
      if (rep < repeats - 1) {
        await kv.txn(
          [],
          [
            { type: 'deletePrefix', prefix: registry.keys.schedulePrefix },
            { type: 'deletePrefix', prefix: registry.keys.unplacedPrefix },
          ],
        );
      }
    }
    return {
      ...size,
      decide: decide as DecideTiming,
      colds,
      scheduleKeys,
      writeSeconds,
      fsync: await walFsync(etcd.metricsUrl),
      simReadySeconds: Math.round(sims.readyMs / 100) / 10,
    };
  } finally {
    await kv.close();
    await closeSims();
    await closeEtcd();
  }
}

async function run(ctx: BenchContext): Promise<void> {
  const points = new Map<Size, Point>();
  const get = async (size: Size, repeats: number): Promise<Point> => {
    let p = points.get(size);
    if (!p) points.set(size, (p = await measure(ctx, size, repeats)));
    return p;
  };

  await step(ctx, ['P6'], 'P6 placement throughput, engine alone', async () => {
    const p = await get(P6_SIZE, ctx.quick ? 2 : 5);
    ctx.record(
      metricResult(
        'P6',
        'placements/s, 10,000 units × 1,000 machines (engine alone)',
        '/s',
        p.colds.map((c) => c.placed / (c.leaderToDoneMs / 1000)),
        { text: '≥ 5,000/s', op: '>=', value: 5000 },
        {
          notes: [
            'a new leader with 10,000 launched, unplaced units: from winning leadership to every placement committed (fenced txns of ≤ 127 ops) and seen by its own watch — includes reading units, bodies and machines into its caches',
            `machines are presences under real leases (agent_ttl ${SIM_TTL_SECONDS} s), no agents: nothing else writes`,
          ],
          details: {
            placed: p.colds.map((c) => c.placed),
            unplaced: p.colds.map((c) => c.unplaced),
            scheduleKeysAfter: p.scheduleKeys,
            leaderToCommittedMs: p.colds.map((c) => Math.round(c.leaderToDoneMs)),
            reconcileMs: p.colds.map((c) => Math.round(c.reconcileMs)),
            placementsPerSecondReconcileOnly: p.colds.map((c) =>
              Math.round(c.placed / (c.reconcileMs / 1000)),
            ),
            decideCpuMs: round((p.decide.cpuUsPerUnit * p.decide.units) / 1000),
            snapshotCpuMs: round((p.decide.snapshotCpuUsPerUnit * p.decide.units) / 1000),
            etcdWalFsync: p.fsync,
            simulatedMachinesReadySeconds: p.simReadySeconds,
          },
        },
      ),
    );
  });

  await step(ctx, ['P7'], 'P7 placement cost growth', async () => {
    const small = await get(SMALL, 1);
    const mid = await get(P6_SIZE, 1);
    const large = await get(LARGE, 1);
    const all = [small, mid, large];
    const ratio = large.decide.cpuUsPerUnit / small.decide.cpuUsPerUnit;
    const coldUs = (p: Point): number => {
      const c = p.colds[p.colds.length - 1] as Omit<ColdPlacement, 'engine'>;
      return (c.leaderToDoneMs * 1000) / Math.max(1, c.placed);
    };
    ctx.record(
      metricResult(
        'P7',
        'per-decision time, 100,000 × 1,000 vs 100 × 10 (engine decide, CPU)',
        '×',
        [ratio],
        { text: 'per-decision time ≤ 2×', op: '<=', value: 2 },
        {
          notes: [
            "decide() timed on the real engine's snapshot of etcd as a cold decision (nothing placed): median CPU µs per unit, ratio of the largest to the smallest size",
            'each size: fresh etcd, presences under real leases, the P6 unit mix, the real Engine placing everything as a cold leader first',
          ],
          details: {
            points: all.map((p) => ({
              units: p.units,
              machines: p.machines,
              placed: (p.colds[p.colds.length - 1] as Omit<ColdPlacement, 'engine'>).placed,
              scheduleKeys: p.scheduleKeys,
              unitsWrittenSeconds: round(p.writeSeconds),
              decideCpuUsPerUnit: round(p.decide.cpuUsPerUnit),
              decideWallUsPerUnit: round(p.decide.wallUsPerUnit),
              snapshotCpuUsPerUnit: round(p.decide.snapshotCpuUsPerUnit),
              coldLeaderMs: Math.round(
                (p.colds[p.colds.length - 1] as Omit<ColdPlacement, 'engine'>).leaderToDoneMs,
              ),
              coldLeaderUsPerPlacement: round(coldUs(p)),
              etcdWalFsync: p.fsync,
            })),
            ratios: {
              decideCpu: round(ratio),
              decideCpu10kVs100: round(mid.decide.cpuUsPerUnit / small.decide.cpuUsPerUnit),
              decideWall: round(large.decide.wallUsPerUnit / small.decide.wallUsPerUnit),
              snapshotPlusDecideCpu: round(
                (large.decide.cpuUsPerUnit + large.decide.snapshotCpuUsPerUnit) /
                  (small.decide.cpuUsPerUnit + small.decide.snapshotCpuUsPerUnit),
              ),
              coldLeaderPerPlacement: round(coldUs(large) / coldUs(small)),
            },
          },
        },
      ),
    );
  });
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
