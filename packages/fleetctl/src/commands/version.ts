import type { CommandSpec } from '../command.js';
import { EXIT_OK } from '../errors.js';
import { FLEETCTL_VERSION } from '../version.js';

export const versionCommand: CommandSpec = {
  name: 'version',
  summary: 'Print the version and exit',
  usage: '',
  description: 'Print the version of fleetctl: "fleetctl version <version>".',
  flags: [],
  noArgs: true,
  run(session) {
    session.out(`fleetctl version ${FLEETCTL_VERSION}`);
    return Promise.resolve(EXIT_OK);
  },
};
