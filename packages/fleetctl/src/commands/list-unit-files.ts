import { unitDescription, unitHash, type Machine, type Unit } from '@fleet/core';
import type { CommandSpec } from '../command.js';
import {
  NONE,
  hashLegend,
  isGlobalUnit,
  machineLegend,
  orNone,
  renderListing,
  selectFields,
  type FieldSet,
} from '../columns.js';
import { listingFlags } from '../common-flags.js';
import { EXIT_OK, failure } from '../errors.js';

/** A unit, whether it is global, and the machine it is placed on, if known. */
export interface UnitRow {
  readonly unit: Unit;
  readonly global: boolean;
  readonly machine: Machine | undefined;
}

const target = (r: UnitRow, full: boolean): string => {
  if (r.global) return 'global';
  return r.unit.machineID ? machineLegend(r.unit.machineID, r.machine, full) : NONE;
};

export const LIST_UNIT_FILES_FIELDS: FieldSet<UnitRow> = {
  defaults: 'unit,hash,dstate,state,target',
  fields: {
    unit: (r) => r.unit.name,
    hash: (r, full) => hashLegend(unitHash(r.unit.options ?? []), full),
    dstate: (r) => orNone(r.unit.desiredState),
    // A global unit has a state per machine, not one: fleet printed '-'.
    state: (r) => (r.global ? NONE : orNone(r.unit.currentState)),
    target,
    tmachine: target,
    desc: (r) => orNone(unitDescription(r.unit.options ?? [])),
    global: (r) => String(r.global),
  },
  deprecated: { tmachine: 'target' },
};

export const listUnitFilesCommand: CommandSpec = {
  name: 'list-unit-files',
  summary: 'List the units that exist in the cluster.',
  usage: '[--no-legend] [-l|--full] [--fields]',
  description: `Lists all unit files that exist in the cluster (whether or not they are loaded onto a machine), sorted by name. DSTATE is the desired state, STATE the current one, TARGET the machine the unit is scheduled to ("global" for global units).

For easily parsable output, you can remove the column headers:
	fleetctl list-unit-files --no-legend

Or, choose the columns to display:
	fleetctl list-unit-files --fields=unit,desc,state`,
  flags: listingFlags(
    'Unit file',
    LIST_UNIT_FILES_FIELDS.defaults,
    Object.keys(LIST_UNIT_FILES_FIELDS.fields).filter((f) => f !== 'tmachine'),
  ),
  noArgs: true,
  async run(session, _args, flags) {
    const cols = selectFields(flags.fields as string, LIST_UNIT_FILES_FIELDS, (l) => session.err(l));
    const client = await session.client();
    let rows: UnitRow[];
    try {
      const [units, machines] = await Promise.all([client.listUnits(), session.machines()]);
      rows = units
        .map((unit) => ({
          unit,
          global: isGlobalUnit(unit.name, unit.options),
          machine: unit.machineID ? machines.get(unit.machineID) : undefined,
        }))
        .sort((a, b) => (a.unit.name < b.unit.name ? -1 : a.unit.name > b.unit.name ? 1 : 0));
    } catch (err) {
      throw failure('Error retrieving list of units from repository', err);
    }
    session.io.stdout.write(
      renderListing(rows, cols, LIST_UNIT_FILES_FIELDS, {
        full: flags.full === true,
        legend: flags.legend !== false,
      }),
    );
    return EXIT_OK;
  },
};
