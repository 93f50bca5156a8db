import type { CommandSpec } from '../command.js';
import { REPLACE_FLAG, blockAttemptsFlag, noBlockFlag } from '../common-flags.js';
import { createAndTransition } from '../transitions.js';

export const startCommand: CommandSpec = {
  name: 'start',
  summary:
    'Instruct systemd to start one or more units in the cluster, first submitting and loading if necessary.',
  usage: '[--no-block|--block-attempts=N] [--replace] UNIT...',
  description: `Start one or many units on the cluster. Select units to start by glob matching for units in the current working directory or matching names of previously submitted units.

For units which are not global, start operations are performed synchronously, which means fleetctl will block until it detects that the unit(s) have transitioned to a started state, then checks for up to 2 s that systemd reports them active. This behaviour can be configured with the respective --block-attempts and --no-block options. Start operations on global units are always non-blocking.

While a unit waits for a machine, fleetctl prints why the cluster cannot place it.

Start a single unit:
	fleetctl start foo.service

Start an entire directory of units with glob matching:
	fleetctl start myservice/*

Start an instance of a template (from web@.service in the cluster or beside the argument):
	fleetctl start web@1.service`,
  flags: [noBlockFlag('launched'), blockAttemptsFlag('launched'), REPLACE_FLAG],
  run: (session, args, flags) => createAndTransition(session, args, flags, 'start'),
};
