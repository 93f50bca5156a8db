import type { CommandInfo } from './command.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './errors.js';
import type { FlagSpec } from './flags.js';
import { GLOBAL_FLAGS } from './global-options.js';
import { formatTable } from './tabwriter.js';
import { FLEETCTL_VERSION } from './version.js';

export const CLI_DESCRIPTION =
  'fleetctl is a command-line interface to fleet, the cluster-wide CoreOS init system.';

export const GLOBAL_USAGE_LINE = 'fleetctl [global options] <command> [command options] [arguments...]';

/** `--lines <N>` → `--lines=N`, as Go's flag help showed flags. */
function flagLabel(flag: FlagSpec): string {
  return flag.flags.replace(/ <([^>]+)>/, '=$1').replace(/ \[([^\]]+)\]/, '[=$1]');
}

function flagDescription(flag: FlagSpec): string {
  const d = flag.defaultValue;
  const shown = d === undefined || d === '' || d === false || d === true ? '' : ` (default ${String(d)})`;
  return `${flag.description}${shown}`;
}

function flagRows(flags: readonly FlagSpec[]): string {
  return formatTable(flags.filter((f) => !f.hidden).map((f) => ['', flagLabel(f), flagDescription(f)]));
}

/** Indents every non-empty line of a description by one TAB. */
function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => (line === '' ? '' : `\t${line}`))
    .join('\n');
}

/** `fleetctl help`: commands, global flags, environment, exit statuses. */
export function globalHelp(commands: readonly CommandInfo[]): string {
  const visible = commands.filter((c) => !c.hidden);
  return `NAME:
\tfleetctl - ${CLI_DESCRIPTION}

USAGE:
\t${GLOBAL_USAGE_LINE}

VERSION:
\t${FLEETCTL_VERSION}

COMMANDS:
${formatTable(visible.map((c) => ['', c.name, c.summary]))}
GLOBAL OPTIONS:
${flagRows(GLOBAL_FLAGS)}
ENVIRONMENT:
\tEvery global option can also be set as FLEETCTL_<OPTION> (upper case, "-" as "_"),
\te.g. FLEETCTL_ENDPOINT=http://10.0.0.1:49153 or FLEETCTL_STRICT_HOST_KEY_CHECKING=false.
\tA flag on the command line wins over the environment. FLEETCTL_SSH_BINARY names the ssh program.

EXIT STATUS:
${formatTable([
  ['', String(EXIT_OK), 'success'],
  [
    '',
    String(EXIT_FAILURE),
    'failure: fleetd unreachable or refused the request, a unit is missing, a wait timed out',
  ],
  ['', String(EXIT_USAGE), 'usage error: unknown command or flag, bad flag value, wrong arguments'],
])}\tstatus, journal and ssh exit with the status of the command they ran on the machine.

Unambiguous command prefixes work: "fleetctl list-m" is "fleetctl list-machines".
Run "fleetctl help <command>" for more details on a specific command.
`;
}

/** `fleetctl help <command>`. */
export function commandHelp(command: CommandInfo): string {
  const options = command.flags.length === 0 ? '' : `\nOPTIONS:\n${flagRows(command.flags)}`;
  return `NAME:
\tfleetctl ${command.name} - ${command.summary}

USAGE:
\tfleetctl ${command.name}${command.usage === '' ? '' : ` ${command.usage}`}

DESCRIPTION:
${indent(command.description)}
${options}`;
}

/** The one-line usage of a command (or of fleetctl), printed after a usage error. */
export function usageLine(command: CommandInfo | undefined): string {
  if (command === undefined) return `Usage: ${GLOBAL_USAGE_LINE}`;
  return `Usage: fleetctl ${command.name}${command.usage === '' ? '' : ` ${command.usage}`}`;
}
