/**
 * Real-systemd scenarios on 3-machine fleet-lab clusters, fleetd under
 * systemd in each machine, our fleetctl against a machine's API socket, and
 * systemd's own reports (D-Bus signals, timestamped as they arrive) as the
 * finish line:
 *
 * - P1 start latency, P2 100 units up and down, P8 etcd writes per unit
 *   lifecycle, P4 graceful fleetd stop, P3 machine SIGKILLed, P5 engine leader
 *   killed — with fleetd's default agent_ttl (5 s);
 * - P3 and P5 again with a 2 s agent_ttl.
 */
import { parseUnitFile } from '@fleet/core';
import type { Machine } from '@fleet/lab';
import { BenchCluster, UNIT_TEXT } from '../lib/fleet-lab.js';
import { diffCounters, readCounters, settle, watchWrites, type EtcdCounters } from '../lib/etcd.js';
import { metricResult, step, type BenchContext, type Suite } from '../lib/report.js';
import { median, sleep, summarize } from '../lib/stats.js';

export const labSuite: Suite = {
  name: 'lab: 3 machines, real systemd, agent_ttl 5 s',
  ids: ['P1', 'P2', 'P8', 'P4', 'P3', 'P5'],
  run: (ctx) => withCluster(ctx, 5, 'l', runDefault),
};

export const shortTtlSuite: Suite = {
  name: 'lab: 3 machines, real systemd, agent_ttl 2 s',
  ids: ['P3', 'P5'],
  run: (ctx) => withCluster(ctx, 2, 's', runShortTtl),
};

