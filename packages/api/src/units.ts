import {
  ConflictError,
  NotFoundError,
  ValidationError,
  isValidUnitName,
  parseRequirements,
  replacesCycleMessage,
  unitHash,
  type Requirements,
} from '@fleet/core';
import type { Registry } from '@fleet/registry';
import type { ApiContext, RequestContext } from './context.js';
import { HttpError, readBody, requireJsonContentType, sendEmpty, sendJson } from './http.js';
import { pageOf, requestedPage } from './paging.js';
import { readAllUnits, readUnit } from './reads.js';
import { replacesCycleThrough } from './replaces.js';
import { parsePutRequest, type PutUnitRequest } from './unit-body.js';

/** `GET units`: every unit, paged, sorted by name. */
export async function listUnits(api: ApiContext, rc: RequestContext): Promise<void> {
  const token = requestedPage(rc.query.get('nextPageToken'), api.tokenLimit);
  const all = await api.snapshots.items('units', token, () => readAllUnits(api.mirror));
  const page = pageOf(all, token);
  // Go's generated schema orders fields alphabetically: nextPageToken, units.
  sendJson(rc.res, 200, {
    ...(page.nextPageToken !== undefined ? { nextPageToken: page.nextPageToken } : {}),
    ...(page.items.length > 0 ? { units: page.items } : {}),
  });
}

const unitDoesNotExist = (): HttpError => new HttpError(404, 'unit does not exist');

/** `GET units/{name}` */
export async function getUnit(api: ApiContext, rc: RequestContext): Promise<void> {
  const name = rc.params[0] as string;
  // An invalid name cannot exist; answering without a read also keeps odd keys away from etcd.
  if (!isValidUnitName(name)) throw unitDoesNotExist();
  const unit = await readUnit(api.registry, name);
  if (unit === undefined) throw unitDoesNotExist();
  sendJson(rc.res, 200, unit);
}

/** `DELETE units/{name}` */
export async function deleteUnit(api: ApiContext, rc: RequestContext): Promise<void> {
  const name = rc.params[0] as string;
  if (!isValidUnitName(name)) throw unitDoesNotExist();
  try {
    await api.registry.destroyUnit(name);
  } catch (err) {
    if (err instanceof NotFoundError) throw unitDoesNotExist();
    throw err;
  }
  api.snapshots.clear();
  sendEmpty(rc.res, 204);
}

/** `PUT units/{name}`: create, replace, or change the desired state (fleet-compat §6). */
export async function putUnit(api: ApiContext, rc: RequestContext): Promise<void> {
  requireJsonContentType(rc.req);
  const text = await readBody(rc.req, api.maxBodyBytes);
  const request = parsePutRequest(rc.params[0] as string, text);
  const status = await applyPut(api.registry, request);
  api.snapshots.clear();
  sendEmpty(rc.res, status);
}

/** How often a PUT re-reads and retries when the unit changes under it. */
const PUT_ATTEMPTS = 5;

/**
 * Decides and performs a PUT against the stored unit:
 * - no such unit: create it from the options (desired state from the body,
 *   default inactive) → 201; without options → 409;
 * - options whose hash differs from the stored one: replace the unit, keeping
 *   its desired state unless the body gives one → 201;
 * - otherwise (no options, or the same options): set the desired state → 204.
 *   Without a desired state fleet answered 409 even when the same options were
 *   sent again; ours: resubmitting identical options is a no-op → 204.
 *
 * Writes are conditional on what was read; a concurrent change re-reads.
 */
export async function applyPut(registry: Registry, request: PutUnitRequest): Promise<201 | 204> {
  const { name, options, desiredState } = request;
  for (let attempt = 0; attempt < PUT_ATTEMPTS; attempt++) {
    const existing = await registry.getUnitRecord(name);
    if (existing === undefined) {
      if (options === undefined) throw new ConflictError('unit does not exist and options field empty');
      await refuseReplacesCycle(registry, name, request.requirements);
      if (await lostRace(() => registry.createUnit(name, options, desiredState ?? 'inactive'))) continue;
      return 201;
    }
    if (options !== undefined && unitHash(options) !== existing.hash) {
      await refuseReplacesCycle(registry, name, request.requirements);
      const write = () =>
        registry.replaceUnit(name, options, desiredState ?? existing.desiredState, existing.modRevision);
      if (await lostRace(write)) continue;
      return 201;
    }
    if (desiredState === undefined) {
      if (options !== undefined) return 204;
      throw new ConflictError('must provide DesiredState to update existing unit');
    }
    if (await lostRace(() => registry.setDesiredState(name, desiredState))) continue;
    return 204;
  }
  throw new ConflictError(`unit ${name} keeps changing; try again`);
}

/**
 * Runs a conditional write; true if it lost to a concurrent change (the unit
 * was created, changed or destroyed meanwhile) and the PUT must decide again.
 */
async function lostRace(write: () => Promise<unknown>): Promise<boolean> {
  try {
    await write();
    return false;
  } catch (err) {
    if (err instanceof ConflictError || err instanceof NotFoundError) return true;
    throw err;
  }
}

/**
 * Refuses a unit whose `Replaces=` would close a cycle with stored units.
 * Reads every unit, so only units that replace something pay for it.
 */
async function refuseReplacesCycle(
  registry: Registry,
  name: string,
  requirements: Requirements | undefined,
): Promise<void> {
  if (requirements === undefined || requirements.replaces.length === 0) return;
  const { units } = await registry.listUnits();
  const all = new Map<string, Pick<Requirements, 'replaces'>>();
  for (const u of units) {
    if (u.name === name) continue;
    try {
      all.set(u.name, parseRequirements(u.options, u.name));
    } catch {
      // A stored unit whose requirements no longer parse replaces nothing.
    }
  }
  all.set(name, requirements);
  const cycle = replacesCycleThrough(name, all);
  if (cycle !== undefined) throw new ValidationError(replacesCycleMessage(cycle), { fields: { unit: name } });
}
