/**
 * The API's discovery document (`GET /fleet/v1/discovery`), in the Google
 * API discovery format fleet used to generate its Go client: the schemas of
 * the entities and the methods of each resource. Written for this server;
 * ours adds the `unplacedReason` field and the `x-unit-commands` resource.
 */

const str = (description: string): Record<string, string> => ({ type: 'string', description });

const pageToken = {
  nextPageToken: { type: 'string', location: 'query', description: 'Token of the page to return.' },
};

/** Builds the document; `version` is the fleetd version serving it. */
export function discoveryDocument(version: string): Record<string, unknown> {
  return {
    kind: 'discovery#restDescription',
    discoveryVersion: 'v1',
    id: 'fleet:v1',
    name: 'fleet',
    version: 'v1',
    title: 'fleet API',
    description: `fleet's HTTP API v1, served by fleetd ${version}.`,
    documentationLink: 'docs/api.md',
    protocol: 'rest',
    rootUrl: '',
    servicePath: 'fleet/v1/',
    basePath: '/fleet/v1/',
    batchPath: '',
    parameters: {
      alt: {
        type: 'string',
        description: 'Data format for the response.',
        default: 'json',
        enum: ['json'],
        location: 'query',
      },
    },
    schemas: {
      Machine: {
        id: 'Machine',
        type: 'object',
        properties: {
          id: str('Machine ID (/etc/machine-id).'),
          metadata: {
            type: 'object',
            description: 'Configured metadata, with dynamic metadata merged over it.',
            additionalProperties: { type: 'string' },
          },
          primaryIP: str('Address shown in listings and used by ssh.'),
        },
      },
      MachinePage: {
        id: 'MachinePage',
        type: 'object',
        properties: {
          machines: { type: 'array', items: { $ref: 'Machine' } },
          nextPageToken: { type: 'string' },
        },
      },
      MachineMetadataOp: {
        id: 'MachineMetadataOp',
        type: 'object',
        properties: {
          op: str('add, remove or replace.'),
          path: str('/<machineID>/metadata/<key>'),
          value: { type: 'object', properties: { value: { type: 'string' } } },
        },
      },
      UnitOption: {
        id: 'UnitOption',
        type: 'object',
        properties: { name: { type: 'string' }, section: { type: 'string' }, value: { type: 'string' } },
      },
      Unit: {
        id: 'Unit',
        type: 'object',
        properties: {
          currentState: str('inactive, loaded or launched, as the cluster reports it.'),
          desiredState: str('inactive, loaded or launched, as the user asked.'),
          machineID: str('Machine the unit is placed on.'),
          name: str('Unit name.'),
          options: { type: 'array', items: { $ref: 'UnitOption' } },
          unplacedReason: str('Why no machine can take the unit (not in fleet).'),
        },
      },
      UnitPage: {
        id: 'UnitPage',
        type: 'object',
        properties: {
          nextPageToken: { type: 'string' },
          units: { type: 'array', items: { $ref: 'Unit' } },
        },
      },
      UnitState: {
        id: 'UnitState',
        type: 'object',
        properties: {
          hash: str('SHA-1 of the unit file the machine runs.'),
          machineID: str('Machine reporting the state.'),
          name: str('Unit name.'),
          systemdActiveState: { type: 'string' },
          systemdLoadState: { type: 'string' },
          systemdSubState: { type: 'string' },
        },
      },
      UnitStatePage: {
        id: 'UnitStatePage',
        type: 'object',
        properties: {
          nextPageToken: { type: 'string' },
          states: { type: 'array', items: { $ref: 'UnitState' } },
        },
      },
      CommandOutput: {
        id: 'CommandOutput',
        type: 'object',
        properties: { exitCode: { type: 'integer' }, output: { type: 'string' } },
      },
    },
    resources: {
      Machines: {
        methods: {
          List: {
            id: 'fleet.Machine.List',
            httpMethod: 'GET',
            path: 'machines',
            parameters: pageToken,
            response: { $ref: 'MachinePage' },
          },
          Patch: {
            id: 'fleet.Machine.Patch',
            httpMethod: 'PATCH',
            path: 'machines',
            request: { type: 'array', items: { $ref: 'MachineMetadataOp' } },
          },
        },
      },
      UnitState: {
        methods: {
          List: {
            id: 'fleet.UnitState.List',
            httpMethod: 'GET',
            path: 'state',
            parameters: {
              ...pageToken,
              machineID: { type: 'string', location: 'query' },
              unitName: { type: 'string', location: 'query' },
            },
            response: { $ref: 'UnitStatePage' },
          },
          Get: {
            id: 'fleet.UnitState.Get',
            httpMethod: 'GET',
            path: 'state/{unitName}',
            parameters: { unitName: { type: 'string', location: 'path', required: true } },
            response: { $ref: 'UnitState' },
          },
        },
      },
      Units: {
        methods: {
          List: {
            id: 'fleet.Unit.List',
            httpMethod: 'GET',
            path: 'units',
            parameters: pageToken,
            response: { $ref: 'UnitPage' },
          },
          Get: {
            id: 'fleet.Unit.Get',
            httpMethod: 'GET',
            path: 'units/{unitName}',
            parameters: { unitName: { type: 'string', location: 'path', required: true } },
            response: { $ref: 'Unit' },
          },
          Set: {
            id: 'fleet.Unit.Set',
            httpMethod: 'PUT',
            path: 'units/{unitName}',
            parameters: { unitName: { type: 'string', location: 'path', required: true } },
            request: { $ref: 'Unit' },
          },
          Delete: {
            id: 'fleet.Unit.Delete',
            httpMethod: 'DELETE',
            path: 'units/{unitName}',
            parameters: { unitName: { type: 'string', location: 'path', required: true } },
          },
        },
      },
      UnitCommands: {
        methods: {
          Status: {
            id: 'fleet.UnitCommands.Status',
            httpMethod: 'GET',
            path: 'x-unit-commands/{unitName}/status',
            parameters: {
              unitName: { type: 'string', location: 'path', required: true },
              machineID: { type: 'string', location: 'query' },
            },
            response: { $ref: 'CommandOutput' },
          },
          Journal: {
            id: 'fleet.UnitCommands.Journal',
            httpMethod: 'GET',
            path: 'x-unit-commands/{unitName}/journal',
            parameters: {
              unitName: { type: 'string', location: 'path', required: true },
              machineID: { type: 'string', location: 'query' },
              lines: { type: 'integer', location: 'query', default: '10' },
              output: { type: 'string', location: 'query', default: 'short' },
            },
            response: { $ref: 'CommandOutput' },
          },
        },
      },
    },
  };
}
