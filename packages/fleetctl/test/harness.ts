import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeFleetd, type FakeFleetdOptions } from '@fleet/client';
import { main, type Io } from '@fleet/fleetctl';

/** What one in-process fleetctl run printed and returned. */
export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly env?: Record<string, string | undefined>;
  readonly cwd?: string;
  readonly signal?: AbortSignal;
  /** @default 10 (one block attempt = 80 ms) */
  readonly pollIntervalMs?: number;
}

/** Runs fleetctl in-process with captured output. */
export async function runFleetctl(
  args: readonly string[],
  options: RunOptions & { cwd: string },
): Promise<RunResult> {
  let stdout = '';
  let stderr = '';
  const io: Io = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { HOME: options.cwd, ...options.env },
    cwd: options.cwd,
    signal: options.signal,
    pollIntervalMs: options.pollIntervalMs ?? 10,
  };
  const code = await main(args, io);
  return { code, stdout, stderr };
}

/** A fake fleetd, a temp working directory and a `run` bound to both. */
export interface Cluster {
  readonly fake: FakeFleetd;
  readonly endpoint: string;
  readonly dir: string;
  run(args: readonly string[], options?: RunOptions): Promise<RunResult>;
  /** Writes a unit file into the working directory. */
  write(name: string, text: string): void;
  close(): Promise<void>;
}

export const MACHINE_A = '960a9f6277934d0b8a5a8a9cd8b18e23';
export const MACHINE_B = 'deb19cd2b7e04f6f98c96e8b2d95f4ba';

export const HELLO = `[Unit]
Description=MyApp
After=docker.service
Requires=docker.service

[Service]
ExecStart=/usr/bin/docker run busybox /bin/sh -c "while true; do echo Hello World; sleep 1; done"
`;

/** The walkthrough's replicas (without Docker): no two on one machine. */
export const APACHE = `[Unit]
Description=My Apache Frontend

[Service]
ExecStart=/bin/sh -c "while true; do echo apache; sleep 2; done"

[X-Fleet]
X-Conflicts=apache.*.service
`;

/** Starts a fake fleetd (unix socket unless `tcp`) with the story's two machines. */
export async function startCluster(
  options: FakeFleetdOptions & { tcp?: boolean; machines?: boolean } = {},
): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetctl-test-'));
  const fake = new FakeFleetd(options);
  if (options.machines !== false) {
    fake.addMachine({ id: MACHINE_A, primaryIP: '192.168.2.52' });
    fake.addMachine({ id: MACHINE_B, primaryIP: '192.168.2.53' });
  }
  const endpoint = options.tcp ? await fake.listenTcp() : await fake.listenUnix(join(dir, 'fleet.sock'));
  return {
    fake,
    endpoint,
    dir,
    run: (args, opts = {}) =>
      runFleetctl(args, { ...opts, cwd: opts.cwd ?? dir, env: { FLEETCTL_ENDPOINT: endpoint, ...opts.env } }),
    write: (name, text) => writeFileSync(join(dir, name), text),
    close: async () => {
      await fake.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Writes a stand-in for the ssh program: `-L local:remote` forwards a local
 * unix socket (as `--tunnel` uses it); anything else prints its argv as JSON
 * and exits with $FAKE_SSH_EXIT.
 */
export function writeFakeSsh(dir: string): string {
  const path = join(dir, 'fake-ssh');
  writeFileSync(
    path,
    `#!${process.execPath}
const net = require('node:net');
const args = process.argv.slice(2);
const l = args.indexOf('-L');
if (l === -1) {
  process.stdout.write(JSON.stringify(args) + '\\n');
  process.exit(Number(process.env.FAKE_SSH_EXIT || 0));
}
const spec = args[l + 1];
const colon = spec.indexOf(':');
const local = spec.slice(0, colon);
const remote = spec.slice(colon + 1);
const target = remote.startsWith('/') ? { path: remote } : { host: remote.slice(0, remote.lastIndexOf(':')), port: Number(remote.slice(remote.lastIndexOf(':') + 1)) };
net.createServer((c) => {
  const r = net.connect(target);
  c.pipe(r).pipe(c);
  r.on('error', () => c.destroy());
  c.on('error', () => r.destroy());
}).listen(local);
process.on('SIGTERM', () => process.exit(0));
`,
  );
  chmodSync(path, 0o755);
  return path;
}

/** Renders TABs as a terminal with 8-column tab stops does. */
export function expandTabs(text: string): string {
  return text
    .split('\n')
    .map((line) => {
      let out = '';
      for (const c of line) out += c === '\t' ? ' '.repeat(8 - (out.length % 8)) : c;
      return out;
    })
    .join('\n');
}
