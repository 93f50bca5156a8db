import type { FleetClient } from '@fleet/client';
import type { Unit } from '@fleet/core';
import { isGlobalUnit } from './columns.js';
import { CommandError, failure } from './errors.js';
import type { Session } from './session.js';
import { shellQuote } from './ssh.js';

/** Texts of fleet's refusals, per command that needs a placed unit. */
interface Refusals {
  readonly global: (name: string) => string;
  readonly inactive: (name: string) => string;
}

export const STATUS_REFUSALS: Refusals = {
  global: (n) => `Unable to determine status of global unit ${n}.`,
  inactive: (n) => `Unit ${n} does not appear to be loaded.`,
};

export const JOURNAL_REFUSALS: Refusals = {
  global: (n) => `Unable to retrieve journal of global unit ${n}.`,
  inactive: (n) => `Unit ${n} does not appear to be running.`,
};

/**
 * The unit, if it is on a machine: status and journal run where the unit is,
 * which a global unit (many machines) or an inactive one (none) does not have.
 */
export async function placedUnit(
  session: Session,
  client: FleetClient,
  name: string,
  refusals: Refusals,
): Promise<Unit> {
  let unit: Unit | undefined;
  try {
    unit = await client.getUnit(name);
  } catch (err) {
    throw failure(`Error retrieving unit ${name}`, err);
  }
  if (unit === undefined) throw new CommandError(`Unit ${name} does not exist.`);
  if (isGlobalUnit(name, unit.options)) throw new CommandError(refusals.global(name));
  if ((unit.currentState ?? 'inactive') === 'inactive' || !unit.machineID) {
    throw new CommandError(refusals.inactive(name));
  }
  return unit;
}

/** The address ssh should use for a machine: its public IP as fleetd reports it. */
export async function machineAddress(session: Session, machineID: string): Promise<string> {
  let machine;
  try {
    machine = await session.machine(machineID);
  } catch (err) {
    throw failure('Error getting machine IP', err);
  }
  if (machine === undefined)
    throw new CommandError(`Error getting machine IP: machine ${machineID} is not in the cluster`);
  if (!machine.primaryIP)
    throw new CommandError(`Error getting machine IP: machine ${machineID} reports no IP`);
  return machine.primaryIP;
}

/** A remote command line from words, each quoted for the remote shell (unit names may hold `\\`). */
export function remoteCommand(words: readonly string[]): string {
  return words.map(shellQuote).join(' ');
}

/** Writes a command's output, ending it with a newline if it lacks one. */
export function writeOutput(session: Session, output: string): void {
  if (output === '') return;
  session.io.stdout.write(output.endsWith('\n') ? output : `${output}\n`);
}
