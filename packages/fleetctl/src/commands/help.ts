import { resolveCommandName } from '../argv.js';
import type { CommandSpec } from '../command.js';
import { EXIT_OK, UsageError } from '../errors.js';
import { commandHelp, globalHelp } from '../help.js';

export const helpCommand: CommandSpec = {
  name: 'help',
  summary: 'Show a list of commands or help for one command',
  usage: '[COMMAND]',
  description: 'Show a list of commands, global options and exit statuses, or the help of one command.',
  flags: [],
  run(session, args) {
    if (args.length > 1) throw new UsageError('help takes at most one command');
    const word = args[0];
    if (word === undefined) {
      session.io.stdout.write(globalHelp(session.commands));
      return Promise.resolve(EXIT_OK);
    }
    const name = resolveCommandName(word, session.commands);
    const command = session.commands.find((c) => c.name === name);
    session.io.stdout.write(command === undefined ? globalHelp(session.commands) : commandHelp(command));
    return Promise.resolve(EXIT_OK);
  },
};
