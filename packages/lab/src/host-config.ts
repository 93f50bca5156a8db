/**
 * Overrides derived from the host's own systemd configuration, installed in
 * every machine's /etc overlay (computed once per cluster on the host, so a
 * boot does not pay for it):
 *
 * - every systemd generator is masked: they read host configuration that
 *   does not describe a machine (fstab, crypttab, init.d scripts, kernel
 *   command line) and cost about half a second per boot;
 * - every tmpfiles.d file with rules for paths a machine shares with the host
 *   (/home, /srv, /root …) is replaced by a copy without those rules.
 */
import { readFile, readdir } from 'node:fs/promises';
import type { SeedEntry } from './seed.js';

/** Trees that are private to each machine; tmpfiles rules elsewhere would touch the host. */
export const PRIVATE_TREES = ['/run', '/var', '/tmp', '/dev', '/etc'] as const;

/** Generator directories, highest priority first (systemd.generator(7)); /run is private to machines. */
export const GENERATOR_DIRS = [
  '/etc/systemd/system-generators',
  '/usr/local/lib/systemd/system-generators',
  '/usr/lib/systemd/system-generators',
  '/lib/systemd/system-generators',
  '/etc/systemd/system-environment-generators',
  '/usr/local/lib/systemd/system-environment-generators',
  '/usr/lib/systemd/system-environment-generators',
  '/lib/systemd/system-environment-generators',
] as const;

/** tmpfiles.d directories, highest priority first (tmpfiles.d(5)). */
export const TMPFILES_DIRS = [
  '/etc/tmpfiles.d',
  '/usr/local/lib/tmpfiles.d',
  '/usr/lib/tmpfiles.d',
  '/lib/tmpfiles.d',
];

function isPrivate(path: string): boolean {
  return PRIVATE_TREES.some((tree) => path === tree || path.startsWith(`${tree}/`));
}

/**
 * The text of a tmpfiles.d file without the rules whose path lies outside the
 * machine's private trees, or undefined when every rule may stay.
 * Comments and blank lines are kept.
 */
export function filterTmpfiles(text: string): string | undefined {
  const lines = text.split('\n');
  const kept = lines.filter((line) => {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return true;
    const path = trimmed.split(/\s+/)[1];
    return path !== undefined && isPrivate(path);
  });
  return kept.length === lines.length ? undefined : kept.join('\n');
}

async function names(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}

/** Seed entries (below `etc/`) masking the host's generators and filtering its tmpfiles.d files. */
export async function hostOverrides(): Promise<SeedEntry[]> {
  const entries: SeedEntry[] = [];
  for (const kind of ['system-generators', 'system-environment-generators']) {
    const seen = new Set<string>();
    for (const dir of GENERATOR_DIRS.filter((d) => d.endsWith(`/${kind}`))) {
      for (const name of await names(dir)) {
        if (seen.has(name)) continue;
        seen.add(name);
        entries.push({ kind: 'symlink', path: `etc/systemd/${kind}/${name}`, target: '/dev/null' });
      }
    }
  }
  // The effective file of each name is the first found in priority order.
  const seen = new Set<string>();
  for (const dir of TMPFILES_DIRS) {
    for (const name of await names(dir)) {
      if (!name.endsWith('.conf') || seen.has(name)) continue;
      seen.add(name);
      const text = await readFile(`${dir}/${name}`, 'utf8').catch(() => undefined);
      const filtered = text === undefined ? undefined : filterTmpfiles(text);
      if (filtered !== undefined) {
        entries.push({ kind: 'file', path: `etc/tmpfiles.d/${name}`, content: filtered, mode: 0o644 });
      }
    }
  }
  return entries;
}