async function withCluster(
  ctx: BenchContext,
  ttl: number,
  label: string,
  body: (ctx: BenchContext, bc: BenchCluster) => Promise<void>,
): Promise<void> {
  const t0 = Date.now();
  const bc = await BenchCluster.start(ctx, { machines: 3, agentTtlSeconds: ttl, label });
  const close = ctx.defer(() => bc.close());
  ctx.log(
    `cluster ${bc.lab.name} up with fleetd in 3 machines in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  try {
    await body(ctx, bc);
  } finally {
    await close();
  }
}

async function runDefault(ctx: BenchContext, bc: BenchCluster): Promise<void> {
  await step(ctx, ['P1'], 'P1 start latency', () => startLatency(ctx, bc));
  await step(ctx, ['P2'], 'P2 100 units up and down', () => hundredUnits(ctx, bc));
  await step(ctx, ['P8'], 'P8 etcd writes per unit lifecycle', () => lifecycleWrites(ctx, bc));
  await step(ctx, ['P4'], 'P4 graceful fleetd stop', () => gracefulStop(ctx, bc));
  await step(ctx, ['P3'], 'P3 machine SIGKILLed (agent_ttl 5 s)', () => machineKilled(ctx, bc));
  await step(ctx, ['P5'], 'P5 engine leader killed (agent_ttl 5 s)', () => leaderKilled(ctx, bc));
}

async function runShortTtl(ctx: BenchContext, bc: BenchCluster): Promise<void> {
  await step(ctx, ['P3'], 'P3 machine SIGKILLed (agent_ttl 2 s)', () => machineKilled(ctx, bc));
  await step(ctx, ['P5'], 'P5 engine leader killed (agent_ttl 2 s)', () => leaderKilled(ctx, bc));
}

const UNIT_OPTIONS = parseUnitFile(UNIT_TEXT);

/** Runs `fn` over `items` with at most `limit` in flight. */
async function inParallel<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

const names = (prefix: string, n: number): string[] =>
  Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(3, '0')}.service`);

/** P1: `fleetctl start` of one new unit (submit + start) → systemd reports it active. */
async function startLatency(ctx: BenchContext, bc: BenchCluster): Promise<void> {
  const warmups = 2;
  const n = ctx.quick ? 12 : 40;
  const latencies: number[] = [];
  const returns: number[] = [];
  const placedOn = new Map<string, number>();
  for (let i = 0; i < warmups + n; i++) {
    const unit = `p1-${i}.service`;
    bc.writeUnits([unit]);
    bc.tracker.watch([unit]);
    await sleep(100); // let the observers take their baseline of the new name
    const t0 = performance.now();
    const r = await bc.ok(['start', unit]);
    const at = await bc.tracker.waitFor(
      () => [...bc.tracker.activeOn(unit).entries()][0],
      20_000,
      `${unit} active`,
    );
    if (i >= warmups) {
      latencies.push(at[1] - t0);
      returns.push(r.ms);
      placedOn.set(at[0], (placedOn.get(at[0]) ?? 0) + 1);
    }
    await bc.destroyUnits([unit]);
  }
  // The cluster's share: one PUT that creates the unit launched (no client round trips before it).
  // Split into the engine's part (request → placement committed, seen by an etcd
  // watch) and the agent's (placement → systemd reports it active).
  const api: number[] = [];
  const toPlaced: number[] = [];
  const placedToActive: number[] = [];
  const client = bc.client(bc.firstRunning());
  for (let i = 0; i < (ctx.quick ? 6 : 15); i++) {
    const unit = `p1-api-${i}.service`;
    bc.tracker.watch([unit]);
    const placement = await bc.watchPlacement(unit);
    await sleep(100);
    try {
      const t0 = performance.now();
      await client.createUnit(unit, UNIT_OPTIONS, 'launched');
      const at = await bc.tracker.waitFor(
        () => [...bc.tracker.activeOn(unit).values()][0],
        20_000,
        `${unit} active`,
      );
      const placedAt = await placement.placed;
      api.push(at - t0);
      toPlaced.push(placedAt - t0);
      placedToActive.push(at - placedAt);
    } finally {
      await placement.close();
    }
    await bc.destroyUnits([unit]);
  }
  const details = {
    apiCreateLaunchedToActiveMs: {
      median: round(median(api)),
      p99: round(summarize(api).p99),
      n: api.length,
    },
    apiCreateToPlacedMs: round(median(toPlaced)),
    placedToActiveMs: round(median(placedToActive)),
    fleetctlStartReturnedMs: { median: round(median(returns)), p99: round(summarize(returns).p99) },
    placements: Object.fromEntries(placedOn),
    warmupsDiscarded: warmups,
  };
  const notes = [
    'our fleetctl start (blocking, as a user runs it) of a unit file not yet submitted: from the call to the PropertiesChanged signal in which systemd reports ActiveState=active',
    'one unit at a time; each destroyed and stopped before the next',
  ];
  ctx.record(
    metricResult(
      'P1',
      'fleetctl start → systemd active, p50',
      'ms',
      latencies,
      { text: 'p50 ≤ 100 ms', op: '<=', value: 100 },
      { notes, details },
    ),
  );
  ctx.record(
    metricResult(
      'P1',
      'fleetctl start → systemd active, p99',
      'ms',
      latencies,
      { text: 'p99 ≤ 250 ms', op: '<=', value: 250 },
      { statistic: 'p99', notes: ['same samples as the p50 row'] },
    ),
  );
}

/** P2: 100 units started at once → all active; then all destroyed → all stopped. */
async function hundredUnits(ctx: BenchContext, bc: BenchCluster): Promise<void> {
  const reps = ctx.quick ? 1 : 3;
  const up: number[] = [];
  const down: number[] = [];
  const commands: Array<{ start: number; destroy: number }> = [];
  const spread: Array<Record<string, number>> = [];
  for (let rep = 0; rep < reps; rep++) {
    const units = names(`p2-${rep}`, 100);
    bc.writeUnits(units);
    bc.tracker.watch(units);
    await sleep(300);
    const t0 = performance.now();
    const start = await bc.ok(['start', '--no-block', ...units]);
    const upAt = await bc.tracker.waitFor(() => bc.tracker.allActiveAt(units), 60_000, '100 units active');
    up.push(upAt - t0);
    const perMachine: Record<string, number> = {};
    for (const u of units)
      for (const m of bc.tracker.activeOn(u).keys()) perMachine[m] = (perMachine[m] ?? 0) + 1;
    spread.push(perMachine);
    await sleep(500);
    const t1 = performance.now();
    const destroy = await bc.ok(['destroy', ...units]);
    const downAt = await bc.tracker.waitFor(
      () => bc.tracker.allStoppedAt(units),
      300_000,
      '100 units stopped',
    );
    down.push(downAt - t1);
    commands.push({ start: Math.round(start.ms), destroy: Math.round(destroy.ms) });
    bc.tracker.unwatch(units);
    ctx.log(
      `  rep ${rep + 1}: up ${(up[rep] as number).toFixed(0)} ms, down ${(down[rep] as number).toFixed(0)} ms`,
    );
  }
  // The same through the API, 16 requests in flight: what the cluster does when the client is not the bound.
  const apiUp: number[] = [];
  const apiDown: number[] = [];
  const client = bc.client(bc.firstRunning());
  for (let rep = 0; rep < reps; rep++) {
    const units = names(`p2-api-${rep}`, 100);
    bc.tracker.watch(units);
    await sleep(300);
    const t0 = performance.now();
    await inParallel(units, 16, (u) => client.createUnit(u, UNIT_OPTIONS, 'launched'));
    const upAt = await bc.tracker.waitFor(() => bc.tracker.allActiveAt(units), 60_000, '100 units active');
    apiUp.push(upAt - t0);
    await sleep(500);
    const t1 = performance.now();
    await inParallel(units, 16, (u) => client.destroyUnit(u));
    const downAt = await bc.tracker.waitFor(
      () => bc.tracker.allStoppedAt(units),
      300_000,
      '100 units stopped',
    );
    apiDown.push(downAt - t1);
    bc.tracker.unwatch(units);
    ctx.log(
      `  API rep ${rep + 1}: up ${(apiUp[rep] as number).toFixed(0)} ms, down ${(apiDown[rep] as number).toFixed(0)} ms`,
    );
  }
  const notes = [
    '`fleetctl start --no-block` of 100 new unit files (submit + start), then `fleetctl destroy` of all 100',
  ];
  ctx.record(
    metricResult(
      'P2',
      '100 units on 3 machines: start → all active',
      'ms',
      up,
      { text: '≤ 3 s to running', op: '<=', value: 3000 },
      {
        notes: [...notes, 'until systemd reports the last of them active'],
        details: { fleetctlMs: commands, perMachine: spread },
      },
    ),
  );
  ctx.record(
    metricResult(
      'P2',
      '100 units: API, 16 PUTs in flight → all active',
      'ms',
      apiUp,
      { text: '≤ 3 s to running', op: '<=', value: 3000 },
      {
        notes: [
          "the cluster's share: each unit created launched by one PUT (FleetClient), 16 requests in flight; fleetctl sends 4 requests per unit one after another",
        ],
      },
    ),
  );
  ctx.record(
    metricResult(
      'P2',
      '100 units: API, 16 DELETEs in flight → all stopped',
      'ms',
      apiDown,
      { text: '≤ 3 s to stopped', op: '<=', value: 3000 },
      {
        notes: ["the cluster's share of destroy"],
      },
    ),
  );
  ctx.record(
    metricResult(
      'P2',
      '100 units on 3 machines: destroy → all stopped',
      'ms',
      down,
      { text: '≤ 3 s to stopped', op: '<=', value: 3000 },
      {
        notes: [...notes, 'until systemd reports the last of them inactive (the process gone)'],
      },
    ),
  );
}

/** P8: etcd writes (raft proposals) for submit → start → stop → destroy of one unit. */
async function lifecycleWrites(ctx: BenchContext, bc: BenchCluster): Promise<void> {
  const reps = ctx.quick ? 3 : 8;
  const totals: number[] = [];
  const phases: Record<string, number[]> = { submit: [], start: [], stop: [], destroy: [] };
  const writers: Record<string, Record<string, number>> = {};
  const background: number[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const unit = `p8-${rep}.service`;
    bc.writeUnits([unit]);
    bc.tracker.watch([unit]);
    // Background: anything written while nothing happens would be counted against the lifecycle.
    const q = await settle(bc.metricsUrl, { quietMs: 1000, timeoutMs: 15_000 });
    await sleep(1000);
    const q2 = await readCounters(bc.metricsUrl);
    background.push(q2.proposals - q.counters.proposals);
    let before = q2;
    let total = 0;
    const phase = async (name: string, run: () => Promise<void>): Promise<void> => {
      const rev = (await bc.kv.currentRevision()) + 1;
      const w = watchWrites(bc.kv, bc.registry.keys.prefix, rev);
      await run();
      const after = (await settle(bc.metricsUrl, { quietMs: 750, timeoutMs: 15_000 })).counters;
      const d: EtcdCounters = diffCounters(before, after);
      before = after;
      (phases[name] as number[]).push(d.proposals);
      total += d.proposals;
      const byWriter = await w.stop();
      const acc = (writers[name] ??= {});
      for (const [k, v] of Object.entries(byWriter)) acc[k] = (acc[k] ?? 0) + v;
    };
    await phase('submit', async () => {
      await bc.ok(['submit', unit]);
    });
    await phase('start', async () => {
      await bc.ok(['start', '--no-block', unit]);
      await bc.tracker.waitFor(
        () => (bc.tracker.activeOn(unit).size > 0 ? true : undefined),
        20_000,
        'active',
      );
    });
    await phase('stop', async () => {
      await bc.ok(['stop', '--no-block', unit]);
      await bc.tracker.waitFor(
        () => (bc.tracker.stoppedEverywhere(unit) ? true : undefined),
        20_000,
        'stopped',
      );
    });
    await phase('destroy', async () => {
      await bc.ok(['destroy', unit]);
      await bc.tracker.waitFor(
        () => (bc.tracker.stoppedEverywhere(unit) ? true : undefined),
        20_000,
        'stopped',
      );
    });
    totals.push(total);
    bc.tracker.unwatch([unit]);
  }
  const perPhase = Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, median(v)]));
  const revisionsPerPhase = Object.fromEntries(
    Object.entries(writers).map(([k, v]) => [
      k,
      Object.fromEntries(Object.entries(v).map(([w, n]) => [w, Math.round((n / reps) * 10) / 10])),
    ]),
  );
  ctx.record(
    metricResult(
      'P8',
      'etcd writes per unit lifecycle (submit → start → stop → destroy)',
      'writes',
      totals,
      { text: '≤ 4', op: '<=', value: 4 },
      {
        notes: [
          "write = raft proposal committed, read from etcd_server_proposals_committed_total on the cluster's etcd; each phase ends when systemd reports the unit's new state and etcd has been quiet for 750 ms",
          'fleetctl submit, start --no-block, stop --no-block, destroy; fleet measured here: ≈ 20 (submit 3, start 7, stop 6, destroy 4)',
        ],
        details: {
          perPhaseMedian: perPhase,
          perPhaseSamples: phases,
          revisionsByWriterPerLifecycle: revisionsPerPhase,
          backgroundProposalsPerSecondBefore: background,
        },
      },
    ),
  );
}

