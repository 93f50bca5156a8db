import { parseRequirements, type Machine, type UnitOption } from '@fleet/core';
import { UsageError } from './errors.js';
import { formatTable } from './tabwriter.js';

/** What fleet printed for a missing value. */
export const NONE = '-';

/** `960a9f62...`, or the whole ID with `--full`. */
export function machineIDLegend(id: string, full: boolean): string {
  return full ? id : `${id.slice(0, 8)}...`;
}

/** `960a9f62.../192.168.2.52`; without `/ip` when the machine's address is unknown. */
export function machineLegend(id: string, machine: Machine | undefined, full: boolean): string {
  const ip = machine?.primaryIP ?? '';
  return ip === '' ? machineIDLegend(id, full) : `${machineIDLegend(id, full)}/${ip}`;
}

/** 7 hex characters, or all 40 with `--full`. */
export function hashLegend(hash: string | undefined, full: boolean): string {
  if (hash === undefined || hash === '') return NONE;
  return full ? hash : hash.slice(0, 7);
}

/** `k=v` pairs sorted by key, joined by `,`. */
export function metadataLegend(metadata: Readonly<Record<string, string>> | undefined): string {
  const keys = Object.keys(metadata ?? {}).sort();
  if (keys.length === 0) return NONE;
  return keys.map((k) => `${k}=${metadata?.[k] ?? ''}`).join(',');
}

/** A value, or `-` when it is missing or empty. */
export function orNone(value: string | undefined): string {
  return value === undefined || value === '' ? NONE : value;
}

/** Whether a unit's `[X-Fleet]` makes it global; a unit whose requirements do not parse is not. */
export function isGlobalUnit(name: string, options: readonly UnitOption[] | undefined): boolean {
  try {
    return parseRequirements(options ?? [], name).global;
  } catch {
    return false;
  }
}

/** One column of a listing: how to print a cell of an item. */
export type Field<T> = (item: T, full: boolean) => string;

/** The columns a listing offers and those it prints by default. */
export interface FieldSet<T> {
  readonly fields: Readonly<Record<string, Field<T>>>;
  readonly defaults: string;
  /** Old names still accepted, with the name to use instead (a warning is printed). */
  readonly deprecated?: Readonly<Record<string, string>>;
}

/**
 * Reads `--fields`: comma-separated names, each one a column of `set`.
 *
 * @throws UsageError naming the bad key and listing the valid ones.
 */
export function selectFields<T>(value: string, set: FieldSet<T>, warn: (line: string) => void): string[] {
  if (value.trim() === '') throw new UsageError('Must define output format');
  const valid = Object.keys(set.fields)
    .filter((k) => !(k in (set.deprecated ?? {})))
    .sort();
  const cols = value.split(',').map((c) => c.trim());
  for (const col of cols) {
    if (!(col in set.fields)) {
      throw new UsageError(
        `Invalid key in output format: ${JSON.stringify(col)} (valid fields: ${valid.join(',')})`,
      );
    }
    const instead = set.deprecated?.[col];
    if (instead !== undefined) {
      warn(`WARNING: The ${JSON.stringify(col)} field is deprecated. Use ${JSON.stringify(instead)} instead`);
    }
  }
  return cols;
}

/** Renders items as fleet did: upper-cased header (unless `--no-legend`), tabwriter layout. */
export function renderListing<T>(
  items: readonly T[],
  cols: readonly string[],
  set: FieldSet<T>,
  opts: { readonly full: boolean; readonly legend: boolean },
): string {
  const rows: string[][] = [];
  if (opts.legend) rows.push(cols.map((c) => c.toUpperCase()));
  for (const item of items) {
    rows.push(cols.map((c) => (set.fields[c] as Field<T>)(item, opts.full)));
  }
  return formatTable(rows);
}
