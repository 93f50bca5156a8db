import { ValidationError } from './errors.js';
import { globMatches } from './glob.js';
import type { UnitOption } from './unit-file.js';
import { unitNameInfo } from './unit-name.js';

/** The `[X-Fleet]` section name (exact). */
export const X_FLEET_SECTION = 'X-Fleet';

/** Canonical requirement keys and the older spellings fleet still honoured. */
export const REQUIREMENT_KEYS = {
  MachineID: ['MachineID', 'X-ConditionMachineID', 'X-ConditionMachineBootID'],
  MachineOf: ['MachineOf', 'X-ConditionMachineOf'],
  MachineMetadata: ['MachineMetadata', 'X-ConditionMachineMetadata'],
  Conflicts: ['Conflicts', 'X-Conflicts'],
  Global: ['Global'],
  Replaces: ['Replaces'],
} as const satisfies Record<string, readonly string[]>;

export type RequirementKey = keyof typeof REQUIREMENT_KEYS;

const keyOfSpelling = new Map<string, RequirementKey>(
  Object.entries(REQUIREMENT_KEYS).flatMap(([key, spellings]) =>
    spellings.map((s) => [s, key as RequirementKey] as const),
  ),
);

/** A unit's `[X-Fleet]` section as typed scheduling requirements. */
export interface Requirements {
  /** Full machine ID or its 8-character prefix; first value wins, as in fleet. */
  readonly machineID: string | undefined;
  /** Exact unit names whose machine this unit must share. */
  readonly machineOf: readonly string[];
  /** key → allowed values (OR within a key, AND across keys). */
  readonly machineMetadata: ReadonlyMap<string, readonly string[]>;
  /** Globs: no unit matching them may share this unit's machine (checked both ways). */
  readonly conflicts: readonly string[];
  readonly global: boolean;
  /** Globs of units this unit displaces from their machine. */
  readonly replaces: readonly string[];
  /** Keys in `[X-Fleet]` that mean nothing to the scheduler (fleetctl warns about them). */
  readonly unknownKeys: readonly string[];
}

/**
 * Splits an X-Fleet value as fleet did: a value that starts and ends with `"`
 * is split on spaces outside quotes and the quotes dropped; any other value is
 * one item. Empty items (from doubled spaces) are dropped.
 */
export function splitMultiValue(value: string): string[] {
  if (!(value.length >= 2 && value.startsWith('"') && value.endsWith('"'))) return [value];
  const items: string[] = [];
  let current = '';
  let quoted = false;
  for (const c of value) {
    if (c === '"') {
      quoted = !quoted;
      continue;
    }
    if (c === ' ' && !quoted) {
      items.push(current);
      current = '';
      continue;
    }
    current += c;
  }
  items.push(current);
  return items.filter((s) => s.length > 0);
}

/**
 * Replaces `%n` (full name), `%N` (name without type), `%p` (prefix) and `%i`
 * (instance) with parts of the unit's own name. For a name without `@`, `%p` is
 * the name without type and `%i` is empty, as in systemd.
 *
 * A template (`web@.service`) keeps `%i`: its values are expanded per
 * instance, and the template itself is never scheduled. Expanding it to ''
 * would make `MachineMetadata=zone=%i` a malformed item and refuse the
 * template (fleet expanded it to '' and silently ignored the item).
 */
export function expandSpecifiers(value: string, unitName: string): string {
  if (!value.includes('%')) return value;
  const info = unitNameInfo(unitName);
  return value.replace(/%[nNpi]/g, (m) => {
    switch (m) {
      case '%n':
        return info.fullName;
      case '%N':
        return info.name;
      case '%p':
        return info.prefix;
      default:
        return info.isTemplate ? m : info.instance;
    }
  });
}

const truthy = new Set(['true', 'yes', '1', 'on', 't']);

/** Items of keys whose items are lists of names or globs separated by whitespace. */
const whitespaceLists: ReadonlySet<RequirementKey> = new Set(['MachineOf', 'Conflicts', 'Replaces']);

/**
 * Reads a unit's `[X-Fleet]` options into typed requirements, expanding
 * specifiers with the unit's own name. Does not validate combinations; see
 * {@link validateRequirements}.
 *
 * @throws ValidationError for a malformed MachineMetadata item (fleet ignored
 * those silently; we refuse them, naming the item).
 */