/** Units per machine for P3/P4. */
const UNITS_FOR_FAILOVER = 15;

/**
 * Starts units, then picks the machine to take away: the non-leader with the
 * most units (so leader election is not part of P3/P4; P5 measures that).
 */
async function prepareVictim(
  bc: BenchCluster,
  prefix: string,
): Promise<{ units: string[]; victim: Machine; moved: string[] }> {
  const units = names(prefix, UNITS_FOR_FAILOVER);
  await bc.startUnits(units);
  const leader = await bc.leader();
  let best: { m: Machine; units: string[] } | undefined;
  for (const m of bc.running()) {
    if (m === leader) continue;
    const on = units.filter((u) => bc.tracker.activeOn(u).has(m.name));
    if (!best || on.length > best.units.length) best = { m, units: on };
  }
  if (!best || best.units.length === 0) throw new Error('no non-leader machine runs any unit');
  return { units, victim: best.m, moved: best.units };
}

/** Resolves with the time by which every unit runs on a machine other than `victim`. */
function movedAway(
  bc: BenchCluster,
  moved: readonly string[],
  victim: Machine,
  timeoutMs: number,
): Promise<number> {
  return bc.tracker.waitFor(
    () => {
      let last = 0;
      for (const u of moved) {
        const elsewhere = [...bc.tracker.activeOn(u).entries()].filter(([m]) => m !== victim.name);
        if (elsewhere.length === 0) return undefined;
        last = Math.max(last, ...elsewhere.map(([, at]) => at));
      }
      return last;
    },
    timeoutMs,
    `${moved.length} units running off ${victim.name}`,
  );
}

