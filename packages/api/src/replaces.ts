import { ValidationError, globMatches, isLiteralGlob, type Requirements } from '@fleet/core';

/** Most glob tests one cycle check may make (a few hundred ms at worst). */
const MATCH_BUDGET = 500_000;

/**
 * Finds a cycle of `Replaces=` that passes through `name`, given every unit's
 * Replaces globs (with `name`'s new globs). Fleet silently ignored such
 * cycles; we refuse the write that would close one. Only a cycle through the
 * unit being written is looked for: that is the one this write would create.
 *
 * Breadth-first from `name`, so the shortest cycle is reported. Each unit is
 * visited once; a literal glob is a lookup and a wildcard glob is tested only
 * against units not visited yet, so wide globs (`Replaces=web-*`) over
 * thousands of units stay cheap.
 *
 * @returns the names along the cycle, starting and ending with `name`, or undefined.
 * @throws ValidationError if the globs are so many and so wide that checking would take too long.
 */
export function replacesCycleThrough(
  name: string,
  units: ReadonlyMap<string, Pick<Requirements, 'replaces'>>,
): string[] | undefined {
  const unvisited = new Set([...units.keys()].sort());
  unvisited.delete(name);
  const parent = new Map<string, string>();
  const queue: string[] = [name];
  let work = 0;
  const visit = (next: string, from: string): void => {
    unvisited.delete(next);
    parent.set(next, from);
    queue.push(next);
  };
  for (let i = 0; i < queue.length; i++) {
    const n = queue[i] as string;
    for (const glob of units.get(n)?.replaces ?? []) {
      if (n !== name && globMatches(glob, name)) {
        const path = [n];
        for (let p = parent.get(n); p !== undefined; p = parent.get(p)) path.push(p);
        return [...path.reverse(), name];
      }
      if (isLiteralGlob(glob)) {
        if (unvisited.has(glob)) visit(glob, n);
        continue;
      }
      // Deleting from a Set while iterating it is safe: removed entries are skipped.
      for (const other of unvisited) {
        if (++work > MATCH_BUDGET) {
          throw new ValidationError(
            `cannot check ${name} for circular Replaces: its Replaces= globs and those of the units it replaces ` +
              'match too many units; use narrower globs',
            { fields: { unit: name } },
          );
        }
        if (globMatches(glob, other)) visit(other, n);
      }
    }
  }
  return undefined;
}
