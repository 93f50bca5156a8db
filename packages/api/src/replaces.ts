import { globMatches, type Requirements } from '@fleet/core';

/**
 * Finds a cycle of `Replaces=` that passes through `name`, given every unit's
 * Replaces globs (with `name`'s new globs). Fleet silently ignored such
 * cycles; we refuse the write that would close one. Only a cycle through the
 * unit being written is looked for: that is the one this write would create.
 *
 * @returns the names along the cycle, starting and ending with `name`, or undefined.
 */
export function replacesCycleThrough(
  name: string,
  units: ReadonlyMap<string, Pick<Requirements, 'replaces'>>,
): string[] | undefined {
  const names = [...units.keys()].sort();
  const successors = (n: string): string[] => {
    const globs = units.get(n)?.replaces ?? [];
    if (globs.length === 0) return [];
    return names.filter((other) => other !== n && globs.some((g) => globMatches(g, other)));
  };
  // Breadth-first from `name`; the first edge back to `name` closes the shortest cycle.
  const parent = new Map<string, string>();
  const queue: string[] = [name];
  const seen = new Set<string>([name]);
  for (let i = 0; i < queue.length; i++) {
    const n = queue[i] as string;
    for (const next of successors(n)) {
      if (next === name) {
        const path = [n];
        for (let p = parent.get(n); p !== undefined; p = parent.get(p)) path.push(p);
        return [...path.reverse(), name];
      }
      if (!seen.has(next)) {
        seen.add(next);
        parent.set(next, n);
        queue.push(next);
      }
    }
  }
  return undefined;
}