/** P4: `systemctl stop fleetd` in a machine → its units running elsewhere. */
async function gracefulStop(ctx: BenchContext, bc: BenchCluster): Promise<void> {
  const reps = ctx.quick ? 1 : 3;
  const samples: number[] = [];
  const stoppedOnVictim: number[] = [];
  const stopCommand: number[] = [];
  let movedCount = 0;
  for (let rep = 0; rep < reps; rep++) {
    const { units, victim, moved } = await prepareVictim(bc, `p4-${rep}`);
    movedCount += moved.length;
    const t0 = performance.now();
    const stop = bc.lab.exec(victim, ['systemctl', 'stop', 'fleetd']);
    const at = await movedAway(bc, moved, victim, 30_000);
    samples.push(at - t0);
    const r = await stop;
    stopCommand.push(performance.now() - t0);
    if (r.code !== 0) throw new Error(`systemctl stop fleetd: ${r.stderr}`);
    const gone = await bc.tracker.waitFor(
      () => {
        let last = 0;
        for (const u of moved) {
          const seen = bc.tracker.seenOn(u, victim.name);
          if (seen === undefined || bc.tracker.activeOn(u).has(victim.name)) return undefined;
          last = Math.max(last, seen.at);
        }
        return last;
      },
      30_000,
      'units stopped on the stopped machine',
    );
    stoppedOnVictim.push(gone - t0);
    const s = await bc.lab.exec(victim, ['systemctl', 'start', 'fleetd']);
    if (s.code !== 0) throw new Error(`systemctl start fleetd: ${s.stderr}`);
    await bc.waitMachines(3);
    await bc.destroyUnits(units);
    ctx.log(
      `  rep ${rep + 1}: ${moved.length} units moved off ${victim.name} in ${(samples[rep] as number).toFixed(0)} ms`,
    );
  }
  ctx.record(
    metricResult(
      'P4',
      'graceful fleetd stop (SIGTERM) → its units running elsewhere',
      'ms',
      samples,
      { text: '≤ 1 s', op: '<=', value: 1000 },
      {
        notes: [
          '`systemctl stop fleetd` in a non-leader machine running ~5 of 15 units; until systemd on the other machines reports the last of them active',
        ],
        details: {
          unitsMovedPerRun: movedCount / reps,
          unitsStoppedOnThatMachineMs: stoppedOnVictim.map(round),
          systemctlStopReturnedMs: stopCommand.map(round),
        },
      },
    ),
  );
}

