/**
 * `journal --follow` over fleetd's journal route: the route returns the last
 * N lines, so following means fetching a window every second and printing
 * what is new. The new window is the old one shifted by the lines that
 * arrived: find the smallest shift at which the old window's tail is the new
 * window's head. Lines that repeat exactly can hide a shift; journal lines
 * carry timestamps, so that needs identical lines within one second.
 */

/** Lines of `next` that were not in `prev` (both windows of the same journal, oldest first). */
export function newJournalLines(prev: readonly string[], next: readonly string[]): string[] {
  for (let shift = 0; shift <= prev.length; shift++) {
    const overlap = prev.length - shift;
    if (overlap > next.length) continue;
    let same = true;
    for (let i = 0; i < overlap; i++) {
      if (prev[shift + i] !== next[i]) {
        same = false;
        break;
      }
    }
    if (same) return next.slice(overlap);
  }
  return [...next];
}

/** The lines of a command's output, without the empty string after a final newline. */
export function outputLines(output: string): string[] {
  if (output === '') return [];
  const lines = output.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

/** How many lines each follow poll fetches: enough for a busy second. */
export const FOLLOW_WINDOW = 200;
