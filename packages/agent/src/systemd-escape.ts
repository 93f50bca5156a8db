/**
 * systemd's object-path labels (`sd_bus_path_encode`, `bus_label_escape` in
 * systemd's src/basic/bus-label.c): every byte that is not an ASCII letter —
 * and a digit in first position — becomes `_xx` (two lowercase hex digits);
 * the empty string is `_`. `hello.service` ⇄ `/org/freedesktop/systemd1/unit/hello_2eservice`.
 */

/** Object path prefix of systemd's unit objects (with the trailing slash). */
export const UNIT_PATH_PREFIX = '/org/freedesktop/systemd1/unit/';

const isAlpha = (b: number) => (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);
const isDigit = (b: number) => b >= 0x30 && b <= 0x39;

/** Escapes one object-path label the way systemd does. */
export function escapeBusLabel(s: string): string {
  if (s.length === 0) return '_';
  const bytes = Buffer.from(s, 'utf8');
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] as number;
    if (isAlpha(b) || (i > 0 && isDigit(b))) out += String.fromCharCode(b);
    else out += `_${b.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** Reverses {@link escapeBusLabel}; returns undefined for a label systemd would not produce. */
export function unescapeBusLabel(label: string): string | undefined {
  if (label === '_') return '';
  const bytes: number[] = [];
  for (let i = 0; i < label.length; i++) {
    const c = label.charCodeAt(i);
    if (c === 0x5f /* _ */) {
      const hex = label.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) return undefined;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (isAlpha(c) || isDigit(c)) {
      bytes.push(c);
    } else {
      return undefined;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** `hello.service` → `/org/freedesktop/systemd1/unit/hello_2eservice`. */
export function unitObjectPath(name: string): string {
  return UNIT_PATH_PREFIX + escapeBusLabel(name);
}

/** The unit name of a unit object path, or undefined when the path is not one. */
export function unitNameFromPath(path: string): string | undefined {
  if (!path.startsWith(UNIT_PATH_PREFIX)) return undefined;
  const label = path.slice(UNIT_PATH_PREFIX.length);
  if (label.length === 0 || label.includes('/')) return undefined;
  return unescapeBusLabel(label);
}