/** P3: a machine SIGKILLed → every unit it ran is running elsewhere. */
async function machineKilled(ctx: BenchContext, bc: BenchCluster): Promise<void> {
  const reps = ctx.quick ? 1 : 3;
  const samples: number[] = [];
  let movedCount = 0;
  for (let rep = 0; rep < reps; rep++) {
    const { units, victim, moved } = await prepareVictim(bc, `p3-${bc.agentTtlSeconds}-${rep}`);
    movedCount += moved.length;
    const t0 = performance.now();
    await bc.kill(victim);
    const at = await movedAway(bc, moved, victim, 60_000);
    samples.push(at - t0);
    ctx.log(
      `  rep ${rep + 1}: ${moved.length} units of ${victim.name} running elsewhere after ${(samples[rep] as number).toFixed(0)} ms`,
    );
    await bc.restart(victim);
    await bc.destroyUnits(units);
  }
  const ttl = bc.agentTtlSeconds;
  const goal =
    ttl <= 2
      ? { text: '≤ 3 s with a 2 s TTL', op: '<=' as const, value: 3000 }
      : { text: `p50 ≤ TTL + 1 s (${ttl + 1} s)`, op: '<=' as const, value: (ttl + 1) * 1000 };
  ctx.record(
    metricResult(
      'P3',
      `machine SIGKILLed → its units running elsewhere (agent_ttl ${ttl} s)`,
      'ms',
      samples,
      goal,
      {
        notes: [
          "SIGKILL of the machine's PID 1 (fleetd and every unit die at once); a non-leader machine running ~5 of 15 units; until systemd on the others reports the last of them active",
          'fleet measured here: 22.5 s with defaults (30 s TTL), 6.1 s with a 5 s TTL',
        ],
        details: { unitsMovedPerRun: movedCount / reps, agentTtlSeconds: ttl },
      },
    ),
  );
}

