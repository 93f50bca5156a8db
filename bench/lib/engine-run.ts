/** Runs the real Engine against etcd and times what it does. */
import { Engine, decide, type SchedulerSnapshot } from '@fleet/engine';
import type { Registry } from '@fleet/registry';
import { median } from './stats.js';

export interface ColdPlacement {
  /** Units the first reconcile placed (schedule tasks) and left unplaced. */
  readonly placed: number;
  readonly unplaced: number;
  /** engine.start() → leadership won. */
  readonly startToLeaderMs: number;
  /** Leadership won → the first reconcile's placements committed and seen in its own cache. */
  readonly leaderToDoneMs: number;
  /** The reconcile alone (snapshot, decide, commit, wait for its own watch). */
  readonly reconcileMs: number;
  /** etcd operations the reconcile committed. */
  readonly ops: number;
  /** Still leading: the caller stops it. */
  readonly engine: Engine;
}

/**
 * Starts an engine on a registry whose units are all submitted and launched
 * and none placed, and waits for its first reconcile: the time from winning
 * leadership to every placement committed covers reading the cluster into
 * the caches, deciding and committing (fenced, 127 placements per
 * transaction) — what a new leader does with a backlog.
 */
export async function coldPlacement(
  registry: Registry,
  candidate: string,
  timeoutMs = 300_000,
): Promise<ColdPlacement> {
  let leaderAt = 0;
  const trouble: string[] = [];
  const engine = new Engine({
    registry,
    machineID: candidate,
    leaderTtlSeconds: 5,
    // fleetd logs one line per placement to its journal; here they are dropped.
    log: (m) => {
      if (leaderAt === 0 && m.includes('became leader')) leaderAt = performance.now();
      else if (!/^engine: (un)?schedule /.test(m) && trouble.push(m) > 5) trouble.shift();
    },
  });
  const first = engine.nextReconcile();
  const started = performance.now();
  engine.start();
  let timer: NodeJS.Timeout | undefined;
  try {
    const result = await Promise.race([
      first,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no reconcile within ${timeoutMs} ms; engine said: ${trouble.join(' | ')}`)),
          timeoutMs,
        );
      }),
    ]);
    const done = performance.now();
    return {
      placed: result.decision.tasks.filter((t) => t.kind === 'schedule').length,
      unplaced: result.decision.unplaced.size,
      startToLeaderMs: leaderAt - started,
      leaderToDoneMs: done - leaderAt,
      reconcileMs: result.durationMs,
      ops: result.ops,
      engine,
    };
  } catch (err) {
    await engine.stop();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

export interface DecideTiming {
  readonly units: number;
  readonly machines: number;
  readonly placed: number;
  /** Median CPU (user+system) and wall time per decided unit, µs. */
  readonly cpuUsPerUnit: number;
  readonly wallUsPerUnit: number;
  /** Median CPU time of engine.snapshot() (building decide's input from the caches), per unit, µs. */
  readonly snapshotCpuUsPerUnit: number;
  readonly samples: number;
}

/**
 * Times the engine's own decision work on its live snapshot of etcd, as a
 * cold decision (nothing placed): `decide()` alone, and `snapshot()` that
 * builds its input. Process CPU time is the primary figure (on a shared VM
 * it is what other processes disturb least); each sample lasts ≥ `minMs`.
 */
export function timeDecide(engine: Engine, options: { samples: number; minMs?: number }): DecideTiming {
  const { snapshot } = engine.snapshot();
  const cold: SchedulerSnapshot = { ...snapshot, placements: new Map() };
  const units = cold.units.size;
  let decision = decide(cold); // warm-up
  decision = decide(cold);
  const minMs = options.minMs ?? 20;
  const cpu: number[] = [];
  const wall: number[] = [];
  const snap: number[] = [];
  for (let i = 0; i < options.samples; i++) {
    let runs = 0;
    const c0 = process.cpuUsage();
    const w0 = performance.now();
    do {
      decision = decide(cold);
      runs++;
    } while (performance.now() - w0 < minMs);
    const used = process.cpuUsage(c0);
    wall.push(((performance.now() - w0) * 1000) / runs / units);
    cpu.push((used.user + used.system) / runs / units);
    const s0 = process.cpuUsage();
    engine.snapshot();
    const s = process.cpuUsage(s0);
    snap.push((s.user + s.system) / units);
  }
  return {
    units,
    machines: cold.machines.size,
    placed: decision.tasks.length,
    cpuUsPerUnit: median(cpu),
    wallUsPerUnit: median(wall),
    snapshotCpuUsPerUnit: median(snap),
    samples: options.samples,
  };
}
