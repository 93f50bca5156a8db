import { ApiError } from '@fleet/client';
import { errorMessage } from '@fleet/core';
import type { CommandSpec } from '../command.js';
import { EXIT_FAILURE, EXIT_OK } from '../errors.js';
import { findUnits } from '../transitions.js';

export const destroyCommand: CommandSpec = {
  name: 'destroy',
  summary: 'Destroy one or more units in the cluster',
  usage: 'UNIT...',
  description: `Completely remove one or more running or submitted units from the cluster.

Instructs systemd on the host machine to stop the unit, deferring to systemd completely for any custom stop directives (i.e. ExecStop option in the unit file).

Destroyed units are impossible to start unless re-submitted. Destroying a unit that does not exist only prints a warning: the goal, no such unit, is met.`,
  flags: [],
  async run(session, args) {
    const lookup = await findUnits(session, args, 'Error destroying units');
    for (const name of lookup.missing) session.err(`WARNING: Unit ${name} does not exist`);
    let exit = EXIT_OK;
    for (const u of lookup.found) {
      try {
        await lookup.client.destroyUnit(u.name);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          session.err(`WARNING: Unit ${u.name} does not exist`);
          continue;
        }
        session.err(`Error destroying units: ${errorMessage(err)}`);
        exit = EXIT_FAILURE;
        continue;
      }
      session.out(`Destroyed ${u.name}`);
    }
    return exit;
  },
};
