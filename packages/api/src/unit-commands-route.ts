import { isValidUnitName } from '@fleet/core';
import type { ApiContext, RequestContext } from './context.js';
import { HttpError, clip, sendJson } from './http.js';
import { findPlacements } from './reads.js';
import { MAX_JOURNAL_LINES, validateJournalOptions, type JournalOptions } from './unit-commands.js';
import { isGlobalUnit } from './views.js';

/**
 * Ours: `GET /fleet/v1/x-unit-commands/{unit}/status` and `.../journal`, so
 * `fleetctl status`/`journal` need no SSH. The command runs for the machine
 * the unit is placed on (a global unit needs `?machineID=`).
 */

/** The machine to run a command on: where the unit is placed (and `machineID`, if given, agrees). */
async function targetMachine(
  api: ApiContext,
  rc: RequestContext,
): Promise<{ unit: string; machineID: string }> {
  const unit = rc.params[0] as string;
  if (!isValidUnitName(unit)) throw new HttpError(404, 'unit does not exist');
  const [record, states, unplacedReason] = await Promise.all([
    api.registry.getUnit(unit),
    api.registry.listStates({ unitName: unit }),
    api.registry.getUnplacedReason(unit),
  ]);
  if (record === undefined) throw new HttpError(404, 'unit does not exist');
  const placements = await findPlacements(api.registry, unit, {
    reportingMachines: states.map((s) => s.machineID),
    mayBePlaced: record.desiredState !== 'inactive',
    global: isGlobalUnit(unit, record.options),
  });
  const machines = [...placements.keys()].sort();
  const asked = rc.query.get('machineID') ?? '';
  if (asked !== '') {
    if (!placements.has(asked)) {
      throw new HttpError(404, `unit ${unit} is not placed on machine ${JSON.stringify(clip(asked, 80))}`);
    }
    return { unit, machineID: asked };
  }
  const [only, ...more] = machines;
  if (only === undefined) {
    throw new HttpError(
      404,
      `unit ${unit} is not placed on any machine${unplacedReason !== undefined ? `: ${unplacedReason}` : ''}`,
    );
  }
  if (more.length > 0) {
    throw new HttpError(
      400,
      `unit ${unit} runs on ${machines.length} machines; choose one with machineID= (${machines.join(', ')})`,
    );
  }
  return { unit, machineID: only };
}

function commands(api: ApiContext): NonNullable<ApiContext['unitCommands']> {
  if (api.unitCommands === undefined) {
    throw new HttpError(501, 'unit commands (status, journal) are not available on this fleetd');
  }
  return api.unitCommands;
}

/** `GET x-unit-commands/{unit}/status` → `{"exitCode":n,"output":"…"}` */
export async function unitStatus(api: ApiContext, rc: RequestContext): Promise<void> {
  const run = commands(api);
  const { unit, machineID } = await targetMachine(api, rc);
  const out = await run.status(unit, machineID);
  sendJson(rc.res, 200, { exitCode: out.exitCode, output: out.output });
}

/** Reads `lines` (default 10) and `output` from the query. @throws ValidationError */
export function journalOptionsFromQuery(query: URLSearchParams): JournalOptions {
  const linesText = query.get('lines') ?? '';
  const outputText = query.get('output') ?? '';
  let lines = 10;
  if (linesText !== '') {
    if (!/^[0-9]{1,6}$/.test(linesText)) {
      throw new HttpError(
        400,
        `invalid lines ${JSON.stringify(clip(linesText, 40))}: must be an integer from 1 to ${MAX_JOURNAL_LINES}`,
      );
    }
    lines = Number(linesText);
  }
  const options: JournalOptions = outputText === '' ? { lines } : { lines, output: outputText };
  validateJournalOptions(options);
  return options;
}

/** `GET x-unit-commands/{unit}/journal?lines=N&output=MODE` → `{"exitCode":n,"output":"…"}` */
export async function unitJournal(api: ApiContext, rc: RequestContext): Promise<void> {
  const run = commands(api);
  const options = journalOptionsFromQuery(rc.query);
  const { unit, machineID } = await targetMachine(api, rc);
  const out = await run.journal(unit, machineID, options);
  sendJson(rc.res, 200, { exitCode: out.exitCode, output: out.output });
}
