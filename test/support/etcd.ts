import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A free TCP port on 127.0.0.1 (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export interface TestEtcd {
  readonly endpoint: string;
  readonly metricsUrl: string;
  readonly pid: number;
  /** SIGSTOPs etcd (it stops answering, connections stay open). */
  pause(): void;
  resume(): void;
  /** Kills and restarts it on the same port and data (simulates an outage). */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

const ETCD = '/usr/bin/etcd';

/**
 * Spawns a real single-member etcd on free loopback ports with a temp data dir
 * and fast election flags (healthy in ~0.1 s; 1 s lease TTLs allowed). Torn
 * down by its recorded PID; the data dir is removed.
 */
export async function startEtcd(): Promise<TestEtcd> {
  if (!existsSync(ETCD)) {
    throw new Error(`${ETCD} is missing: run \`make setup\` (installs Debian's etcd-server and etcd-client)`);
  }
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const dataDir = mkdtempSync(join(tmpdir(), 'fleet-etcd-'));
  const endpoint = `http://127.0.0.1:${clientPort}`;
  let child: ChildProcess | undefined;
  let stderr = '';

  const launch = async (): Promise<void> => {
    stderr = '';
    const proc = spawn(
      ETCD,
      [
        '--name=test',
        `--data-dir=${dataDir}`,
        `--listen-client-urls=${endpoint}`,
        `--advertise-client-urls=${endpoint}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=test=http://127.0.0.1:${peerPort}`,
        '--heartbeat-interval=10',
        '--election-timeout=100',
        '--logger=zap',
        '--log-outputs=stderr',
        '--log-level=error',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child = proc;
    proc.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`etcd exited (${proc.exitCode}): ${stderr}`);
      try {
        const res = await fetch(`${endpoint}/health`);
        const body = (await res.json()) as { health?: string };
        if (body.health === 'true') return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error(`etcd did not become healthy: ${stderr}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  const kill = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  };

  try {
    await launch();
  } catch (err) {
    await kill();
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  return {
    endpoint,
    metricsUrl: `${endpoint}/metrics`,
    get pid() {
      return child?.pid ?? -1;
    },
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
    stop: kill,
    start: launch,
    close: async () => {
      child?.kill('SIGCONT');
      await kill();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
