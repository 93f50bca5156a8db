import { errorMessage } from '@fleet/core';
import type { CommandSpec } from '../command.js';
import { isGlobalUnit } from '../columns.js';
import { blockAttemptsFlag } from '../common-flags.js';
import { EXIT_FAILURE, EXIT_OK } from '../errors.js';
import { findUnits, transition } from '../transitions.js';
import { blockAttempts } from '../wait.js';

export const restartCommand: CommandSpec = {
  name: 'restart',
  summary: 'Instruct systemd to rolling restart one or more units in the cluster.',
  usage: '[--block-attempts=N] UNIT...',
  description: `Restarts one or more units in the cluster, one after the other. A launched unit is stopped (fleetctl waits until it is loaded) and started again; a loaded unit is started.

For units which are not global, fleetctl blocks until each unit has been stopped and started again; --block-attempts limits each wait. Restart operations on global units are always non-blocking.

Restart a single unit:
	fleetctl restart foo.service`,
  flags: [blockAttemptsFlag('stopped, then started')],
  async run(session, args, flags) {
    const lookup = await findUnits(session, args, 'Error restarting units');
    const { client } = lookup;
    const problems = lookup.missing.map((n) => `Unit ${n} does not exist.`);
    for (const u of lookup.found) {
      const active =
        u.desiredState === 'launched' || u.desiredState === 'loaded' || u.currentState !== 'inactive';
      if (!isGlobalUnit(u.name, u.options) && !active)
        problems.push(`Unable to restart unit ${u.name} in state inactive`);
    }
    for (const p of problems) session.err(p);
    if (problems.length > 0) return EXIT_FAILURE;
    const attempts = blockAttempts(flags);
    for (const u of lookup.found) {
      if (isGlobalUnit(u.name, u.options)) {
        try {
          await client.setUnitTargetState(u.name, 'loaded');
          await client.setUnitTargetState(u.name, 'launched');
        } catch (err) {
          session.err(`Error restarting units: ${errorMessage(err)}`);
          return EXIT_FAILURE;
        }
        session.out(`Triggered global unit ${u.name} restart`);
        continue;
      }
      if (u.desiredState === 'launched') {
        const stopped = await transition(session, client, [u], 'stop', attempts);
        if (stopped !== EXIT_OK) return stopped;
      }
      // After the stop the unit's desired state is loaded; start sets it again.
      const started = await transition(
        session,
        client,
        [{ ...u, desiredState: 'loaded' }],
        'start',
        attempts,
      );
      if (started !== EXIT_OK) return started;
    }
    return EXIT_OK;
  },
};
