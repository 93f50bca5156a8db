import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main as fleetctlMain } from '@fleet/fleetctl';
import { REPO_ROOT, fleetdServiceText, startCluster, type Cluster, type Machine } from '@fleet/lab';
import { eventually, uniqueId } from '../support/eventually.js';

export const REPO = REPO_ROOT;

export interface FleetctlResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface FleetClusterOptions {
  readonly machines?: number;
  readonly etcdMembers?: 1 | 3;
  /** fleetd's agent_ttl inside the machines. @default '2s' (fast failover tests) */
  readonly agentTtl?: string;
  /** Per-machine fleetd settings as FLEET_* variables (the lab's machine index: m1 is 1). */
  readonly fleetEnv?: (index: number) => Record<string, string>;
}

/**
 * A fleet-lab cluster with fleetd in every machine, and our fleetctl aimed at
 * it through a machine's API socket (as seen from the host).
 */
export class FleetCluster {
  private constructor(
    readonly lab: Cluster,
    private readonly tmp: string,
  ) {}

  static async start(options: FleetClusterOptions = {}): Promise<FleetCluster> {
    const tmp = mkdtempSync(join(tmpdir(), 'fleet-e2e-'));
    const service = join(tmp, 'fleetd.service');
    writeFileSync(service, fleetdServiceText({ agentTtl: options.agentTtl ?? '2s' }));
    const lab = await startCluster({
      name: uniqueId('e2e'),
      machines: options.machines ?? 3,
      etcdMembers: options.etcdMembers ?? 1,
      serviceFiles: [service],
      ...(options.fleetEnv ? { machineEnv: (m) => options.fleetEnv?.(m.index) ?? {} } : {}),
    });
    const cluster = new FleetCluster(lab, tmp);
    try {
      await cluster.waitForMachines(options.machines ?? 3);
    } catch (err) {
      await cluster.close();
      throw err;
    }
    return cluster;
  }

  get machines(): readonly Machine[] {
    return this.lab.machines;
  }

  /** `--endpoint` for a machine's fleetd as seen from the host. */
  endpoint(machine: Machine = this.anyRunningMachine()): string {
    return `unix://${machine.rootPath}/run/fleet.sock`;
  }

  private anyRunningMachine(): Machine {
    const m = this.lab.machines.find((x) => x.status === 'running');
    if (!m) throw new Error('no running machine');
    return m;
  }

  /** Runs our fleetctl in-process against a machine's fleetd. */
  async fleetctl(
    args: readonly string[],
    options: { machine?: Machine; cwd?: string } = {},
  ): Promise<FleetctlResult> {
    let stdout = '';
    let stderr = '';
    const code = await fleetctlMain([`--endpoint=${this.endpoint(options.machine)}`, ...args], {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      env: { HOME: tmpdir() },
      cwd: options.cwd ?? join(REPO, 'examples'),
    });
    return { code, stdout, stderr };
  }

  /** Like fleetctl() but throws with the output unless the exit code is 0. */
  async ok(args: readonly string[], options: { machine?: Machine; cwd?: string } = {}): Promise<string> {
    const r = await this.fleetctl(args, options);
    if (r.code !== 0) throw new Error(`fleetctl ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** Rows of a fleetctl table split on whitespace, header dropped. */
  async rows(args: readonly string[]): Promise<string[][]> {
    const out = await this.ok([...args, '--no-legend', '--full']);
    return out
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => l.trim().split(/\s+/));
  }

  async waitForMachines(n: number, timeoutMs = 20_000): Promise<void> {
    await eventually(
      async () => {
        const rows = await this.rows(['list-machines']);
        if (rows.length !== n) throw new Error(`${rows.length} machines listed`);
        return true;
      },
      { timeoutMs, intervalMs: 100, message: `${n} machines in list-machines` },
    );
  }

  /** unit → machine IDs where systemd reports it active (from list-units). */
  async activeUnits(): Promise<Map<string, string[]>> {
    const rows = await this.rows(['list-units', '--fields=unit,machine,active']);
    const out = new Map<string, string[]>();
    for (const [unit, machine, active] of rows) {
      if (active !== 'active' || !unit || !machine) continue;
      out.set(unit, [...(out.get(unit) ?? []), machine.split('/')[0] as string].sort());
    }
    return out;
  }

  /** The machine a machine ID belongs to. */
  machineByID(id: string): Machine {
    const m = this.lab.machines.find((x) => x.machineID === id || x.machineID.startsWith(id));
    if (!m) throw new Error(`no machine ${id}`);
    return m;
  }

  /** `systemctl` inside a machine. */
  async systemctl(machine: Machine, args: readonly string[]): Promise<string> {
    const r = await this.lab.exec(machine, ['systemctl', '--no-pager', ...args]);
    return r.stdout;
  }

  /** The cluster as fleetctl and systemd see it, for failure messages. */
  async describe(): Promise<string> {
    const parts: string[] = [];
    for (const args of [
      ['list-machines', '--full'],
      ['list-unit-files', '--full'],
      ['list-units', '--full'],
    ]) {
      const r = await this.fleetctl(args).catch((e: unknown) => ({
        code: -1,
        stdout: '',
        stderr: String(e),
      }));
      parts.push(`$ fleetctl ${args.join(' ')}\n${r.stdout}${r.stderr}`);
    }
    for (const m of this.lab.machines) {
      if (m.status !== 'running') {
        parts.push(`# ${m.name}: ${m.status}`);
        continue;
      }
      const units = await this.systemctl(m, [
        'list-units',
        '--all',
        '--plain',
        '--no-legend',
        '*.service',
      ]).catch((e: unknown) => String(e));
      parts.push(`# ${m.name} (${m.machineID.slice(0, 8)}) services:\n${units}`);
    }
    return parts.join('\n');
  }

  async close(): Promise<void> {
    await this.lab.close();
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

/** Runs `check` until it passes; on timeout the error carries the cluster picture. */
export async function converge<T>(
  cluster: FleetCluster,
  check: () => T | Promise<T>,
  options: { timeoutMs?: number; message?: string } = {},
): Promise<Exclude<T, false | undefined | null>> {
  try {
    return await eventually(check, { intervalMs: 100, ...options });
  } catch (err) {
    const picture = await cluster.describe().catch((e: unknown) => `(cannot describe: ${String(e)})`);
    throw new Error(`${(err as Error).message}\n--- cluster ---\n${picture}`);
  }
}
