import { execFile } from 'node:child_process';
import { UnavailableError, ValidationError, validateUnitName } from '@fleet/core';

/**
 * `status` and `journal` of a unit, run on the machine it is placed on.
 * Fleet's fleetctl did this over SSH; ours asks fleetd, which runs the
 * command locally or has the unit's machine run it. The API only needs this
 * interface; fleetd decides how a command reaches another machine.
 */

/** What a command printed (stdout, then stderr) and how it exited. */
export interface CommandOutput {
  readonly exitCode: number;
  readonly output: string;
}

export interface JournalOptions {
  /** Number of journal lines, 1..{@link MAX_JOURNAL_LINES}. */
  readonly lines: number;
  /** journalctl output mode, one of {@link JOURNAL_OUTPUT_MODES}; journalctl's default when absent. */
  readonly output?: string;
}

/** Runs read-only systemd commands about one unit on a given machine. Implemented by fleetd. */
export interface UnitCommands {
  /** `systemctl status -l UNIT` on `machineID`. */
  status(unit: string, machineID: string): Promise<CommandOutput>;
  /** `journalctl --unit UNIT --no-pager -n LINES [-o OUTPUT]` on `machineID`. */
  journal(unit: string, machineID: string, options: JournalOptions): Promise<CommandOutput>;
}

/** Most journal lines one request may ask for. */
export const MAX_JOURNAL_LINES = 10_000;

/** journalctl `-o` modes that are allowed (all read-only formats; no `--follow`). */
export const JOURNAL_OUTPUT_MODES: readonly string[] = [
  'short',
  'short-full',
  'short-iso',
  'short-iso-precise',
  'short-precise',
  'short-monotonic',
  'short-unix',
  'verbose',
  'export',
  'json',
  'json-pretty',
  'json-sse',
  'json-seq',
  'cat',
  'with-unit',
];

/**
 * Checks journal options; exported so every implementation and the API apply
 * the same bounds.
 * @throws ValidationError
 */
export function validateJournalOptions(options: JournalOptions): void {
  if (!Number.isInteger(options.lines) || options.lines < 1 || options.lines > MAX_JOURNAL_LINES) {
    throw new ValidationError(`invalid lines ${String(options.lines)}: must be an integer from 1 to 10000`);
  }
  if (options.output !== undefined && !JOURNAL_OUTPUT_MODES.includes(options.output)) {
    throw new ValidationError(
      `invalid output mode ${JSON.stringify(options.output.slice(0, 40))}: must be one of ${JOURNAL_OUTPUT_MODES.join(', ')}`,
    );
  }
}

export interface LocalUnitCommandsOptions {
  /** Time a command may run before it is killed, in ms. @default 10000 */
  readonly timeoutMs?: number;
  /** Output beyond this many bytes is cut (and says so). @default 524288 */
  readonly maxOutputBytes?: number;
  /** Talk to the user's service manager (`--user`), as fleet's `systemd_user`. @default false */
  readonly user?: boolean;
  /** This machine's ID: when set, commands for other machines are refused. */
  readonly machineID?: string;
  /** @default 'systemctl' (looked up in PATH) */
  readonly systemctlPath?: string;
  /** @default 'journalctl' (looked up in PATH) */
  readonly journalctlPath?: string;
}

/**
 * {@link UnitCommands} for units on THIS machine: runs `systemctl` and
 * `journalctl` directly (argument arrays, no shell; the unit name is
 * validated first and passed after `--` or as `--unit=NAME`, so no name can
 * become an option or a command), with a timeout and an output cap.
 */
export function localUnitCommands(options: LocalUnitCommandsOptions = {}): UnitCommands {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxOutputBytes = options.maxOutputBytes ?? 512 * 1024;
  const scope = options.user ? ['--user'] : [];
  const checkMachine = (machineID: string): void => {
    if (options.machineID !== undefined && machineID !== options.machineID) {
      throw new UnavailableError(
        `unit commands for machine ${machineID} cannot run on this machine (${options.machineID})`,
      );
    }
  };
  return {
    async status(unit, machineID) {
      validateUnitName(unit);
      checkMachine(machineID);
      return run(
        options.systemctlPath ?? 'systemctl',
        [...scope, 'status', '-l', '--no-pager', '--', unit],
        timeoutMs,
        maxOutputBytes,
      );
    },
    async journal(unit, machineID, journalOptions) {
      validateUnitName(unit);
      validateJournalOptions(journalOptions);
      checkMachine(machineID);
      const args = [...scope, `--unit=${unit}`, '--no-pager', '-n', String(journalOptions.lines)];
      if (journalOptions.output !== undefined) args.push('-o', journalOptions.output);
      return run(options.journalctlPath ?? 'journalctl', args, timeoutMs, maxOutputBytes);
    },
  };
}

function run(file: string, args: string[], timeoutMs: number, maxBytes: number): Promise<CommandOutput> {
  const command = file.slice(file.lastIndexOf('/') + 1);
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: maxBytes,
        encoding: 'utf8',
        // Plain text, no pager, whatever the daemon's environment says.
        env: { ...process.env, SYSTEMD_COLORS: '0', SYSTEMD_PAGER: '', PAGER: 'cat' },
      },
      (err, stdout, stderr) => {
        const output = `${stdout}${stderr}`;
        if (err === null) {
          resolve({ exitCode: 0, output });
          return;
        }
        const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: number | string };
        if (e.code === 'ENOENT') {
          reject(new UnavailableError(`${command} is not available on this machine`));
        } else if (e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
          resolve({
            exitCode: 0,
            output: `${output.slice(0, maxBytes)}\n[output truncated at ${maxBytes} bytes]\n`,
          });
        } else if (e.killed) {
          reject(new UnavailableError(`${command} did not finish within ${timeoutMs} ms`));
        } else if (typeof e.code === 'number') {
          // systemctl status exits 3 for a stopped unit, 4 for an unknown one: an answer, not a failure.
          resolve({ exitCode: e.code, output });
        } else {
          reject(new UnavailableError(`${command} failed: ${e.message}`));
        }
      },
    );
  });
}
