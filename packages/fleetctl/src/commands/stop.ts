import type { CommandSpec } from '../command.js';
import { blockAttemptsFlag, noBlockFlag } from '../common-flags.js';
import { transitionExisting } from '../transitions.js';

export const stopCommand: CommandSpec = {
  name: 'stop',
  summary: 'Instruct systemd to stop one or more units in the cluster.',
  usage: '[--no-block|--block-attempts=N] UNIT...',
  description: `Stop one or more units from running in the cluster, but allow them to be started again in the future.

Instructs systemd on the host machine to stop the unit, deferring to systemd completely for any custom stop directives (i.e. ExecStop option in the unit file).

For units which are not global, stop operations are performed synchronously, which means fleetctl will block until it detects that the unit(s) have transitioned to a stopped state. This behaviour can be configured with the respective --block-attempts and --no-block options. Stop operations on global units are always non-blocking.

Stop a single unit:
	fleetctl stop foo.service

Stop an entire directory of units with glob matching, without waiting:
	fleetctl stop --no-block myservice/*`,
  flags: [noBlockFlag('stopped'), blockAttemptsFlag('stopped')],
  run: (session, args, flags) => transitionExisting(session, args, flags, 'stop'),
};
