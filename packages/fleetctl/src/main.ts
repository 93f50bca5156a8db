import { Command, CommanderError } from 'commander';
import { errorMessage } from '@fleet/core';
import { prepareArgv } from './argv.js';
import type { CommandSpec } from './command.js';
import { catCommand } from './commands/cat.js';
import { destroyCommand } from './commands/destroy.js';
import { helpCommand } from './commands/help.js';
import { journalCommand } from './commands/journal.js';
import { listMachinesCommand } from './commands/list-machines.js';
import { listUnitFilesCommand } from './commands/list-unit-files.js';
import { listUnitsCommand } from './commands/list-units.js';
import { loadCommand } from './commands/load.js';
import { restartCommand } from './commands/restart.js';
import { sshCommand } from './commands/ssh.js';
import { startCommand } from './commands/start.js';
import { statusCommand } from './commands/status.js';
import { stopCommand } from './commands/stop.js';
import { submitCommand } from './commands/submit.js';
import { unloadCommand } from './commands/unload.js';
import { versionCommand } from './commands/version.js';
import { CommandError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError } from './errors.js';
import { GLOBAL_FLAGS, compileGlobalOptions, declareGlobalFlags } from './global-options.js';
import { commandHelp, globalHelp, usageLine } from './help.js';
import type { Io } from './io.js';
import { Session } from './session.js';

/** Every command, in the order help lists them. */
export const COMMANDS: readonly CommandSpec[] = [
  catCommand,
  destroyCommand,
  helpCommand,
  journalCommand,
  listMachinesCommand,
  listUnitFilesCommand,
  listUnitsCommand,
  loadCommand,
  restartCommand,
  sshCommand,
  startCommand,
  statusCommand,
  stopCommand,
  submitCommand,
  unloadCommand,
  versionCommand,
];

/** What one parse decided to run. */
interface Invocation {
  readonly spec: CommandSpec | undefined;
  readonly args: readonly string[];
  readonly flags: Readonly<Record<string, unknown>>;
}

function buildProgram(onInvoke: (inv: Invocation) => void): Command {
  const program = new Command('fleetctl');
  program.exitOverride().helpOption(false).helpCommand(false);
  // We print our own one-line errors and usage; commander prints nothing.
  program.configureOutput({
    writeOut: () => undefined,
    writeErr: () => undefined,
    outputError: () => undefined,
  });
  declareGlobalFlags(program);
  program.action(() => onInvoke({ spec: undefined, args: [], flags: {} }));
  for (const spec of COMMANDS) {
    const cmd = program.command(spec.name).helpOption(false).exitOverride();
    cmd.configureOutput({
      writeOut: () => undefined,
      writeErr: () => undefined,
      outputError: () => undefined,
    });
    if (!spec.noArgs) cmd.argument('[args...]');
    for (const f of spec.flags) {
      if (f.parse) cmd.option(f.flags, f.description, f.parse, f.defaultValue);
      else cmd.option(f.flags, f.description, f.defaultValue as string | boolean | undefined);
    }
    cmd.action((...params: unknown[]) => {
      const self = params.at(-1) as Command;
      onInvoke({ spec, args: self.args, flags: self.opts() });
    });
  }
  return program;
}

/** commander's `error: unknown option '--x'` → `unknown option '--x'`. */
function commanderMessage(err: CommanderError): string {
  return err.message.replace(/^error: /, '');
}

/**
 * Runs fleetctl with `argv` (without the program name) and returns the exit
 * status. Never throws and never exits the process: every failure becomes
 * one line on stderr (plus a usage line for usage errors).
 */
export async function main(argv: readonly string[], io: Io): Promise<number> {
  const err = (line: string): void => void io.stderr.write(`${line}\n`);
  let commandName: string | undefined;
  let session: Session | undefined;
  try {
    const prepared = prepareArgv(argv, COMMANDS, GLOBAL_FLAGS);
    commandName = prepared.command;
    let invocation: Invocation | undefined;
    const program = buildProgram((inv) => (invocation = inv));
    await program.parseAsync(prepared.argv, { from: 'user' });
    if (invocation === undefined) return EXIT_OK;
    const globals = compileGlobalOptions(program, io.env);
    session = new Session(io, globals, COMMANDS);
    const { spec } = invocation;
    if (globals.version) return await versionCommand.run(session, [], {});
    if (spec === undefined || globals.help) {
      io.stdout.write(spec === undefined ? globalHelp(COMMANDS) : commandHelp(spec));
      return EXIT_OK;
    }
    return await spec.run(session, invocation.args, invocation.flags);
  } catch (e) {
    const command = COMMANDS.find((c) => c.name === commandName);
    if (
      e instanceof UsageError ||
      (e instanceof CommanderError && e.code !== 'commander.executeSubCommandAsync')
    ) {
      err(e instanceof CommanderError ? commanderMessage(e) : e.message);
      err(usageLine(command));
      err(
        command === undefined
          ? "Run 'fleetctl help' for usage."
          : `Run 'fleetctl help ${command.name}' for usage.`,
      );
      return EXIT_USAGE;
    }
    if (e instanceof CommandError) {
      err(e.message);
      return e.exitCode;
    }
    err(`Error: ${errorMessage(e)}`);
    if (session?.globals.debug && e instanceof Error && e.stack) err(e.stack);
    return EXIT_FAILURE;
  } finally {
    session?.close();
  }
}
