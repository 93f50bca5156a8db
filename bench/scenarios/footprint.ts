/**
 * P10: fleetd's footprint on a machine running 1,000 of its units (a
 * one-machine fleet-lab cluster, fleetd under systemd, real systemd): its
 * resident memory, its CPU while idle, and the D-Bus method calls it makes
 * while idle (dbus-monitor inside the machine). The idle window also counts
 * etcd writes (P9 on a real cluster).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Machine } from '@fleet/lab';
import { BenchCluster, UNIT_TEXT, fleetdExtraEnv } from '../lib/fleet-lab.js';
import { diffCounters, readCounters } from '../lib/etcd.js';
import { metricResult, step, type BenchContext, type Suite } from '../lib/report.js';
import { sleep, until } from '../lib/stats.js';
import { parseUnitFile } from '@fleet/core';

const UNITS = 1000;

export const footprintSuite: Suite = {
  name: `footprint: fleetd with ${UNITS.toLocaleString('en-US')} running units on one machine`,
  ids: ['P10', 'P9'],
  run,
};

const CLK_TCK = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** A memory line of /proc/<pid>/status, in MiB. */
function vm(pid: number, field: 'VmRSS' | 'VmHWM' | 'RssAnon' | 'RssFile'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** The PID a host process has inside its own PID namespace (NSpid's last field). */
function nsPid(pid: number): number {
  const m = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1]?.trim().split(/\s+/).pop() ?? pid);
}

function servicePid(machine: Machine, service: string): number | undefined {
  try {
    const first = readFileSync(
      join(machine.cgroupPath, 'system.slice', service, 'cgroup.procs'),
      'utf8',
    ).split('\n')[0];
    return first ? Number(first) : undefined;
  } catch {
    return undefined;
  }
}

interface Window {
  readonly seconds: number;
  readonly fleetdCpuPercent: number;
  readonly systemdCpuPercent: number;
  readonly dbusDaemonCpuPercent: number | undefined;
  readonly rssMaxMiB: number;
  readonly rssEndMiB: number;
  readonly callsByFleetd: Record<string, number>;
  readonly callsByFleetdTotal: number;
  readonly signalsTotal: number;
  readonly proposals: number;
}

/** Watches a machine for `seconds`: fleetd's CPU and RSS, systemd's and dbus-daemon's CPU, fleetd's D-Bus calls, etcd writes. */
async function idleWindow(bc: BenchCluster, machine: Machine, seconds: number): Promise<Window> {
  const pid = bc.fleetdPid(machine);
  const busPid = servicePid(machine, 'dbus.service');
  // fleetd's unique bus name, to pick its calls out of the monitor's output.
  const list = await bc.lab.exec(machine, [
    'busctl',
    '--system',
    'list',
    '--unique',
    '--no-legend',
    '--no-pager',
  ]);
  const inner = nsPid(pid);
  const unique = list.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => Number(f[1]) === inner)
    .map((f) => f[0] as string);
  const monitor = bc.lab.exec(
    machine,
    ['timeout', String(seconds), 'dbus-monitor', '--system', '--profile'],
    {
      timeoutMs: (seconds + 30) * 1000,
    },
  );
  await sleep(500); // the monitor is attached before the window opens
  const etcd0 = await readCounters(bc.metricsUrl);
  const c0 = {
    fleetd: cpuSeconds(pid),
    systemd: cpuSeconds(machine.pid),
    bus: busPid ? cpuSeconds(busPid) : 0,
  };
  const t0 = performance.now();
  let rssMax = 0;
  while (performance.now() - t0 < (seconds - 1) * 1000) {
    rssMax = Math.max(rssMax, vm(pid, 'VmRSS'));
    await sleep(1000);
  }
  const elapsed = (performance.now() - t0) / 1000;
  const c1 = {
    fleetd: cpuSeconds(pid),
    systemd: cpuSeconds(machine.pid),
    bus: busPid ? cpuSeconds(busPid) : 0,
  };
  const etcd1 = await readCounters(bc.metricsUrl);
  const rssEnd = vm(pid, 'VmRSS');
  const out = await monitor;
  const calls: Record<string, number> = {};
  let signals = 0;
  // --profile lines: "mc <time> <serial> <sender> <destination> <path> <interface> <member>", "sig …".
  for (const line of out.stdout.split('\n')) {
    const f = line.split('\t');
    if (f[0] === 'sig') signals++;
    if (f[0] !== 'mc' || !unique.includes(f[3] ?? '')) continue;
    const member = f[7] ?? '?';
    calls[member] = (calls[member] ?? 0) + 1;
  }
  const pct = (d: number): number => Math.round((d / elapsed) * 100 * 1000) / 1000;
  return {
    seconds: Math.round(elapsed * 10) / 10,
    fleetdCpuPercent: pct(c1.fleetd - c0.fleetd),
    systemdCpuPercent: pct(c1.systemd - c0.systemd),
    dbusDaemonCpuPercent: busPid ? pct(c1.bus - c0.bus) : undefined,
    rssMaxMiB: Math.round(Math.max(rssMax, rssEnd) * 10) / 10,
    rssEndMiB: Math.round(rssEnd * 10) / 10,
    callsByFleetd: calls,
    callsByFleetdTotal: Object.values(calls).reduce((a, b) => a + b, 0),
    signalsTotal: signals,
    proposals: diffCounters(etcd0, etcd1).proposals,
  };
}

