/**
 * Simulated machines for the scale scenarios: real fleetd daemons (the
 * `Fleetd` class: presence under a real etcd lease, agent, command mailbox)
 * whose systemd is a FakeUnitManager, many per process, in a child process so
 * that their work does not share an event loop with the engine being
 * measured. The engine is disabled in them: the benchmark runs the one engine
 * it measures.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { random } from '../../test/support/random.js';

export const REGIONS = ['ap-south', 'eu-west', 'us-east', 'us-west'] as const;

/**
 * agent_ttl of simulated machines: 60 s, not ours (5 s). One process cannot
 * keep 1,000 five-second leases alive on a loaded 2-core VM (each lease is
 * renewed every TTL/3 on its own stream): leases expired, machines flapped
 * and the engine moved units; with 30 s the registry's loss detection (no
 * keepalive answered for a TTL) still fired during the start-up storm.
 * Leases still come and go with the machines; only their renewal rate (17/s
 * for 1,000 machines) is lower than a real cluster's (600/s at 5 s).
 */
export const SIM_TTL_SECONDS = 60;

export interface SimMachineSpec {
  readonly id: string;
  readonly metadata: Readonly<Record<string, string>>;
}

export interface SimConfig {
  readonly endpoints: readonly string[];
  readonly machines: readonly SimMachineSpec[];
  /** agent_ttl of every simulated fleetd. */
  readonly ttlSeconds: number;
  /** Run agents (FakeUnitManager) or only hold presences. */
  readonly agents: boolean;
  /** etcd clients shared by the machines (one per `machines / clients`). */
  readonly clients: number;
  /** Directory for the machines' owner-token file. */
  readonly stateDir: string;
}

/** Messages from the worker. */
export type SimReport =
  | { readonly type: 'ready'; readonly ms: number }
  | {
      readonly type: 'counts';
      readonly units: number;
      readonly active: number;
      readonly reconcileErrors: number;
    }
  | { readonly type: 'diagnosis'; readonly machinesWithFiles: number; readonly machines: unknown[] }
  | { readonly type: 'error'; readonly message: string };

/** `count` machines with random hex IDs (like /etc/machine-id) and region/disk metadata. */
export function simMachines(count: number, seed = 7): SimMachineSpec[] {
  const rnd = random(seed * 7919 + count);
  return Array.from({ length: count }, (_, i) => ({
    id: Array.from({ length: 32 }, () => Math.floor(rnd() * 16).toString(16)).join(''),
    metadata: { region: REGIONS[i % REGIONS.length] as string, disk: rnd() < 0.5 ? 'ssd' : 'hdd' },
  }));
}

const WORKER = fileURLToPath(new URL('./sim-worker.ts', import.meta.url));

/** A child process running simulated machines. */
export class SimMachines {
  private constructor(
    private readonly child: ChildProcess,
    readonly readyMs: number,
  ) {}

  /** Starts the worker and resolves once every machine is registered (and its agent started). */
  static async start(config: SimConfig, timeoutMs = 360_000): Promise<SimMachines> {
    const child = fork(WORKER, [], {
      execArgv: process.execArgv,
      env: { ...process.env, BENCH_SIM: JSON.stringify(config) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    try {
      const ready = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error('simulated machines did not start in time')),
          timeoutMs,
        );
        child.on('message', (m: SimReport) => {
          if (m.type === 'ready') {
            clearTimeout(timer);
            resolve(m.ms);
          } else if (m.type === 'error') {
            clearTimeout(timer);
            reject(new Error(`simulated machines: ${m.message}`));
          }
        });
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`simulated machines exited (${code})`));
        });
      });
      return new SimMachines(child, ready);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
  }

  /** Units the agents hold and how many of them their fake systemd reports active. */
  counts(): Promise<{ units: number; active: number; reconcileErrors: number }> {
    return new Promise((resolve, reject) => {
      const onMessage = (m: SimReport): void => {
        if (m.type !== 'counts') return;
        this.child.off('message', onMessage);
        resolve(m);
      };
      this.child.on('message', onMessage);
      if (!this.child.send({ type: 'counts' })) reject(new Error('simulated machines are gone'));
    });
  }

  /** Machines whose fake systemd still holds units, and what their agents believe (for error messages). */
  diagnose(): Promise<{ machinesWithFiles: number; machines: unknown[] }> {
    return new Promise((resolve, reject) => {
      const onMessage = (m: SimReport): void => {
        if (m.type !== 'diagnosis') return;
        this.child.off('message', onMessage);
        resolve(m);
      };
      this.child.on('message', onMessage);
      if (!this.child.send({ type: 'diagnose' })) reject(new Error('simulated machines are gone'));
    });
  }

  /** The worker's PID (for CPU accounting). */
  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Kills the worker (its leases expire with etcd, which the caller tears down). Idempotent. */
  async close(): Promise<void> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }
}
