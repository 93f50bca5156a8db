/**
 * `make bench`: measures every target of targets.md (P1–P12) and prints what
 * it measured next to the goal.
 *
 *   node --conditions=source --import tsx bench/run.ts [--quick] [--only P1,P6]
 *
 * Results go to bench/results/<timestamp>.json and bench/results/latest.json.
 * Exit status: 0 whether goals are met or not; 1 if a scenario could not run.
 * See docs/performance.md.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage } from '@fleet/core';
import { etcdVersion } from './lib/etcd.js';
import { fleetdExtraEnv } from './lib/fleet-lab.js';
import {
  measuredText,
  type BenchContext,
  type Failure,
  type MetricResult,
  type Suite,
} from './lib/report.js';
import { footprintSuite } from './scenarios/footprint.js';
import { labSuite, shortTtlSuite } from './scenarios/lab.js';
import { placementSuite } from './scenarios/placement.js';
import { scaleSuite } from './scenarios/scale.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS = join(ROOT, 'bench', 'results');
const ALL_IDS = Array.from({ length: 12 }, (_, i) => `P${i + 1}`);

/** In the order they run: real clusters first (P1–P5, P8, P10), then the simulated scale runs. */
const SUITES: readonly Suite[] = [labSuite, shortTtlSuite, footprintSuite, placementSuite, scaleSuite];

interface Args {
  readonly quick: boolean;
  readonly only: ReadonlySet<string> | undefined;
}

