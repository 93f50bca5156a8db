import type { CommandSpec } from '../command.js';
import { REPLACE_FLAG, blockAttemptsFlag, noBlockFlag } from '../common-flags.js';
import { createAndTransition } from '../transitions.js';

export const loadCommand: CommandSpec = {
  name: 'load',
  summary: 'Schedule one or more units in the cluster, first submitting them if necessary.',
  usage: '[--no-block|--block-attempts=N] [--replace] UNIT...',
  description: `Load one or many units in the cluster into systemd, but do not start.

Select units to load by glob matching for units in the current working directory or matching the names of previously submitted units.

For units which are not global, load operations are performed synchronously, which means fleetctl will block until it detects that the unit(s) have transitioned to a loaded state. This behaviour can be configured with the respective --block-attempts and --no-block options. Load operations on global units are always non-blocking.

Loading a launched unit stops it (its desired state becomes loaded); fleetctl says so.`,
  flags: [noBlockFlag('been loaded'), blockAttemptsFlag('loaded'), REPLACE_FLAG],
  run: (session, args, flags) => createAndTransition(session, args, flags, 'load'),
};
