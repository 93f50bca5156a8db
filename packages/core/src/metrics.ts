/**
 * A tiny, dependency-free metrics registry rendering Prometheus' text
 * exposition format 0.0.4. One {@link Metrics} object is shared by every
 * component of a fleetd (API, engine, agent); each registers its own
 * counters, gauges and histograms on it and the API serves `render()` at
 * `/metrics`.
 *
 * Label values are the caller's responsibility: keep them to small, known
 * sets (a route template, not a raw path), or the number of series grows
 * without bound.
 */

/** The `Content-Type` of {@link Metrics.render}'s output. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** One value per label name. */
export type LabelValues<L extends string> = { readonly [K in L]: string };

/** What every metric kind is declared with. */
export interface MetricOptions<L extends string> {
  /** Metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`. */
  readonly name: string;
  /** One line saying what is measured (and in which unit). */
  readonly help: string;
  /** Label names, in the order they are rendered. @default [] */
  readonly labelNames?: readonly L[];
}

export interface HistogramOptions<L extends string> extends MetricOptions<L> {
  /** Upper bounds of the buckets, ascending and finite; `+Inf` is added. @default DEFAULT_BUCKETS */
  readonly buckets?: readonly number[];
}

/** Latency buckets in seconds, from 0.5 ms to 10 s. */
export const DEFAULT_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

type MetricType = 'counter' | 'gauge' | 'histogram';

/** Formats a sample value as Prometheus' parser (Go's ParseFloat) reads it. */
function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function renderLabels(names: readonly string[], values: readonly string[], extra?: string): string {
  const parts = names.map((n, i) => `${n}="${escapeLabelValue(values[i] ?? '')}"`);
  if (extra !== undefined) parts.push(extra);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** Shared bookkeeping: label validation and one series per distinct label-value tuple. */
abstract class Metric<L extends string, S> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  abstract readonly type: MetricType;
  protected readonly series = new Map<string, { values: readonly string[]; state: S }>();

  constructor(options: MetricOptions<L>) {
    if (!METRIC_NAME.test(options.name))
      throw new Error(`invalid metric name ${JSON.stringify(options.name)}`);
    const labelNames = options.labelNames ?? [];
    for (const l of labelNames) {
      if (!LABEL_NAME.test(l) || l.startsWith('__')) {
        throw new Error(`invalid label name ${JSON.stringify(l)} for metric ${options.name}`);
      }
    }
    if (new Set(labelNames).size !== labelNames.length) {
      throw new Error(`duplicate label name for metric ${options.name}`);
    }
    this.name = options.name;
    this.help = options.help;
    this.labelNames = [...labelNames];
  }

  protected abstract initial(): S;

  /** The series for these labels, created on first use. Throws on a missing or unknown label. */
  protected seriesFor(labels: LabelValues<L> | undefined): S {
    const given = (labels ?? {}) as Readonly<Record<string, unknown>>;
    const values = this.labelNames.map((n) => {
      const v = given[n];
      if (typeof v !== 'string') throw new Error(`metric ${this.name}: label ${n} must be a string`);
      return v;
    });
    if (Object.keys(given).length !== this.labelNames.length) {
      throw new Error(`metric ${this.name}: expected labels ${this.labelNames.join(', ') || '(none)'}`);
    }
    const key = values.join('\u0000');
    let s = this.series.get(key);
    if (s === undefined) {
      s = { values, state: this.initial() };
      this.series.set(key, s);
    }
    return s.state;
  }

  /** Forgets every series (for gauges rebuilt from scratch by a collector). */
  reset(): void {
    this.series.clear();
  }

  /** Series sorted by label values, so output is stable between scrapes. */
  protected sortedSeries(): Array<{ values: readonly string[]; state: S }> {
    return [...this.series.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, s]) => s);
  }

  render(): string {
    let out = `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n`;
    // An unlabelled metric is rendered as 0 before its first update, so that a
    // scraper can tell "nothing happened yet" from "not exported".
    if (this.labelNames.length === 0 && this.series.size === 0) this.seriesFor(undefined);
    for (const s of this.sortedSeries()) out += this.renderSeries(s.values, s.state);
    return out;
  }

  protected abstract renderSeries(values: readonly string[], state: S): string;
}

