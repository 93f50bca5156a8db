import {
  ValidationError,
  isJobState,
  parseUnitFile,
  sameOptions,
  serializeUnitOptions,
  validateUnitName,
  validateUnitOptions,
  unitNameInfo,
  type JobState,
  type Requirements,
  type UnitOption,
} from '@fleet/core';
import { HttpError, clip } from './http.js';

/**
 * Decoding and validation of a `PUT /units/{name}` body — everything that can
 * be decided without reading the cluster. Texts follow fleet where fleet had
 * one; every other refusal names the field and the problem.
 */

/** A PUT body after decoding: empty strings and `null` read as absent, as Go decoded them. */
export interface PutUnitRequest {
  readonly name: string;
  readonly desiredState: JobState | undefined;
  /** Undefined when absent, null or empty (fleet treated all three alike). */
  readonly options: readonly UnitOption[] | undefined;
  /** Parsed `[X-Fleet]` requirements when options were given. */
  readonly requirements: Requirements | undefined;
}

const decodeError = (what: string): HttpError => new HttpError(400, `unable to decode body: ${what}`);

function optionalString(obj: Record<string, unknown>, key: string, where: string): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw decodeError(`${where}${key} must be a string, not ${jsonType(v)}`);
  return v;
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

/** Turns raw JSON text into typed fields, refusing wrong types with the field's name. Unknown keys are ignored. */
export function decodePutBody(text: string): {
  name: string | undefined;
  desiredState: string | undefined;
  options: UnitOption[] | undefined;
} {
  if (text.trim() === '') throw decodeError('empty body');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw decodeError(err instanceof Error ? err.message : 'malformed JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw decodeError(`expected a JSON object, got ${jsonType(raw)}`);
  }
  const body = raw as Record<string, unknown>;
  const name = optionalString(body, 'name', '');
  const desiredState = optionalString(body, 'desiredState', '');
  let options: UnitOption[] | undefined;
  const rawOptions = body['options'];
  if (rawOptions !== undefined && rawOptions !== null) {
    if (!Array.isArray(rawOptions))
      throw decodeError(`options must be an array, not ${jsonType(rawOptions)}`);
    options = rawOptions.map((o: unknown, i) => {
      if (typeof o !== 'object' || o === null || Array.isArray(o)) {
        throw decodeError(`options[${i}] must be an object, not ${jsonType(o)}`);
      }
      const opt = o as Record<string, unknown>;
      // Go clients omit empty strings (omitempty): a missing field is "".
      return {
        section: optionalString(opt, 'section', `options[${i}].`) ?? '',
        name: optionalString(opt, 'name', `options[${i}].`) ?? '',
        value: optionalString(opt, 'value', `options[${i}].`) ?? '',
      };
    });
  }
  return { name, desiredState, options };
}

const NAME_PROBLEM = /[=\n\r[\]]|^[#;]/;

/**
 * Refuses options that cannot be what a unit file says: every option must
 * come back unchanged from writing the unit in canonical form and parsing it
 * again (so the text the agents write, the hash and the options agree), and
 * lines must stay within systemd's limit.
 * @throws ValidationError
 */
export function validateOptionsText(options: readonly UnitOption[]): void {
  options.forEach((o, i) => {
    const where = `option ${i + 1} (${JSON.stringify(clip(o.section, 40))} ${JSON.stringify(clip(o.name, 40))})`;
    if (o.section === '') throw new ValidationError(`${where}: section cannot be empty`);
    if (/[[\]\n\r]/.test(o.section) || o.section.trim() !== o.section) {
      throw new ValidationError(`${where}: invalid section name`);
    }
    if (o.name === '') throw new ValidationError(`${where}: option name cannot be empty`);
    if (NAME_PROBLEM.test(o.name) || o.name.trim() !== o.name) {
      throw new ValidationError(`${where}: invalid option name`);
    }
  });
  // The parser's own errors (such as "line too long (max 2048 bytes)") come through as they are.
  const reparsed = parseUnitFile(serializeUnitOptions(options));
  // The canonical form groups a section that appears more than once: compare in that order.
  const sections = new Map<string, UnitOption[]>();
  for (const o of options) {
    const group = sections.get(o.section);
    if (group === undefined) sections.set(o.section, [o]);
    else group.push(o);
  }
  const grouped = [...sections.values()].flat();
  if (!sameOptions(reparsed, grouped)) {
    const i = grouped.findIndex((o, k) => {
      const p = reparsed[k];
      return p === undefined || p.section !== o.section || p.name !== o.name || p.value !== o.value;
    });
    const o = grouped[i];
    const where =
      o === undefined
        ? 'options'
        : `option ${i + 1} (${JSON.stringify(clip(o.section, 40))} ${JSON.stringify(clip(o.name, 40))})`;
    throw new ValidationError(
      `${where}: value cannot be written to a unit file as given ` +
        '(leading or trailing whitespace, a line break not preceded by "\\", or a trailing "\\")',
    );
  }
}

/**
 * Decodes and checks a PUT body against the unit name from the URL, in
 * fleet's order: decode, name mismatch, name validity, then (ours) desired
 * state validity, options, template activation.
 * @throws HttpError 400, ValidationError
 */
export function parsePutRequest(urlName: string, text: string): PutUnitRequest {
  const body = decodePutBody(text);
  const name = body.name === undefined || body.name === '' ? urlName : body.name;
  if (name !== urlName) {
    throw new HttpError(
      400,
      `name in URL ${JSON.stringify(clip(urlName))} differs from unit name in request body ${JSON.stringify(clip(name))}`,
    );
  }
  validateUnitName(name);
  let desiredState: JobState | undefined;
  if (body.desiredState !== undefined && body.desiredState !== '') {
    // Fleet stored any string here and its engine then ignored the unit; ours: refuse it.
    if (!isJobState(body.desiredState)) {
      throw new ValidationError(
        `invalid desiredState ${JSON.stringify(clip(body.desiredState))}: must be inactive, loaded or launched`,
      );
    }
    desiredState = body.desiredState;
  }
  const options = body.options !== undefined && body.options.length > 0 ? body.options : undefined;
  let requirements: Requirements | undefined;
  if (options !== undefined) {
    validateOptionsText(options);
    requirements = validateUnitOptions(options, name);
  }
  if (unitNameInfo(name).isTemplate && desiredState !== undefined && desiredState !== 'inactive') {
    throw new ValidationError(`cannot activate template ${JSON.stringify(name)}`);
  }
  return { name, desiredState, options, requirements };
}
