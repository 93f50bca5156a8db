import { createHash } from 'node:crypto';
import { ValidationError } from './errors.js';

/** One `Name=Value` line of a unit file, with the section it belongs to. */
export interface UnitOption {
  readonly section: string;
  readonly name: string;
  readonly value: string;
}

/** systemd's LINE_MAX: a line of this many bytes or more is refused, as fleet did. */
export const UNIT_LINE_MAX = 2048;

function unitFileError(message: string, line: number): ValidationError {
  return new ValidationError(message, { fields: { line } });
}

const isBlank = (s: string): boolean => s.trim().length === 0;

/**
 * Parses a systemd unit file into its ordered options, following the
 * go-systemd lexer that fleet used (fleet-compat §2):
 * - text before the first section header is ignored;
 * - lines whose first non-space character is `#` or `;` are comments (a comment
 *   ending in `\` continues onto the next line, as in go-systemd);
 * - `#`/`;` inside a value are part of it;
 * - a value whose line ends in `\` continues; the backslash and newline are kept;
 * - repeated keys and repeated sections are all kept, in order.
 *
 * @throws ValidationError with fleet's error texts.
 */
export function parseUnitFile(text: string): UnitOption[] {
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  // A final "\n" does not start another line.
  if (lines.length > 0 && lines[lines.length - 1] === '' && text.endsWith('\n')) lines.pop();
  for (let i = 0; i < lines.length; i++) {
    if (Buffer.byteLength(lines[i] ?? '', 'utf8') >= UNIT_LINE_MAX) {
      throw unitFileError(`line too long (max ${UNIT_LINE_MAX} bytes)`, i + 1);
    }
  }

  const options: UnitOption[] = [];
  let section: string | undefined;
  let i = 0;
  const skipContinued = (): void => {
    // A comment whose text ends in a backslash swallows the next line too.
    while (i < lines.length && (lines[i] ?? '').trimEnd().endsWith('\\')) i++;
    i++;
  };

  while (i < lines.length) {
    const raw = lines[i] ?? '';
    const line = raw.trimStart();
    const lineNo = i + 1;
    if (line === '') {
      i++;
      continue;
    }
    const first = line[0];
    if (first === '#' || first === ';') {
      skipContinued();
      continue;
    }
    if (first === '[') {
      const end = line.indexOf(']');
      if (end === -1) throw unitFileError('unable to find end of section', lineNo);
      const garbage = line.slice(end + 1).trim();
      section = line.slice(1, end);
      if (garbage.length > 0) {
        throw unitFileError(
          `found garbage after section name ${section}: ${JSON.stringify(garbage)}`,
          lineNo,
        );
      }
      i++;
      continue;
    }
    if (section === undefined) {
      // Text before the first section header is ignored.
      i++;
      continue;
    }
    const eq = line.indexOf('=');
    if (eq === -1) {
      throw unitFileError('unexpected newline encountered while parsing option name', lineNo);
    }
    const name = line.slice(0, eq).trim();
    let value = line.slice(eq + 1);
    i++;
    let continued = false;
    while (value.endsWith('\\')) {
      // go-systemd keeps the backslash, adds the newline and reads on until a
      // line without a trailing backslash, or a blank line, or the end.
      if (i >= lines.length) break;
      value += '\n';
      const next = lines[i] ?? '';
      if (isBlank(next)) {
        continued = true;
        i++;
        break;
      }
      value += next;
      i++;
    }
    value = continued ? `${value.trim()}\n` : value.trim();
    options.push({ section, name, value });
  }
  return options;
}

/**
 * The canonical text of a unit: options grouped by section in order of first
 * appearance, `[Section]` then `Name=Value` lines, one empty line between
 * groups, none after the last. This is what `cat` prints, what agents write to
 * disk and what is hashed.
 */
export function serializeUnitOptions(options: readonly UnitOption[]): string {
  const groups = new Map<string, UnitOption[]>();
  for (const opt of options) {
    const group = groups.get(opt.section);
    if (group === undefined) groups.set(opt.section, [opt]);
    else group.push(opt);
  }
  const parts: string[] = [];
  for (const [section, opts] of groups) {
    let part = `[${section}]\n`;
    for (const opt of opts) part += `${opt.name}=${opt.value}\n`;
    parts.push(part);
  }
  return parts.join('\n');
}

/** SHA-1 (40 hex characters) of the canonical form: fleet's unit hash. */
export function unitHash(options: readonly UnitOption[]): string {
  return createHash('sha1').update(serializeUnitOptions(options), 'utf8').digest('hex');
}

/** The first `Description=` value of the `[Unit]` section, or undefined. */
export function unitDescription(options: readonly UnitOption[]): string | undefined {
  return options.find((o) => o.section === 'Unit' && o.name === 'Description')?.value;
}

/** Whether the unit has an `[Install]` section (the agent then also enables it). */
export function hasInstallSection(options: readonly UnitOption[]): boolean {
  return options.some((o) => o.section === 'Install');
}

/** Order-sensitive equality of two option lists. */
export function sameOptions(a: readonly UnitOption[], b: readonly UnitOption[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((o, i) => {
    const p = b[i];
    return p !== undefined && o.section === p.section && o.name === p.name && o.value === p.value;
  });
}
