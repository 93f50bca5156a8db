import { InvalidArgumentError } from 'commander';
import type { Machine } from '@fleet/core';
import type { CommandSpec } from '../command.js';
import {
  machineIDLegend,
  metadataLegend,
  orNone,
  renderListing,
  selectFields,
  type FieldSet,
} from '../columns.js';
import { listingFlags } from '../common-flags.js';
import { EXIT_OK, failure } from '../errors.js';

export const LIST_MACHINES_FIELDS: FieldSet<Machine> = {
  defaults: 'machine,ip,metadata',
  fields: {
    machine: (m, full) => machineIDLegend(m.id, full),
    ip: (m) => orNone(m.primaryIP),
    metadata: (m) => metadataLegend(m.metadata),
  },
};

function outputFormat(value: string): string {
  if (value !== 'table' && value !== 'json') throw new InvalidArgumentError('must be "table" or "json"');
  return value;
}

export const listMachinesCommand: CommandSpec = {
  name: 'list-machines',
  summary: 'Enumerate the current hosts in the cluster',
  usage: '[-l|--full] [--no-legend] [--fields] [--output=table|json]',
  description: `Lists all active machines within the cluster, sorted by ID. Previously active machines will not appear in this list.

For easily parsable output, you can remove the column headers:
	fleetctl list-machines --no-legend

Output the list without truncation:
	fleetctl list-machines --full

Output the machines as JSON (id, primaryIP, metadata), for programs:
	fleetctl list-machines --output=json`,
  flags: [
    ...listingFlags('Machine', LIST_MACHINES_FIELDS.defaults, Object.keys(LIST_MACHINES_FIELDS.fields)),
    {
      flags: '--output <format>',
      defaultValue: 'table',
      parse: outputFormat,
      description: "table (fleet's layout) or json (ours: the machines as the API returns them)",
    },
  ],
  noArgs: true,
  async run(session, _args, flags) {
    const json = flags.output === 'json';
    const cols = json
      ? []
      : selectFields(flags.fields as string, LIST_MACHINES_FIELDS, (l) => session.err(l));
    let machines: Machine[];
    try {
      machines = [...(await session.machines()).values()].sort((a, b) =>
        a.id < b.id ? -1 : a.id > b.id ? 1 : 0,
      );
    } catch (err) {
      throw failure('Error retrieving list of active machines', err);
    }
    if (json) {
      session.out(JSON.stringify(machines, null, 2));
      return EXIT_OK;
    }
    session.io.stdout.write(
      renderListing(machines, cols, LIST_MACHINES_FIELDS, {
        full: flags.full === true,
        legend: flags.legend !== false,
      }),
    );
    return EXIT_OK;
  },
};
