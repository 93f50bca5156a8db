import type { CommandSpec } from '../command.js';
import { REPLACE_FLAG } from '../common-flags.js';
import { EXIT_OK, failure } from '../errors.js';
import { ensureUnits, unitArgs } from '../unit-args.js';

export const submitCommand: CommandSpec = {
  name: 'submit',
  summary: 'Upload one or more units to the cluster without starting them',
  usage: '[--replace] UNIT...',
  description: `Upload one or more units to the cluster without starting them. Useful for validating units before they are started.

This operation is idempotent: a unit that already exists in the cluster with the same contents is left alone. One whose local file differs is an error unless --replace is given.

Submit a single unit:
	fleetctl submit foo.service

Submit a directory of units with glob matching:
	fleetctl submit myservice/*`,
  flags: [REPLACE_FLAG],
  async run(session, args, flags) {
    const units = unitArgs(args, session.io.cwd);
    const client = await session.client();
    try {
      await ensureUnits(session, client, units, 'submit', flags.replace === true);
    } catch (err) {
      throw failure('Error creating units', err);
    }
    return EXIT_OK;
  },
};
