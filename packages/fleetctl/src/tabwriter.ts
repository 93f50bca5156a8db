/**
 * Column alignment as Go's text/tabwriter does it. fleet's fleetctl wrote
 * every table through `tabwriter.NewWriter(os.Stdout, 0, 8, 1, '\t', 0)`;
 * scripts and eyes are used to that exact layout, so we reproduce the
 * algorithm rather than approximate it:
 *
 * - input lines are cells separated by TAB; the text after a line's last TAB
 *   is not part of any column (the last column is never padded);
 * - a column block is a run of consecutive lines that all have a cell in that
 *   column; its width is the widest cell plus `padding`, at least `minWidth`;
 * - with padChar TAB the width is rounded up to a multiple of `tabWidth` and
 *   a cell is padded with as many TABs as it takes to reach it.
 */
export interface TabwriterOptions {
  /** @default 0 */
  readonly minWidth?: number;
  /** @default 8 */
  readonly tabWidth?: number;
  /** @default 1 */
  readonly padding?: number;
  /** @default '\t' */
  readonly padChar?: string;
}

interface Layout {
  readonly minWidth: number;
  readonly tabWidth: number;
  readonly padding: number;
  readonly padChar: string;
}

/** Display width as Go counts it: one per code point. */
function textWidth(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function pad(layout: Layout, textw: number, cellw: number): string {
  if (layout.padChar === '\t') {
    if (layout.tabWidth === 0) return '';
    const rounded = Math.ceil(cellw / layout.tabWidth) * layout.tabWidth;
    return '\t'.repeat(Math.ceil((rounded - textw) / layout.tabWidth));
  }
  return layout.padChar.repeat(cellw - textw);
}

/**
 * Aligns `text` (lines of TAB-separated cells, each line ending in `\n`) as
 * Go's tabwriter would with the given options; the defaults are fleetctl's.
 */
export function tabwrite(text: string, options: TabwriterOptions = {}): string {
  const layout: Layout = {
    minWidth: options.minWidth ?? 0,
    tabWidth: options.tabWidth ?? 8,
    padding: options.padding ?? 1,
    padChar: options.padChar ?? '\t',
  };
  const endsWithNewline = text.endsWith('\n');
  const rawLines = (endsWithNewline ? text.slice(0, -1) : text).split('\n');
  const lines = rawLines.map((l) => l.split('\t'));
  const widths: number[] = [];
  let out = '';

  const writeLines = (from: number, to: number): void => {
    for (let i = from; i < to; i++) {
      const cells = lines[i] ?? [];
      cells.forEach((cell, j) => {
        out += cell;
        const w = widths[j];
        if (w !== undefined && j < cells.length - 1) out += pad(layout, textWidth(cell), w);
      });
      if (i < lines.length - 1 || endsWithNewline) out += '\n';
    }
  };

  const format = (from: number, to: number): void => {
    const column = widths.length;
    let line0 = from;
    for (let i = from; i < to; i++) {
      if (column >= (lines[i]?.length ?? 0) - 1) continue;
      // A block of lines with a cell in this column starts here.
      writeLines(line0, i);
      line0 = i;
      let width = layout.minWidth;
      for (; i < to; i++) {
        const cells = lines[i] ?? [];
        if (column >= cells.length - 1) break;
        width = Math.max(width, textWidth(cells[column] ?? '') + layout.padding);
      }
      widths.push(width);
      format(line0, i);
      widths.pop();
      line0 = i;
    }
    writeLines(line0, to);
  };

  format(0, lines.length);
  return out;
}

/** Renders rows of cells (header included, if any) as a fleetctl table. */
export function formatTable(rows: readonly (readonly string[])[]): string {
  if (rows.length === 0) return '';
  return tabwrite(rows.map((r) => `${r.join('\t')}\n`).join(''));
}
