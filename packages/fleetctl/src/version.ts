import { readFileSync } from 'node:fs';

/**
 * fleetctl's version: the workspace's root package.json is the one source
 * (both `src/` and `dist/` sit three levels below it).
 */
export const FLEETCTL_VERSION: string = readVersion();

function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version?: unknown;
    };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}
