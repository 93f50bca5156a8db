import { parseCount, parsePort, type FlagSpec } from './flags.js';

/** `--no-block` (commander's key: `block` = false). */
export function noBlockFlag(what: string): FlagSpec {
  return { flags: '--no-block', description: `Do not wait until the units have ${what} before exiting.` };
}

/** `--block-attempts=N`: one attempt is 2 s of polling; 0 waits forever. */
export function blockAttemptsFlag(what: string): FlagSpec {
  return {
    flags: '--block-attempts <N>',
    defaultValue: 0,
    parse: parseCount,
    description: `Wait until the units are ${what}, performing up to N attempts (2 s each) before giving up. A value of 0 indicates no limit.`,
  };
}

export const REPLACE_FLAG: FlagSpec = {
  flags: '--replace',
  description: 'Replace the units in the cluster with the local versions when they differ.',
};

/** `--ssh-port`; no default value so that giving it can mean "use ssh". */
export const SSH_PORT_FLAG: FlagSpec = {
  flags: '--ssh-port <port>',
  parse: parsePort,
  description: 'Connect to remote hosts over SSH using this TCP port (default 22); implies SSH.',
};

/** `--fields`, `-l|--full`, `--no-legend` of the list commands. */
export function listingFlags(what: string, defaults: string, valid: readonly string[]): FlagSpec[] {
  return [
    {
      flags: '--fields <fields>',
      defaultValue: defaults,
      description: `Columns to print for each ${what}. Valid fields are "${[...valid].sort().join(',')}"`,
    },
    { flags: '-l, --full', description: 'Do not ellipsize fields on output' },
    { flags: '--no-legend', description: 'Do not print a legend (column headers)' },
  ];
}