async function run(ctx: BenchContext): Promise<void> {
  const t0 = Date.now();
  const bc = await BenchCluster.start(ctx, { machines: 1, agentTtlSeconds: 5, label: 'f' });
  const close = ctx.defer(() => bc.close());
  ctx.log(`cluster ${bc.lab.name} up with fleetd in 1 machine in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  try {
    const machine = bc.firstRunning();
    // The observer is not needed here and would be one more D-Bus client.
    await bc.tracker.detach(machine.name);
    const seconds = ctx.quick ? 15 : 30;
    await step(ctx, ['P10', 'P9'], `P10 fleetd footprint with ${UNITS} units`, async () => {
      const empty = await idleWindow(bc, machine, Math.min(10, seconds));
      ctx.log(`  no units: fleetd RSS ${empty.rssEndMiB} MiB, CPU ${empty.fleetdCpuPercent}%`);
      const client = bc.client(machine);
      const options = parseUnitFile(UNIT_TEXT);
      const names = Array.from({ length: UNITS }, (_, i) => `p10-${String(i).padStart(4, '0')}.service`);
      const s0 = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < names.length) await client.createUnit(names[next++] as string, options, 'launched');
        }),
      );
      const submitted = performance.now() - s0;
      const countActive = async (): Promise<number> => {
        const r = await bc.lab.exec(machine, [
          'systemctl',
          'list-units',
          '--state=active',
          '--no-legend',
          '--plain',
          '--no-pager',
          'p10-*',
        ]);
        return r.stdout.split('\n').filter((l) => l.trim() !== '').length;
      };
      let active = 0;
      await until(
        async () => {
          active = await countActive();
          return active === UNITS;
        },
        { timeoutMs: 600_000, intervalMs: 2000, what: `${UNITS} units active` },
      );
      const startedS = (performance.now() - s0) / 1000;
      ctx.log(
        `  ${UNITS} units active after ${startedS.toFixed(1)} s (submitted in ${(submitted / 1000).toFixed(1)} s)`,
      );
      await sleep(10_000); // past the start storm (its garbage, the last state reports)
      const pid = bc.fleetdPid(machine);
      const w = await idleWindow(bc, machine, seconds);
      const hwm = vm(pid, 'VmHWM');
      ctx.log(
        `  idle ${w.seconds} s: fleetd RSS ${w.rssMaxMiB} MiB, CPU ${w.fleetdCpuPercent}%, ${w.callsByFleetdTotal} D-Bus calls; systemd CPU ${w.systemdCpuPercent}%`,
      );
      const common = {
        notes: [
          `one machine, fleetd under systemd, ${UNITS} running units it placed (sleep); measured over ${w.seconds} s of idleness, 10 s after systemd reported the last unit active`,
        ],
      };
      ctx.record(
        metricResult(
          'P10',
          `fleetd RSS, ${UNITS.toLocaleString('en-US')} running units`,
          'MiB',
          [w.rssMaxMiB],
          { text: '≤ 80 MB', op: '<=', value: 80 },
          {
            ...common,
            details: {
              rssNoUnitsMiB: empty.rssEndMiB,
              peakRssSinceStartMiB: Math.round(hwm * 10) / 10,
              rssEndMiB: w.rssEndMiB,
              // File-backed pages (the node binary's code, shared by every node process) vs. the process's own memory.
              rssAnonMiB: Math.round(vm(pid, 'RssAnon') * 10) / 10,
              rssFileMiB: Math.round(vm(pid, 'RssFile') * 10) / 10,
              fleetdExtraEnv: fleetdExtraEnv(),
              startAllSeconds: Math.round(startedS * 10) / 10,
            },
          },
        ),
      );
      ctx.record(
        metricResult(
          'P10',
          `fleetd CPU when idle, ${UNITS.toLocaleString('en-US')} units`,
          '% of a core',
          [w.fleetdCpuPercent],
          { text: '≤ 1% of a core', op: '<=', value: 1 },
          {
            ...common,
            details: {
              systemdCpuPercent: w.systemdCpuPercent,
              dbusDaemonCpuPercent: w.dbusDaemonCpuPercent,
              fleetdCpuPercentNoUnits: empty.fleetdCpuPercent,
              clockTicksPerSecond: CLK_TCK,
            },
          },
        ),
      );
      ctx.record(
        metricResult(
          'P10',
          `fleetd D-Bus method calls per minute when idle, ${UNITS.toLocaleString('en-US')} units`,
          'calls/min',
          [(w.callsByFleetdTotal / w.seconds) * 60],
          { text: 'no per-unit periodic D-Bus calls (0/min)', op: '<=', value: 0 },
          {
            notes: [
              ...common.notes,
              "dbus-monitor --system inside the machine; method calls whose sender is fleetd's bus connection",
            ],
            details: { callsByMember: w.callsByFleetd, signalsOnTheBus: w.signalsTotal },
          },
        ),
      );
      ctx.record(
        metricResult(
          'P9',
          `steady-state etcd writes/s, real cluster (1 machine, ${UNITS.toLocaleString('en-US')} launched units)`,
          '/s',
          [w.proposals / w.seconds],
          { text: '0/s from liveness', op: '<=', value: 0 },
          {
            notes: [
              "the same idle window, on the lab's etcd: raft proposals committed (etcd_server_proposals_committed_total)",
            ],
            details: { proposals: w.proposals, windowSeconds: w.seconds },
          },
        ),
      );
    });
  } finally {
    await close();
  }
}
