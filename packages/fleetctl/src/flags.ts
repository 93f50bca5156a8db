import { InvalidArgumentError } from 'commander';

/**
 * Flag declarations shared by global and command flags: commander's syntax
 * (`-l, --lines <N>`) plus what argv pre-processing and help need to know.
 */
export interface FlagSpec {
  /** commander syntax: `--endpoint <url>`, `-f, --follow`, `--no-block`. */
  readonly flags: string;
  readonly description: string;
  readonly defaultValue?: string | number | boolean;
  /** Converts and checks a value; throws InvalidArgumentError with the reason. */
  readonly parse?: (value: string) => unknown;
  /** Left out of help (deprecated spellings). */
  readonly hidden?: boolean;
}

/** What argv pre-processing needs to know about one flag. */
export interface FlagShape {
  readonly long: string;
  readonly short: string | undefined;
  readonly takesValue: boolean;
}

/** Reads `-l, --lines <N>` into its names and whether it takes a value. */
export function flagShape(spec: FlagSpec): FlagShape {
  const names = spec.flags.split(/[ ,|]+/).filter((p) => p.startsWith('-'));
  return {
    long: names.find((n) => n.startsWith('--')) ?? '',
    short: names.find((n) => !n.startsWith('--')),
    takesValue: /[<[]/.test(spec.flags),
  };
}

/** Go's strconv.ParseBool, which fleet used for flags and FLEETCTL_* variables. */
export function parseGoBool(value: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  return undefined;
}

/** A whole number ≥ 0 (`--lines`, `--block-attempts`, ports). */
export function parseCount(value: string): number {
  if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError('must be a whole number ≥ 0');
  return Number(value.trim());
}

/** A TCP port. */
export function parsePort(value: string): number {
  const n = parseCount(value);
  if (n < 1 || n > 65535) throw new InvalidArgumentError('must be a port number (1-65535)');
  return n;
}

/** Seconds as fleet's float flags took them (`3.0`, `0.5`); must be > 0. */
export function parseSeconds(value: string): number {
  const n = Number(value.trim());
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw new InvalidArgumentError('must be a number of seconds > 0');
  }
  return n;
}
