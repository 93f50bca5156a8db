import type { Machine, UnitState } from '@fleet/core';
import type { CommandSpec } from '../command.js';
import {
  hashLegend,
  machineLegend,
  orNone,
  renderListing,
  selectFields,
  NONE,
  type FieldSet,
} from '../columns.js';
import { listingFlags } from '../common-flags.js';
import { EXIT_OK, failure } from '../errors.js';

/** A reported unit state and the machine it is on, if known. */
export interface StateRow {
  readonly state: UnitState;
  readonly machine: Machine | undefined;
}

export const LIST_UNITS_FIELDS: FieldSet<StateRow> = {
  defaults: 'unit,machine,active,sub',
  fields: {
    unit: (r) => orNone(r.state.name),
    machine: (r, full) => (r.state.machineID ? machineLegend(r.state.machineID, r.machine, full) : NONE),
    active: (r) => orNone(r.state.systemdActiveState),
    sub: (r) => orNone(r.state.systemdSubState),
    load: (r) => orNone(r.state.systemdLoadState),
    hash: (r, full) => hashLegend(r.state.hash, full),
  },
};

export const listUnitsCommand: CommandSpec = {
  name: 'list-units',
  summary: 'List the current state of units in the cluster',
  usage: '[--no-legend] [-l|--full] [--fields]',
  description: `Lists the state of all units in the cluster loaded onto a machine: one row per unit and machine, sorted by unit then machine.

For easily parsable output, you can remove the column headers:
	fleetctl list-units --no-legend

Output the list without ellipses:
	fleetctl list-units --full

Or, choose the columns to display:
	fleetctl list-units --fields=unit,machine`,
  flags: listingFlags('Unit', LIST_UNITS_FIELDS.defaults, Object.keys(LIST_UNITS_FIELDS.fields)),
  noArgs: true,
  async run(session, _args, flags) {
    const cols = selectFields(flags.fields as string, LIST_UNITS_FIELDS, (l) => session.err(l));
    const client = await session.client();
    let rows: StateRow[];
    try {
      const [states, machines] = await Promise.all([client.listUnitStates(), session.machines()]);
      rows = states
        .map((state) => ({ state, machine: state.machineID ? machines.get(state.machineID) : undefined }))
        .sort(
          (a, b) =>
            compare(a.state.name, b.state.name) || compare(a.state.machineID ?? '', b.state.machineID ?? ''),
        );
    } catch (err) {
      throw failure('Error retrieving list of units from repository', err);
    }
    session.io.stdout.write(
      renderListing(rows, cols, LIST_UNITS_FIELDS, {
        full: flags.full === true,
        legend: flags.legend !== false,
      }),
    );
    return EXIT_OK;
  },
};

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