/** A value that only goes up (requests served, errors seen). */
export class Counter<L extends string = never> extends Metric<L, { value: number }> {
  readonly type = 'counter' as const;

  protected initial(): { value: number } {
    return { value: 0 };
  }

  /** Adds `by` (≥ 0) to the series of `labels`. */
  inc(labels?: LabelValues<L>, by = 1): void {
    if (!(by >= 0)) throw new Error(`metric ${this.name}: a counter cannot decrease (got ${by})`);
    this.seriesFor(labels).value += by;
  }

  /** The current value of a series (0 if never incremented). */
  get(labels?: LabelValues<L>): number {
    return this.seriesFor(labels).value;
  }

  protected renderSeries(values: readonly string[], state: { value: number }): string {
    return `${this.name}${renderLabels(this.labelNames, values)} ${formatValue(state.value)}\n`;
  }
}

/** A value that goes up and down (units known, machines alive, queue length). */
export class Gauge<L extends string = never> extends Metric<L, { value: number }> {
  readonly type = 'gauge' as const;

  protected initial(): { value: number } {
    return { value: 0 };
  }

  set(labels: LabelValues<L> | undefined, value: number): void {
    this.seriesFor(labels).value = value;
  }

  inc(labels?: LabelValues<L>, by = 1): void {
    this.seriesFor(labels).value += by;
  }

  dec(labels?: LabelValues<L>, by = 1): void {
    this.seriesFor(labels).value -= by;
  }

  get(labels?: LabelValues<L>): number {
    return this.seriesFor(labels).value;
  }

  protected renderSeries(values: readonly string[], state: { value: number }): string {
    return `${this.name}${renderLabels(this.labelNames, values)} ${formatValue(state.value)}\n`;
  }
}

interface HistogramState {
  /** Non-cumulative count per bucket; cumulated when rendered. */
  readonly counts: number[];
  sum: number;
  count: number;
}

/** A distribution of observed values (latencies) in fixed buckets. */
export class Histogram<L extends string = never> extends Metric<L, HistogramState> {
  readonly type = 'histogram' as const;
  readonly buckets: readonly number[];

  constructor(options: HistogramOptions<L>) {
    super(options);
    if ((options.labelNames as readonly string[] | undefined)?.includes('le')) {
      throw new Error(`metric ${options.name}: "le" is reserved for histogram buckets`);
    }
    const buckets = [...(options.buckets ?? DEFAULT_BUCKETS)];
    if (buckets.length === 0) throw new Error(`metric ${options.name}: at least one bucket is needed`);
    buckets.forEach((b, i) => {
      if (!Number.isFinite(b)) throw new Error(`metric ${options.name}: bucket bounds must be finite`);
      if (i > 0 && b <= (buckets[i - 1] as number)) {
        throw new Error(`metric ${options.name}: bucket bounds must be strictly ascending`);
      }
    });
    this.buckets = buckets;
  }

  protected initial(): HistogramState {
    return { counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 };
  }

  observe(labels: LabelValues<L> | undefined, value: number): void {
    const s = this.seriesFor(labels);
    // Values above the last bound land only in the implicit +Inf bucket (= count).
    const i = this.buckets.findIndex((b) => value <= b);
    if (i !== -1) s.counts[i] = (s.counts[i] ?? 0) + 1;
    s.sum += value;
    s.count += 1;
  }

