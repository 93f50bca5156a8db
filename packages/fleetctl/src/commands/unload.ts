import type { CommandSpec } from '../command.js';
import { blockAttemptsFlag, noBlockFlag } from '../common-flags.js';
import { transitionExisting } from '../transitions.js';

export const unloadCommand: CommandSpec = {
  name: 'unload',
  summary: 'Unschedule one or more units in the cluster.',
  usage: '[--no-block|--block-attempts=N] UNIT...',
  description: `Unload one or more units: stop them if they run and remove them from their machines. They stay submitted and can be loaded or started again.

fleetctl waits until each unit reports the inactive state; see --block-attempts and --no-block.`,
  flags: [noBlockFlag('become inactive'), blockAttemptsFlag('inactive')],
  run: (session, args, flags) => transitionExisting(session, args, flags, 'unload'),
};
