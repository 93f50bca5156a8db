import { ValidationError } from './errors.js';

/** Unit types systemd (and fleet) accept as a unit name suffix. */
export const UNIT_TYPES = [
  'automount',
  'busname',
  'device',
  'mount',
  'path',
  'scope',
  'service',
  'slice',
  'snapshot',
  'socket',
  'swap',
  'target',
  'timer',
] as const;
export type UnitType = (typeof UNIT_TYPES)[number];

/** Unit types that may be templates (`foo@.service`) or instances of one. */
export const TEMPLATE_UNIT_TYPES = ['path', 'service', 'socket', 'target', 'timer'] as const;

/** Maximum unit name length in bytes, as in systemd and fleet. */
export const UNIT_NAME_MAX = 256;

const unitTypes: ReadonlySet<string> = new Set(UNIT_TYPES);
const templateTypes: ReadonlySet<string> = new Set(TEMPLATE_UNIT_TYPES);
const validChar = /^[A-Za-z0-9:_.\\@-]$/;

/**
 * Returns the reason `name` is not a valid unit name, or undefined if it is.
 * Checks run in fleet's order with fleet's texts (fleet-compat §1).
 */
export function unitNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'unit name cannot be empty';
  if (Buffer.byteLength(name, 'utf8') > UNIT_NAME_MAX) {
    return `unit name exceeds maximum length (${UNIT_NAME_MAX})`;
  }
  const dot = name.lastIndexOf('.');
  if (dot === -1) return 'unit name must contain "."';
  if (dot === name.length - 1) return 'unit name cannot end in "."';
  const suffix = name.slice(dot + 1);
  if (!unitTypes.has(suffix)) return `invalid unit type: ${JSON.stringify(suffix)}`;
  if (name.includes('@') && !templateTypes.has(suffix)) {
    return `invalid unit type for template: ${JSON.stringify(suffix)}`;
  }
  for (const c of name.slice(0, dot)) {
    if (!validChar.test(c)) return `invalid character ${JSON.stringify(c)} in unit name`;
  }
  if (name.startsWith('@')) return 'unit name cannot start in "@"';
  return undefined;
}

/** Throws a ValidationError with fleet's text if `name` is not a valid unit name. */
export function validateUnitName(name: string): void {
  const problem = unitNameProblem(name);
  if (problem !== undefined) throw new ValidationError(problem, { fields: { unit: name } });
}

export function isValidUnitName(name: string): boolean {
  return unitNameProblem(name) === undefined;
}

/** The parts of a unit name, as systemd's specifiers see them. */
export interface UnitNameInfo {
  /** `foo@1.service` */
  readonly fullName: string;
  /** Name without the type suffix: `foo@1` */
  readonly name: string;
  /** Text before the first `@`, or the whole name without suffix: `foo` */
  readonly prefix: string;
  /** Text between the first `@` and the last `.`; empty if none: `1` */
  readonly instance: string;
  /** The type suffix without the dot: `service` */
  readonly type: string;
  /** The template this name is an instance of (`foo@.service`), or undefined. */
  readonly template: string | undefined;
  /** True for `foo@.service` (an `@` and an empty instance). */
  readonly isTemplate: boolean;
  /** True for `foo@1.service` (an `@` and a non-empty instance). */
  readonly isInstance: boolean;
}

/** Splits a unit name; does not validate it. */
export function unitNameInfo(fullName: string): UnitNameInfo {
  const dot = fullName.lastIndexOf('.');
  const name = dot === -1 ? fullName : fullName.slice(0, dot);
  const type = dot === -1 ? '' : fullName.slice(dot + 1);
  const at = name.indexOf('@');
  if (at === -1) {
    return {
      fullName,
      name,
      prefix: name,
      instance: '',
      type,
      template: undefined,
      isTemplate: false,
      isInstance: false,
    };
  }
  const prefix = name.slice(0, at);
  const instance = name.slice(at + 1);
  return {
    fullName,
    name,
    prefix,
    instance,
    type,
    template: instance === '' ? undefined : `${prefix}@.${type}`,
    isTemplate: instance === '',
    isInstance: instance !== '',
  };
}

export function isTemplateName(name: string): boolean {
  return unitNameInfo(name).isTemplate;
}

/**
 * fleetctl's name mangling: the base name of a path, with `.service` appended
 * unless it already ends in a valid unit type. Fleet recognised only seven types,
 * so `foo.target` became `foo.target.service`; we recognise every valid type.
 */
export function mangleUnitName(arg: string): string {
  const slash = arg.lastIndexOf('/');
  const base = slash === -1 ? arg : arg.slice(slash + 1);
  const dot = base.lastIndexOf('.');
  if (dot !== -1 && unitTypes.has(base.slice(dot + 1))) return base;
  return `${base}.service`;
}