function parseArgs(argv: readonly string[]): Args {
  let quick = process.env['QUICK'] === '1';
  let only: Set<string> | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--quick') quick = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const value = a === '--only' ? argv[++i] : a.slice('--only='.length);
      only = new Set(
        (value ?? '')
          .split(',')
          .map((s) => s.trim().toUpperCase())
          .filter(Boolean),
      );
      const unknown = [...only].filter((id) => !ALL_IDS.includes(id));
      if (unknown.length > 0 || only.size === 0) {
        throw new Error(`--only takes target ids ${ALL_IDS.join(',')}; got ${JSON.stringify(value)}`);
      }
    } else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: bench/run.ts [--quick] [--only P1,P6,...]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${JSON.stringify(a)}`);
  }
  return { quick, only };
}

function version(cmd: string, args: readonly string[], pattern: RegExp): string {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return pattern.exec(out)?.[1] ?? out.trim().split('\n')[0] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

function table(results: readonly MetricResult[], failures: readonly Failure[]): string {
  const rows: string[][] = [['id', 'metric', 'measured: median [min–max] (n)', 'goal', 'met']];
  for (const r of results) rows.push([r.id, r.metric, measuredText(r), r.goal.text, r.met ? 'yes' : 'NO']);
  for (const f of failures) for (const id of f.ids) rows.push([id, f.what, 'could not run', '', 'ERROR']);
  const widths = rows[0]!.map((_, c) =>
    Math.min(c === 1 ? 64 : 60, Math.max(...rows.map((r) => r[c]!.length))),
  );
  return rows
    .map((r) =>
      r
        .map((cell, c) => pad(cell, widths[c]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) {
    throw new Error('the benchmarks boot fleet-lab machines (namespaces, cgroups): run them as root');
  }
  const started = new Date();
  const tmpDir = mkdtempSync(join(tmpdir(), 'fleet-bench-'));
  const results: MetricResult[] = [];
  const failures: Failure[] = [];
  const cleanups = new Set<() => Promise<void> | void>();
  const log = (m: string): void => {
    const t = ((Date.now() - started.getTime()) / 1000).toFixed(1).padStart(7);
    process.stderr.write(`[${t} s] ${m}\n`);
  };
  const ctx: BenchContext = {
    quick: args.quick,
    wants: (id) => args.only === undefined || args.only.has(id),
    record: (r) => {
      results.push(r);
      log(`${r.id} ${r.metric}: ${measuredText(r)} (goal ${r.goal.text}: ${r.met ? 'met' : 'NOT met'})`);
    },
    fail: (ids, what, err) => {
      const error = err instanceof Error ? (err.stack ?? err.message) : errorMessage(err);
      failures.push({ ids: [...ids], what, error });
      log(`FAILED ${ids.join(',')} (${what}): ${error}`);
    },
    log,
    defer: (cleanup) => {
      let done = false;
      const once = async (): Promise<void> => {
        if (done) return;
        done = true;
        cleanups.delete(once);
        await cleanup();
      };
      cleanups.add(once);
      return once;
    },
    tmpDir,
  };
  // Ctrl-C / SIGTERM: tear down clusters and etcd before leaving.
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: cleaning up`);
    void Promise.allSettled([...cleanups].reverse().map((c) => c())).finally(() => {
      rmSync(tmpDir, { recursive: true, force: true });
      process.exit(130);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const host = {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    loadAverageAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
  };
  const versions = {
    node: process.version,
    etcd: etcdVersion(),
    systemd: version('/usr/lib/systemd/systemd', ['--version'], /systemd (\d+)/),
    commit: version('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], /(\S+)/),
    fleetdExtraEnv: fleetdExtraEnv(),
    /** Uncommitted changes to the code under test (the checkout is shared): measured as they were. */
    uncommittedInPackages: version(
      'git',
      ['-C', ROOT, 'status', '--porcelain', '--', 'packages'],
      /^([\s\S]*)$/,
    )
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean),
  };
  log(
    `fleet bench (${args.quick ? 'quick' : 'full'}): ${host.cores} cores, load ${host.loadAverageAtStart.join(' ')}, ` +
      `node ${versions.node}, etcd ${versions.etcd}, systemd ${versions.systemd}`,
  );
  const suiteSeconds: Record<string, number> = {};
  try {
    for (const suite of SUITES) {
      if (!suite.ids.some((id) => ctx.wants(id))) continue;
      const t0 = Date.now();
      log(`== ${suite.name}`);
      try {
        await suite.run(ctx);
      } catch (err) {
        const got = new Set(results.map((r) => r.id));
        const missing = suite.ids.filter((id) => ctx.wants(id) && !got.has(id));
        ctx.fail(missing.length > 0 ? missing : suite.ids.filter((id) => ctx.wants(id)), suite.name, err);
      }
      suiteSeconds[suite.name] = Math.round((Date.now() - t0) / 1000);
      log(`== ${suite.name}: ${suiteSeconds[suite.name]} s`);
    }
  } finally {
    await Promise.allSettled([...cleanups].reverse().map((c) => c()));
    rmSync(tmpDir, { recursive: true, force: true });
  }

  const finished = new Date();
  results.sort((a, b) => Number(a.id.slice(1)) - Number(b.id.slice(1)));
  const report = {
    mode: args.quick ? 'quick' : 'full',
    only: args.only ? [...args.only] : undefined,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationSeconds: Math.round((finished.getTime() - started.getTime()) / 1000),
    suiteSeconds,
    host: { ...host, loadAverageAtEnd: loadavg().map((x) => Math.round(x * 100) / 100) },
    versions,
    results,
    failures,
  };
  mkdirSync(RESULTS, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const json = `${JSON.stringify(report, null, 2)}\n`;
  writeFileSync(join(RESULTS, `${stamp}.json`), json);
  writeFileSync(join(RESULTS, 'latest.json'), json);

  process.stdout.write(`\n${table(results, failures)}\n\n`);
  const met = results.filter((r) => r.met).length;
  process.stdout.write(
    `${met} of ${results.length} measurements meet their goal; ${failures.length} scenario(s) could not run. ` +
      `${report.durationSeconds} s (${report.mode}); load average ${host.loadAverageAtStart.join(' ')} → ` +
      `${report.host.loadAverageAtEnd.join(' ')}.\nResults: bench/results/${stamp}.json (and latest.json)\n`,
  );
  return failures.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