/** P5: the engine leader's machine killed → a new leader places a newly started unit. */
async function leaderKilled(ctx: BenchContext, bc: BenchCluster): Promise<void> {
  const reps = ctx.quick ? 1 : 3;
  const placed: number[] = [];
  const active: number[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const unit = `p5-${bc.agentTtlSeconds}-${rep}.service`;
    bc.writeUnits([unit]);
    bc.tracker.watch([unit]);
    const leader = await bc.leader();
    if (!leader) throw new Error('no engine leader');
    const survivor = bc.running().find((m) => m !== leader) as Machine;
    // Watch for the unit's placement from the host.
    const rev = (await bc.kv.currentRevision()) + 1;
    let placedAt = 0;
    let resolvePlaced: () => void = () => undefined;
    const placedPromise = new Promise<void>((r) => (resolvePlaced = r));
    const watch = bc.kv.watchPrefix(bc.registry.keys.schedulePrefix, rev, {
      onEvents: (events) => {
        for (const e of events) {
          if (placedAt === 0 && e.type === 'put' && e.kv.key.endsWith(`/${unit}`)) {
            placedAt = performance.now();
            resolvePlaced();
          }
        }
      },
      onReset: () => undefined,
    });
    try {
      const t0 = performance.now();
      await bc.kill(leader);
      await bc.ok(['start', '--no-block', unit], survivor);
      await Promise.race([
        placedPromise,
        sleep(60_000).then(() => {
          throw new Error(`${unit} not placed within 60 s of the leader's death`);
        }),
      ]);
      placed.push(placedAt - t0);
      const at = await bc.tracker.waitFor(
        () => [...bc.tracker.activeOn(unit).values()][0],
        30_000,
        `${unit} active`,
      );
      active.push(at - t0);
      ctx.log(
        `  rep ${rep + 1}: placed ${(placedAt - t0).toFixed(0)} ms, active ${(at - t0).toFixed(0)} ms after the leader's death`,
      );
    } finally {
      await watch.close();
    }
    await bc.restart(leader);
    await bc.destroyUnits([unit]);
  }
  const ttl = bc.agentTtlSeconds;
  ctx.record(
    metricResult(
      'P5',
      `engine leader killed → new leader places a new unit (agent_ttl ${ttl} s)`,
      'ms',
      placed,
      { text: `≤ TTL + 0.5 s (${ttl + 0.5} s)`, op: '<=', value: (ttl + 0.5) * 1000 },
      {
        notes: [
          "SIGKILL of the leader's machine, then `fleetctl start --no-block` of a new unit through a surviving machine; until its placement (schedule/<machine>/<unit>) is committed, seen by an etcd watch",
          "the leader lease is kept alive every TTL/3, so it expires between 2/3·TTL and TTL after the kill (plus etcd's expiry sweep, every 500 ms)",
        ],
        details: { thenActiveMs: active.map(round), agentTtlSeconds: ttl },
      },
    ),
  );
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
