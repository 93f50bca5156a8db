import type { MachinePatchOp } from '@fleet/core';
import type { ApiContext, RequestContext } from './context.js';
import { HttpError, readBody, sendEmpty, sendJson } from './http.js';
import { pageOf, requestedPage } from './paging.js';
import { machineJson } from './views.js';

/** `GET machines`: live machines, paged, sorted by ID. */
export async function listMachines(api: ApiContext, rc: RequestContext): Promise<void> {
  const token = requestedPage(rc.query.get('nextPageToken'), api.tokenLimit);
  const all = await api.snapshots.items('machines', token, async () =>
    (await api.mirror.read()).machines().map(machineJson),
  );
  const page = pageOf(all, token);
  sendJson(rc.res, 200, {
    ...(page.items.length > 0 ? { machines: page.items } : {}),
    ...(page.nextPageToken !== undefined ? { nextPageToken: page.nextPageToken } : {}),
  });
}

const decodeError = (what: string): HttpError => new HttpError(400, `unable to decode body: ${what}`);

/** Decodes a PATCH body: a JSON array of `{op, path, value: {value}}`; wrong types name the field. */
export function decodeMachinePatch(text: string): MachinePatchOp[] {
  if (text.trim() === '') throw decodeError('empty body');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw decodeError(err instanceof Error ? err.message : 'malformed JSON');
  }
  // Go decoded `null` into an empty list.
  if (raw === null) return [];
  if (!Array.isArray(raw)) throw decodeError('expected a JSON array of operations');
  return raw.map((item: unknown, i): MachinePatchOp => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      throw decodeError(`[${i}] must be an object`);
    }
    const o = item as Record<string, unknown>;
    const str = (key: string): string => {
      const v = o[key];
      if (v === undefined || v === null) return '';
      if (typeof v !== 'string') throw decodeError(`[${i}].${key} must be a string`);
      return v;
    };
    const op = str('op');
    const path = str('path');
    const value = o['value'];
    if (value === undefined || value === null) return { op, path };
    if (typeof value !== 'object' || Array.isArray(value)) {
      throw decodeError(`[${i}].value must be an object like {"value":"..."}`);
    }
    const inner = (value as Record<string, unknown>)['value'];
    if (inner === undefined || inner === null) return { op, path, value: {} };
    if (typeof inner !== 'string') throw decodeError(`[${i}].value.value must be a string`);
    return { op, path, value: { value: inner } };
  });
}

/** `PATCH machines`: add, replace or remove dynamic metadata, all or nothing. */
export async function patchMachines(api: ApiContext, rc: RequestContext): Promise<void> {
  const text = await readBody(rc.req, api.maxBodyBytes);
  const ops = decodeMachinePatch(text);
  if (ops.length > 0) {
    await api.registry.patchMachineMetadata(ops);
    api.snapshots.clear();
  }
  sendEmpty(rc.res, 204);
}
