import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { ValidationError } from '@fleet/core';

/** The machine ID: trimmed contents of /etc/machine-id. Fatal (and clear) if missing. */
export function readMachineID(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ValidationError(
      `cannot read the machine ID from ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); ` +
        'fleet identifies machines by it: create it with systemd-machine-id-setup',
    );
  }
  const id = text.trim();
  if (!/^[0-9a-f]{32}$/i.test(id)) {
    throw new ValidationError(
      `${path} does not hold a machine ID (expected 32 hex characters, got ${JSON.stringify(id.slice(0, 40))})`,
    );
  }
  return id.toLowerCase();
}

/**
 * The address shown in listings and used by ssh when `public_ip` is not set:
 * the first global IPv4 address of the interface holding the default route
 * (as fleet did), else the first non-internal IPv4 address.
 */
export function detectPublicIP(): string | undefined {
  const ifaces = networkInterfaces();
  let defaultIface: string | undefined;
  try {
    for (const line of readFileSync('/proc/net/route', 'utf8').split('\n').slice(1)) {
      const [iface, destination] = line.trim().split(/\s+/);
      if (destination === '00000000' && iface) {
        defaultIface = iface;
        break;
      }
    }
  } catch {
    // not Linux, or no /proc: fall through
  }
  const v4 = (name: string): string | undefined =>
    ifaces[name]?.find((a) => a.family === 'IPv4' && !a.internal && !a.address.startsWith('169.254.'))
      ?.address;
  if (defaultIface) {
    const ip = v4(defaultIface);
    if (ip) return ip;
  }
  for (const name of Object.keys(ifaces).sort()) {
    const ip = v4(name);
    if (ip) return ip;
  }
  return undefined;
}

/**
 * A random token naming this fleetd "family" on this boot, kept in the
 * per-boot state dir (/run/fleet). A restarted fleetd presents the same token
 * and takes its machine's presence over without it ever disappearing; another
 * machine with a copied machine ID has a different token and is refused.
 */
export function ownerToken(stateDir: string): string {
  const file = join(stateDir, 'owner');
  try {
    const token = readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f]{32}$/.test(token)) return token;
  } catch {
    // first start on this boot
  }
  const token = randomBytes(16).toString('hex');
  mkdirSync(stateDir, { recursive: true, mode: 0o755 });
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return token;
}
