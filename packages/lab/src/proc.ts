/**
 * Running commands and handling the processes the lab started. Processes are
 * only ever signalled through a {@link ProcessRef} whose start time still
 * matches, so a PID the kernel has since reused is never touched.
 */
import { type ChildProcess, spawn, type SpawnOptions } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { InternalError, UnavailableError, errorMessage } from '@fleet/core';
import type { ProcessRef } from './state.js';

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Written to the command's standard input, which is then closed. */
  readonly input?: string | Buffer;
  /** Kill the command (its whole process group) after this long. */
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * Runs a command to completion and collects its output. The command runs in
 * its own process group so a timeout kills everything it started (including
 * children in other PID namespaces, which keep the group). Exit by signal N
 * is reported as code 128 + N, like a shell.
 */
export function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const spawnOptions: SpawnOptions = { stdio: ['pipe', 'pipe', 'pipe'], detached: true };
    if (options.env !== undefined) spawnOptions.env = options.env;
    const child = spawn(file, args, spawnOptions);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    // EPIPE when the command does not read its input is not an error of ours.
    child.stdin?.on('error', () => undefined);
    let timedOut = false;
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            if (child.pid !== undefined) {
              try {
                process.kill(-child.pid, 'SIGKILL');
              } catch {
                // already gone
              }
            }
          }, options.timeoutMs);
    child.on('error', (e) => {
      if (timer !== undefined) clearTimeout(timer);
      reject(new UnavailableError(`cannot run ${file}: ${errorMessage(e)}`, { cause: e, fields: { file } }));
    });
    child.on('close', (code, signal) => {
      if (timer !== undefined) clearTimeout(timer);
      const stderr = Buffer.concat(err).toString('utf8');
      if (timedOut) {
        reject(
          new UnavailableError(`${file} ${args.join(' ')} timed out after ${options.timeoutMs} ms`, {
            fields: { file, timeoutMs: options.timeoutMs, stderr },
          }),
        );
        return;
      }
      const signalNumber = signal === null ? 0 : constants.signals[signal];
      resolve({
        code: code ?? 128 + signalNumber,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr,
      });
    });
    child.stdin?.end(options.input ?? '');
  });
}

/** Runs a command that must succeed; anything else is an InternalError carrying its stderr. */
export async function runOk(
  file: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<string> {
  const r = await run(file, args, options);
  if (r.code !== 0) {
    const detail = r.stderr.trim().split('\n').slice(-3).join('; ');
    throw new InternalError(`${file} ${args.join(' ')} failed (exit ${r.code}): ${detail}`, {
      fields: { file, args, code: r.code, stderr: r.stderr },
    });
  }
  return r.stdout;
}

/** Start time of a live process (field 22 of /proc/<pid>/stat), or undefined if it does not exist. */
export async function processStartTime(pid: number): Promise<number | undefined> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); field 22 is fields[19]. A zombie counts as gone.
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  const start = Number(fields[19]);
  return Number.isFinite(start) ? start : undefined;
}

/**
 * True until the process `ref` names is reaped: a zombie still counts (its
 * /proc entry and PID exist), a PID reused by another process does not.
 */
export async function isUnreaped(ref: ProcessRef): Promise<boolean> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${ref.pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]) === ref.startTime;
}

/** A reference to a live process, or undefined if `pid` does not exist. */
export async function processRef(pid: number): Promise<ProcessRef | undefined> {
  const startTime = await processStartTime(pid);
  return startTime === undefined ? undefined : { pid, startTime };
}

/** True while the very process `ref` names is alive (not merely some process with that PID). */
export async function isAlive(ref: ProcessRef | undefined): Promise<boolean> {
  if (ref === undefined) return false;
  return (await processStartTime(ref.pid)) === ref.startTime;
}

/** Signals the process `ref` names if it is still that process; returns whether it was signalled. */
export async function signalProcess(ref: ProcessRef | undefined, signal: NodeJS.Signals): Promise<boolean> {
  if (!(await isAlive(ref)) || ref === undefined) return false;
  try {
    process.kill(ref.pid, signal);
    return true;
  } catch {
    return false;
  }
}

export interface WaitOptions {
  readonly timeoutMs: number;
  /** @default 20 */
  readonly intervalMs?: number;
  /** What is awaited, for the timeout message ("machine m1 to boot"). */
  readonly what: string;
  readonly signal?: AbortSignal;
}

/**
 * Polls `probe` until it returns something other than undefined, and returns
 * that. Times out with an UnavailableError naming `what` and the last problem
 * `probe` reported through `note`.
 */
export async function waitFor<T>(
  probe: (note: (problem: string) => void) => Promise<T | undefined>,
  options: WaitOptions,
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let last = '';
  const note = (problem: string): void => {
    last = problem;
  };
  for (;;) {
    options.signal?.throwIfAborted();
    const value = await probe(note);
    if (value !== undefined) return value;
    if (Date.now() >= deadline) {
      throw new UnavailableError(
        `timed out after ${options.timeoutMs} ms waiting for ${options.what}${last === '' ? '' : ` (${last})`}`,
        { fields: { timeoutMs: options.timeoutMs } },
      );
    }
    await sleep(
      options.intervalMs ?? 20,
      undefined,
      options.signal === undefined ? {} : { signal: options.signal },
    );
  }
}

/** The last `lines` lines of a log file, or '' if it cannot be read. */
export async function tail(file: string, lines = 10): Promise<string> {
  try {
    const text = await readFile(file, 'utf8');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

export interface DetachedOptions {
  /** Absolute cgroup directory the process moves into before it execs `argv`. */
  readonly cgroupDir: string;
  /** Standard output and error are appended here. */
  readonly logFile: string;
  /** Keep a pipe to standard input (to signal the process later); otherwise /dev/null. */
  readonly stdinPipe?: boolean;
}

/**
 * Starts `argv` as a long-lived process that outlives this one: its own
 * session, output to a log file, first moved into `cgroupDir` (so every
 * process it ever starts stays in the lab's cgroup and `down` can find it).
 */
export function spawnDetached(argv: readonly string[], options: DetachedOptions): ChildProcess {
  const log = openSync(options.logFile, 'a', 0o600);
  try {
    const child = spawn(
      'bash',
      ['--norc', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', options.cgroupDir, ...argv],
      {
        detached: true,
        stdio: [options.stdinPipe === true ? 'pipe' : 'ignore', log, log],
        env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' },
      },
    );
    child.stdin?.on('error', () => undefined);
    // Reap it if it exits while we live, but never keep this process alive for it.
    child.on('error', () => undefined);
    child.unref();
    return child;
  } finally {
    closeSync(log);
  }
}
