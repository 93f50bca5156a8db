import { isValidUnitName } from '@fleet/core';
import type { UnitStateInfo } from '@fleet/registry';
import type { ApiContext, RequestContext } from './context.js';
import { HttpError, sendJson } from './http.js';
import { pageOf, requestedPage } from './paging.js';
import { chooseState, compareStates, unitStateJson } from './views.js';

/** A query parameter, with an empty value read as absent (as fleet's Go did). */
function param(query: URLSearchParams, key: string): string | undefined {
  const v = query.get(key);
  return v === null || v === '' ? undefined : v;
}

/** `GET state[?machineID=&unitName=]`: reported unit states, paged, by unit then machine. */
export async function listStates(api: ApiContext, rc: RequestContext): Promise<void> {
  const token = requestedPage(rc.query.get('nextPageToken'), api.tokenLimit);
  const machineID = param(rc.query, 'machineID');
  const unitName = param(rc.query, 'unitName');
  const key = `state\u0000${machineID ?? ''}\u0000${unitName ?? ''}`;
  const all = await api.snapshots.items(key, token, async () => {
    // No valid unit has an invalid name: nothing to read for one.
    if (unitName !== undefined && !isValidUnitName(unitName)) return [];
    const view = await api.mirror.read();
    const states: UnitStateInfo[] = [];
    const units = unitName !== undefined ? [unitName] : view.states.keys();
    for (const unit of units) {
      for (const [machine, rec] of view.states.get(unit) ?? []) {
        if (machineID === undefined || machine === machineID)
          states.push({ ...rec, unit, machineID: machine });
      }
    }
    return states.sort(compareStates).map(unitStateJson);
  });
  const page = pageOf(all, token);
  sendJson(rc.res, 200, {
    ...(page.nextPageToken !== undefined ? { nextPageToken: page.nextPageToken } : {}),
    ...(page.items.length > 0 ? { states: page.items } : {}),
  });
}

/**
 * `GET state/{unit}`: the unit's state as reported by the machine it is
 * placed on; if other machines report it too (a move in progress), the
 * placed one wins, else the lowest machine ID. Never a 5xx for a missing
 * state: fleet's fleetctl treats 404 as "not yet" and anything else as fatal.
 */
export async function getState(api: ApiContext, rc: RequestContext): Promise<void> {
  const name = rc.params[0] as string;
  const missing = new HttpError(404, 'unit state does not exist');
  if (!isValidUnitName(name)) throw missing;
  const states = await api.registry.listStates({ unitName: name });
  if (states.length === 0) throw missing;
  let placedOn = new Set<string>();
  if (states.length > 1) {
    const kvs = await Promise.all(
      states.map((s) => api.registry.kv.get(api.registry.keys.placement(s.machineID, name))),
    );
    placedOn = new Set(states.filter((_, i) => kvs[i] !== undefined).map((s) => s.machineID));
  }
  const chosen = chooseState(states, placedOn);
  if (chosen === undefined) throw missing;
  sendJson(rc.res, 200, unitStateJson(chosen));
}