  /** Starts a timer; the returned function observes the elapsed seconds and returns them. */
  startTimer(labels?: LabelValues<L>): () => number {
    const start = process.hrtime.bigint();
    return () => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      this.observe(labels, seconds);
      return seconds;
    };
  }

  /** Count and sum of a series (for tests and self-checks). */
  get(labels?: LabelValues<L>): { count: number; sum: number } {
    const s = this.seriesFor(labels);
    return { count: s.count, sum: s.sum };
  }

  protected renderSeries(values: readonly string[], state: HistogramState): string {
    let out = '';
    let cumulative = 0;
    this.buckets.forEach((b, i) => {
      cumulative += state.counts[i] ?? 0;
      const le = `le="${formatValue(b)}"`;
      out += `${this.name}_bucket${renderLabels(this.labelNames, values, le)} ${cumulative}\n`;
    });
    out += `${this.name}_bucket${renderLabels(this.labelNames, values, 'le="+Inf"')} ${state.count}\n`;
    out += `${this.name}_sum${renderLabels(this.labelNames, values)} ${formatValue(state.sum)}\n`;
    out += `${this.name}_count${renderLabels(this.labelNames, values)} ${state.count}\n`;
    return out;
  }
}

type AnyMetric = Counter<string> | Gauge<string> | Histogram<string>;

/**
 * The registry every component registers its metrics on. Registering the
 * same name again with the same type and labels returns the existing metric
 * (so two API listeners can share one Metrics); a different definition
 * under a taken name throws.
 */
export class Metrics {
  private readonly metrics = new Map<string, AnyMetric>();
  private readonly collectors = new Set<() => void>();

  counter<L extends string = never>(options: MetricOptions<L>): Counter<L> {
    return this.register(options, 'counter', () => new Counter<L>(options)) as Counter<L>;
  }

  gauge<L extends string = never>(options: MetricOptions<L>): Gauge<L> {
    return this.register(options, 'gauge', () => new Gauge<L>(options)) as Gauge<L>;
  }

  histogram<L extends string = never>(options: HistogramOptions<L>): Histogram<L> {
    const existing = this.metrics.get(options.name);
    const metric = this.register(options, 'histogram', () => new Histogram<L>(options)) as Histogram<L>;
    if (existing !== undefined) {
      const buckets = options.buckets ?? DEFAULT_BUCKETS;
      const same =
        buckets.length === metric.buckets.length && buckets.every((b, i) => b === metric.buckets[i]);
      if (!same) throw new Error(`metric ${options.name} is already registered with other buckets`);
    }
    return metric;
  }

  /**
   * Adds a function run before every render, to refresh gauges that are
   * cheaper to compute on scrape than to keep current. Returns a function
   * that removes it. A collector that throws is skipped for that scrape.
   */
  onCollect(collect: () => void): () => void {
    this.collectors.add(collect);
    return () => this.collectors.delete(collect);
  }

  /** The registered metric of that name, if any. */
  get(name: string): Counter<string> | Gauge<string> | Histogram<string> | undefined {
    return this.metrics.get(name);
  }

  /** Every metric in text format 0.0.4, sorted by name. */
  render(): string {
    for (const collect of this.collectors) {
      try {
        collect();
      } catch {
        // A broken collector must not break the scrape of everything else.
      }
    }
    return [...this.metrics.keys()]
      .sort()
      .map((name) => (this.metrics.get(name) as AnyMetric).render())
      .join('');
  }

  private register(options: MetricOptions<string>, type: MetricType, make: () => AnyMetric): AnyMetric {
    const existing = this.metrics.get(options.name);
    if (existing === undefined) {
      const metric = make();
      this.metrics.set(options.name, metric);
      return metric;
    }
    const labels = options.labelNames ?? [];
    const same =
      existing.type === type &&
      existing.labelNames.length === labels.length &&
      labels.every((l, i) => existing.labelNames[i] === l);
    if (!same) {
      throw new Error(`metric ${options.name} is already registered as a different ${existing.type}`);
    }
    return existing;
  }
}
