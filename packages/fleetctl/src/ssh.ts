import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CommandError, EXIT_FAILURE } from './errors.js';
import type { Io } from './io.js';

/**
 * fleetctl reaches machines with the system's `ssh` program, spawned with a
 * fixed argument vector (never through a local shell). Fleet linked an SSH
 * library instead; the flags keep their meaning:
 * `--ssh-username` → `-l`, `--ssh-port` → `-p`, `--forward-agent` → `-A`,
 * `--ssh-timeout` → `ConnectTimeout`, `--strict-host-key-checking` and
 * `--known-hosts-file` → `StrictHostKeyChecking`/`UserKnownHostsFile`,
 * `--tunnel` → a ProxyCommand through the bastion.
 */
export interface SshSettings {
  /** The ssh program. @default 'ssh' (env FLEETCTL_SSH_BINARY) */
  readonly binary: string;
  readonly username: string;
  /** Port of the target machine. @default 22 */
  readonly port: number;
  readonly strictHostKeyChecking: boolean;
  /** Already `~`-expanded. */
  readonly knownHostsFile: string;
  /** Seconds. */
  readonly timeoutSec: number;
  /** `host[:port]` of the bastion, or ''. */
  readonly tunnel: string;
  readonly forwardAgent: boolean;
}

/** `host`, `host:port`, `[v6]:port` → parts (fleet appended `:22` to a bare tunnel host). */
export function splitHostPort(addr: string, defaultPort: number): { host: string; port: number } {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(addr);
  if (v6) return { host: v6[1] as string, port: v6[2] === undefined ? defaultPort : Number(v6[2]) };
  const m = /^([^:]+):(\d+)$/.exec(addr);
  if (m) return { host: m[1] as string, port: Number(m[2]) };
  return { host: addr, port: defaultPort };
}

/** Quotes a word for a POSIX shell (the remote one, or ssh's ProxyCommand shell). */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9@%+=:,./_-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Options every ssh we start shares: identity, host keys, timeout. */
function commonOptions(s: SshSettings): string[] {
  const hostKeys = s.strictHostKeyChecking
    ? // "ask" is what fleet did: prompt for an unknown key, refuse a changed one.
      ['-o', 'StrictHostKeyChecking=ask', '-o', `UserKnownHostsFile=${s.knownHostsFile}`]
    : ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null'];
  return ['-o', `ConnectTimeout=${Math.max(1, Math.ceil(s.timeoutSec))}`, '-l', s.username, ...hostKeys];
}

/** ProxyCommand that reaches the target through the `--tunnel` bastion. */
function proxyCommand(s: SshSettings): string[] {
  if (s.tunnel === '') return [];
  const bastion = splitHostPort(s.tunnel, 22);
  const words = [
    s.binary,
    ...commonOptions(s),
    '-p',
    String(bastion.port),
    '-W',
    '%h:%p',
    '--',
    bastion.host,
  ];
  // ssh expands %-tokens in ProxyCommand: only %h:%p are ours.
  const command = words.map((w) => (w === '%h:%p' ? w : shellQuote(w).replace(/%/g, '%%'))).join(' ');
  return ['-o', `ProxyCommand=${command}`];
}

/**
 * The argument vector of `ssh` to `host`, running `command` there (a shell
 * command line, quoted by the caller) or a login shell when undefined.
 */
export function sshArgs(s: SshSettings, host: string, command?: string): string[] {
  const args = [...commonOptions(s), '-p', String(s.port)];
  if (s.forwardAgent) args.push('-A');
  args.push(...proxyCommand(s));
  // `--` before the host: nothing after it is read as an ssh option.
  args.push('--', host);
  if (command !== undefined) args.push(command);
  return args;
}

/** Fleet kept its known hosts in ~/.fleetctl/known_hosts; ssh will not create the directory. */
function ensureKnownHostsDir(s: SshSettings): void {
  if (!s.strictHostKeyChecking) return;
  const dir = dirname(s.knownHostsFile);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/**
 * Runs ssh with `args` and resolves with its exit status (ssh passes through
 * the remote command's; 255 is ssh's own failure).
 */
export function runSsh(io: Io, s: SshSettings, args: readonly string[]): Promise<number> {
  ensureKnownHostsDir(s);
  return new Promise((resolve, reject) => {
    const child = spawn(s.binary, args, {
      env: { ...io.env },
      stdio: io.inheritStdio ? 'inherit' : ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d: Buffer) => io.stdout.write(d.toString('utf8')));
    child.stderr?.on('data', (d: Buffer) => io.stderr.write(d.toString('utf8')));
    child.on('error', (err) => reject(new CommandError(`cannot run ${s.binary}: ${err.message}`)));
    child.on('close', (code, signal) =>
      resolve(code ?? (signal === null ? EXIT_FAILURE : 128 + signalNumber(signal))),
    );
  });
}

function signalNumber(signal: NodeJS.Signals): number {
  return signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : signal === 'SIGKILL' ? 9 : 1;
}

/** A local unix socket that ssh forwards to fleetd's endpoint on the far side of the bastion. */
export interface Tunnel {
  readonly socketPath: string;
  close(): void;
}

/**
 * `--tunnel`: starts `ssh -N -L <local socket>:<remote>` to the bastion and
 * waits for the local socket. `remote` is the endpoint as the bastion sees it:
 * a socket path (`/var/run/fleet.sock`) or `host:port`.
 */
export async function openTunnel(io: Io, s: SshSettings, remote: string): Promise<Tunnel> {
  ensureKnownHostsDir(s);
  const dir = mkdtempSync(join(tmpdir(), 'fleetctl-tunnel-'));
  const socketPath = join(dir, 'fleet.sock');
  const bastion = splitHostPort(s.tunnel, 22);
  const args = [
    ...commonOptions(s),
    '-p',
    String(bastion.port),
    '-N',
    '-o',
    'ExitOnForwardFailure=yes',
    '-L',
    `${socketPath}:${remote}`,
    '--',
    bastion.host,
  ];
  const child = spawn(s.binary, args, {
    env: { ...io.env },
    stdio: [io.inheritStdio ? 'inherit' : 'ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-2000);
  });
  let exited: string | undefined;
  child.on('error', (err) => (exited = err.message));
  child.on('exit', (code) => (exited ??= `ssh exited with status ${code ?? 'unknown'}`));
  const close = (): void => {
    process.removeListener('exit', close);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  // Also when the process ends without reaching Session.close (an uncaught signal handler, exit()).
  process.once('exit', close);
  const deadline = Date.now() + s.timeoutSec * 1000 + 1000;
  while (!existsSync(socketPath)) {
    const last = stderr.trim().split('\n').at(-1) ?? '';
    if (exited !== undefined || Date.now() > deadline) {
      close();
      const why = exited ?? `no forward within ${s.timeoutSec}s (--ssh-timeout)`;
      throw new CommandError(
        `failed initializing SSH tunnel through ${s.tunnel}: ${last !== '' ? last : why}`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { socketPath, close };
}