export function parseRequirements(options: readonly UnitOption[], unitName: string): Requirements {
  const values = new Map<RequirementKey, string[]>();
  const unknownKeys: string[] = [];
  for (const opt of options) {
    if (opt.section !== X_FLEET_SECTION) continue;
    const key = keyOfSpelling.get(opt.name);
    if (key === undefined) {
      if (!unknownKeys.includes(opt.name)) unknownKeys.push(opt.name);
      continue;
    }
    let items = splitMultiValue(opt.value).map((v) => expandSpecifiers(v, unitName));
    if (whitespaceLists.has(key)) items = items.flatMap((v) => v.split(/\s+/).filter(Boolean));
    const list = values.get(key);
    if (list === undefined) values.set(key, items);
    else list.push(...items);
  }

  const machineMetadata = new Map<string, string[]>();
  for (const item of values.get('MachineMetadata') ?? []) {
    const eq = item.indexOf('=');
    const key = eq === -1 ? '' : item.slice(0, eq).trim();
    const value = eq === -1 ? '' : item.slice(eq + 1).trim();
    if (key === '' || value === '' || value.includes('=')) {
      throw new ValidationError(
        `invalid MachineMetadata item ${JSON.stringify(item)}: expected key=value` +
          (value.includes('=') ? ' (quote each item: "a=b" "c=d")' : ''),
        { fields: { unit: unitName, item } },
      );
    }
    const list = machineMetadata.get(key);
    if (list === undefined) machineMetadata.set(key, [value]);
    else if (!list.includes(value)) list.push(value);
  }

  const globalValues = values.get('Global') ?? [];
  const lastGlobal = globalValues[globalValues.length - 1];
  return {
    machineID: (values.get('MachineID') ?? [])[0],
    machineOf: values.get('MachineOf') ?? [],
    machineMetadata,
    conflicts: values.get('Conflicts') ?? [],
    global: lastGlobal !== undefined && truthy.has(lastGlobal.toLowerCase()),
    replaces: values.get('Replaces') ?? [],
    unknownKeys,
  };
}

/**
 * Refuses the combinations fleet refused, with fleet's texts and in its order
 * (fleet-compat §3). Peers are MachineOf units; a peer that matches one of the
 * unit's own Conflicts or Replaces globs can never be satisfied.
 */
export function validateRequirements(req: Requirements, unitName: string): void {
  const fail = (message: string): never => {
    throw new ValidationError(message, { fields: { unit: unitName } });
  };
  const hasMachineID = req.machineID !== undefined;
  if (hasMachineID && req.machineOf.length > 0) fail('MachineID cannot be used with Peers');
  if (hasMachineID && req.conflicts.length > 0) fail('MachineID cannot be used with Conflicts');
  if (hasMachineID && req.global) fail('MachineID cannot be used with Global');
  if (hasMachineID && req.replaces.length > 0) fail('MachineID cannot be used with Replaces');
  if (req.global && req.machineOf.length > 0) fail('Global cannot be used with Peers');
  if (req.global && req.replaces.length > 0) fail('Global cannot be used with Replaces');
  if (req.conflicts.length > 0 && req.replaces.length > 0) {
    fail('Conflicts cannot be used with Replaces');
  }
  for (const peer of req.machineOf) {
    for (const glob of req.conflicts) {
      if (globMatches(glob, peer)) {
        fail(
          `unresolvable requirements: peer ${JSON.stringify(peer)} matches conflict ${JSON.stringify(glob)}`,
        );
      }
    }
    for (const glob of req.replaces) {
      if (globMatches(glob, peer)) {
        fail(
          `unresolvable requirements: peer ${JSON.stringify(peer)} matches replace ${JSON.stringify(glob)}`,
        );
      }
    }
  }
}

/**
 * Validates a unit's options as a whole: its requirements parse and their
 * combination is allowed. Returns the parsed requirements.
 *
 * @throws ValidationError with fleet's texts.
 */
export function validateUnitOptions(options: readonly UnitOption[], unitName = ''): Requirements {
  const req = parseRequirements(options, unitName);
  validateRequirements(req, unitName);
  return req;
}

/** True if units `a` and `b` may not share a machine (either's Conflicts glob matches the other). */
export function unitsConflict(
  aName: string,
  aReq: Pick<Requirements, 'conflicts'>,
  bName: string,
  bReq: Pick<Requirements, 'conflicts'>,
): boolean {
  if (aName === bName) return false;
  return (
    aReq.conflicts.some((g) => globMatches(g, bName)) || bReq.conflicts.some((g) => globMatches(g, aName))
  );
}

/**
 * Finds a cycle of Replaces among units (A replaces B, B replaces A, …), which
 * fleet silently ignored and we refuse. Returns the names along the cycle
 * (first name repeated at the end) or undefined.
 */
export function findReplacesCycle(
  units: ReadonlyMap<string, Pick<Requirements, 'replaces'>>,
): string[] | undefined {
  const edges = new Map<string, string[]>();
  const names = [...units.keys()].sort();
  for (const name of names) {
    const globs = units.get(name)?.replaces ?? [];
    if (globs.length === 0) continue;
    edges.set(
      name,
      names.filter((other) => other !== name && globs.some((g) => globMatches(g, other))),
    );
  }
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): string[] | undefined => {
    state.set(n, 'visiting');
    stack.push(n);
    for (const next of edges.get(n) ?? []) {
      const s = state.get(next);
      if (s === 'visiting') return [...stack.slice(stack.indexOf(next)), next];
      if (s === undefined) {
        const found = visit(next);
        if (found) return found;
      }
    }
    stack.pop();
    state.set(n, 'done');
    return undefined;
  };
  for (const n of edges.keys()) {
    if (state.get(n) === undefined) {
      const found = visit(n);
      if (found) return found;
    }
  }
  return undefined;
}

/** The text for the error raised on a Replaces cycle. */
export function replacesCycleMessage(cycle: readonly string[]): string {
  return `circular Replaces: ${cycle.join(' replaces ')}`;
}
