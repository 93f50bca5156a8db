import type { FleetClient } from '@fleet/client';
import { errorMessage, mangleUnitName } from '@fleet/core';
import { isGlobalUnit } from '../columns.js';
import type { CommandSpec } from '../command.js';
import { SSH_PORT_FLAG } from '../common-flags.js';
import { CommandError, UsageError } from '../errors.js';
import type { Session } from '../session.js';
import { runSsh, sshArgs } from '../ssh.js';

/** A lookup result: found with an address (maybe '' when unknown), or why not. */
type Lookup = { readonly ok: true; readonly address: string } | { readonly ok: false; readonly why: string };

/** A machine by full ID or unique prefix. */
async function findMachine(session: Session, lookup: string): Promise<Lookup> {
  const matches = [...(await session.machines()).values()].filter((m) => m.id.startsWith(lookup));
  if (matches.length > 1) return { ok: false, why: 'found more than one machine' };
  const m = matches[0];
  if (m === undefined) return { ok: false, why: 'machine does not exist' };
  return { ok: true, address: m.primaryIP ?? '' };
}

/** The machine a unit is placed on. */
async function findUnitMachine(session: Session, client: FleetClient, lookup: string): Promise<Lookup> {
  const name = mangleUnitName(lookup);
  const unit = await client.getUnit(name);
  if (unit === undefined) return { ok: false, why: 'unit does not exist' };
  if (isGlobalUnit(name, unit.options)) return { ok: false, why: 'global units unsupported' };
  if (!unit.machineID) return { ok: false, why: `unit ${name} is not placed on a machine` };
  const machine = await session.machine(unit.machineID);
  return { ok: true, address: machine?.primaryIP ?? '' };
}

function settle(result: Lookup): string {
  if (!result.ok) throw new CommandError(`Unable to proceed: ${result.why}`);
  return result.address;
}

export const sshCommand: CommandSpec = {
  name: 'ssh',
  summary: 'Open interactive shell on a machine in the cluster',
  usage: '[-A|--forward-agent] [--ssh-port=N] [-m|--machine=ID|-u|--unit=UNIT] [MACHINE|UNIT] [COMMAND...]',
  description: `Open an interactive shell on a specific machine in the cluster or on the machine where the specified unit is located, or run COMMAND there (its exit status is fleetctl's).

fleetctl tries to detect whether your first argument is a machine (full ID or unique prefix) or a unit. To skip this check use the --machine or --unit flags.

Open a shell on a machine:
	fleetctl ssh 2444264c-eac2-4eff-a490-32d5e5e4af24

Open a shell from your laptop, to the machine running a specific unit, using a cluster member as a bastion host:
	fleetctl --tunnel 10.10.10.10 ssh foo.service

Run a command on a machine and forward the authentication agent connection:
	fleetctl ssh --forward-agent 2444264c uptime

This command does not work with global units. fleetctl runs the system's ssh program.`,
  flags: [
    { flags: '-m, --machine <ID>', description: 'Open SSH connection to a specific machine.' },
    { flags: '-u, --unit <UNIT>', description: 'Open SSH connection to machine running provided unit.' },
    { flags: '-A, --forward-agent', description: 'Forward local ssh-agent to target machine.' },
    SSH_PORT_FLAG,
  ],
  async run(session, args, flags) {
    const machineFlag = flags.machine as string | undefined;
    const unitFlag = flags.unit as string | undefined;
    if (machineFlag !== undefined && unitFlag !== undefined) {
      throw new UsageError('Both machine and unit flags provided, please specify only one.');
    }
    const client = await session.client();
    const rest = [...args];
    let address: string;
    try {
      if (machineFlag !== undefined) address = settle(await findMachine(session, machineFlag));
      else if (unitFlag !== undefined) address = settle(await findUnitMachine(session, client, unitFlag));
      else {
        const lookup = rest.shift();
        if (lookup === undefined) throw new UsageError('one machine or unit must be provided');
        const [machine, unit] = await Promise.all([
          findMachine(session, lookup),
          findUnitMachine(session, client, lookup),
        ]);
        if (machine.ok && unit.ok) {
          throw new CommandError(
            `Unable to proceed: ambiguous argument, both machine and unit found for ${JSON.stringify(lookup)}; use --machine or --unit`,
          );
        }
        if (!machine.ok && !unit.ok)
          throw new CommandError('Unable to proceed: could not find matching unit or machine');
        address = machine.ok ? machine.address : settle(unit);
      }
    } catch (err) {
      if (err instanceof UsageError || err instanceof CommandError) throw err;
      throw new CommandError(`Unable to proceed: ${errorMessage(err)}`);
    }
    if (address === '') throw new CommandError('Could not determine address of machine.');
    const settings = session.ssh((flags.sshPort as number | undefined) ?? 22, flags.forwardAgent === true);
    // Like fleet: the words after the target form one command line for the remote shell.
    const command = rest.length > 0 ? rest.join(' ') : undefined;
    return runSsh(session.io, settings, sshArgs(settings, address, command));
  },
};
