/**
 * Shell-style glob matching as Go's path.Match does it (fleet used it for
 * Conflicts and Replaces): `*` any run of characters, `?` one character,
 * `[...]` a class (`[!...]` or `[^...]` negated, `a-z` ranges), `\` escapes.
 * Unit names contain no `/`, so `*` is unrestricted here.
 */
export function globToRegExp(glob: string): RegExp {
  let re = '^';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '\\' && i + 1 < glob.length) {
      re += escapeRe(glob[i + 1] as string);
      i++;
    } else if (c === '[') {
      const end = findClassEnd(glob, i);
      if (end === -1) {
        re += '\\[';
        continue;
      }
      let body = glob.slice(i + 1, end);
      let negate = false;
      if (body.startsWith('!') || body.startsWith('^')) {
        negate = true;
        body = body.slice(1);
      }
      re += `[${negate ? '^' : ''}${body.replace(/[\]\\^]/g, (m) => `\\${m}`)}]`;
      i = end;
    } else re += escapeRe(c);
  }
  return new RegExp(`${re}$`, 'su');
}

function findClassEnd(glob: string, start: number): number {
  let j = start + 1;
  if (glob[j] === '!' || glob[j] === '^') j++;
  if (glob[j] === ']') j++;
  for (; j < glob.length; j++) if (glob[j] === ']') return j;
  return -1;
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

const cache = new Map<string, RegExp>();

/** True if `name` matches the glob `pattern` (compiled patterns are cached). */
export function globMatches(pattern: string, name: string): boolean {
  let re = cache.get(pattern);
  if (re === undefined) {
    re = globToRegExp(pattern);
    if (cache.size > 10_000) cache.clear();
    cache.set(pattern, re);
  }
  return re.test(name);
}

/** True if the pattern has no glob metacharacters (so it matches only itself). */
export function isLiteralGlob(pattern: string): boolean {
  return !/[*?[\\]/.test(pattern);
}
