/** What a benchmark scenario reports, and the context it runs in. */
import { fmt, summarize, type Summary } from './stats.js';

export type Comparator = '<=' | '>=';

export interface Goal {
  /** As targets.md words it, e.g. "p50 ≤ 100 ms". */
  readonly text: string;
  readonly op: Comparator;
  readonly value: number;
}

/** Which statistic of the samples is held against the goal. */
export type Statistic = 'median' | 'p99' | 'max';

export interface MetricResult {
  /** Target id from targets.md: "P1" … "P12". */
  readonly id: string;
  readonly metric: string;
  readonly unit: string;
  readonly statistic: Statistic;
  /** The statistic's value: what is compared with the goal. */
  readonly value: number;
  readonly summary: Summary;
  readonly samples: readonly number[];
  readonly goal: Goal;
  readonly met: boolean;
  /** Conditions worth knowing when reading the number (workload, deviations). */
  readonly notes: readonly string[];
  /** Breakdowns and secondary measurements. */
  readonly details: Readonly<Record<string, unknown>>;
}

export function metricResult(
  id: string,
  metric: string,
  unit: string,
  samples: readonly number[],
  goal: Goal,
  options: { statistic?: Statistic; notes?: readonly string[]; details?: Record<string, unknown> } = {},
): MetricResult {
  const summary = summarize(samples);
  const statistic = options.statistic ?? 'median';
  const value = summary[statistic];
  const met =
    samples.length > 0 &&
    Number.isFinite(value) &&
    (goal.op === '<=' ? value <= goal.value : value >= goal.value);
  return {
    id,
    metric,
    unit,
    statistic,
    value,
    summary,
    samples: samples.map((s) => Math.round(s * 1000) / 1000),
    goal,
    met,
    notes: options.notes ?? [],
    details: options.details ?? {},
  };
}

/** "62 ms (p50) [41–180, p99 170] n=40" */
export function measuredText(r: MetricResult): string {
  const s = r.summary;
  const unit = r.unit === '' ? '' : ` ${r.unit}`;
  const label = r.statistic === 'median' ? '' : ` (${r.statistic})`;
  if (s.n === 1) return `${fmt(r.value)}${unit}${label}`;
  const p99 = r.statistic !== 'p99' && s.n >= 10 ? `, p99 ${fmt(s.p99)}` : '';
  return `${fmt(r.value)}${unit}${label} [${fmt(s.min)}–${fmt(s.max)}${p99}] n=${s.n}`;
}

export interface Failure {
  /** Target ids that got no result because of it. */
  readonly ids: readonly string[];
  readonly what: string;
  readonly error: string;
}

export interface BenchContext {
  readonly quick: boolean;
  /** Whether a target was asked for (`--only`). */
  wants(id: string): boolean;
  record(result: MetricResult): void;
  fail(ids: readonly string[], what: string, err: unknown): void;
  log(message: string): void;
  /**
   * Registers a clean-up that also runs on SIGINT/SIGTERM; returns a function
   * that runs it now (once) and unregisters it.
   */
  defer(cleanup: () => Promise<void> | void): () => Promise<void>;
  /** A scratch directory removed at the end of the run. */
  readonly tmpDir: string;
}

/**
 * Runs one scenario: its error is recorded against the target ids it would
 * have produced and does not stop the other scenarios.
 */
export async function step(
  ctx: BenchContext,
  ids: readonly string[],
  what: string,
  fn: () => Promise<void>,
): Promise<void> {
  const wanted = ids.filter((id) => ctx.wants(id));
  if (wanted.length === 0) return;
  const started = Date.now();
  ctx.log(`${what}…`);
  try {
    await fn();
    ctx.log(`${what}: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } catch (err) {
    ctx.fail(wanted, what, err);
  }
}

/** A group of scenarios sharing one set-up (a cluster, an etcd with simulated machines). */
export interface Suite {
  readonly name: string;
  readonly ids: readonly string[];
  run(ctx: BenchContext): Promise<void>;
}
