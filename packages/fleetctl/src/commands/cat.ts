import { serializeUnitOptions } from '@fleet/core';
import type { CommandSpec } from '../command.js';
import { CommandError, EXIT_OK, UsageError, failure } from '../errors.js';
import { unitArg } from '../unit-args.js';

export const catCommand: CommandSpec = {
  name: 'cat',
  summary: 'Output the contents of a submitted unit',
  usage: 'UNIT',
  description: `Outputs the unit file that is currently loaded in the cluster, in its canonical form (the form that is hashed and written to machines). Useful to verify the correct version of a unit is running.

The text is printed exactly: every line, the last one included, ends in a newline, and nothing is added.`,
  flags: [],
  async run(session, args) {
    if (args.length !== 1) throw new UsageError('One unit file must be provided');
    const { name } = unitArg(args[0] as string, session.io.cwd);
    const client = await session.client();
    let unit;
    try {
      unit = await client.getUnit(name);
    } catch (err) {
      throw failure(`Error retrieving Unit ${name}`, err);
    }
    if (unit === undefined) throw new CommandError(`Unit ${name} not found`);
    // Like fleet: the canonical text as is, no newline added.
    session.io.stdout.write(serializeUnitOptions(unit.options ?? []));
    return EXIT_OK;
  },
};
