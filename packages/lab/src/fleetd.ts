import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { UnavailableError } from '@fleet/core';

/** This checkout's root (the lab makes it visible inside machines at the same path). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '');

/**
 * Node flags for fleetd: a small young generation keeps the resident set near
 * the live heap (with fleetd's idle collector, 1,000 units: ~87 MB instead of
 * ~170 MB). Same flags as examples/deploy/fleetd.service.
 */
export const FLEETD_NODE_FLAGS = '--max-semi-space-size=2';

/** The compiled fleetd of this checkout. */
export const FLEETD_MAIN = `${REPO_ROOT}/packages/fleetd/dist/main.js`;

export interface FleetdServiceOptions {
  /** fleetd's agent_ttl. @default '5s' (fleetd's own default) */
  readonly agentTtl?: string;
  /** Node binary inside the machine (the host's, visible there). @default process.execPath */
  readonly nodePath?: string;
  /** Extra FLEET_* settings for every machine. */
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * The systemd unit that runs this checkout's fleetd inside a lab machine,
 * configured from the lab's per-machine env file (etcd endpoints, public IP)
 * and extra FLEET_* settings.
 *
 * @throws Error if fleetd has not been built.
 */
export function fleetdServiceText(options: FleetdServiceOptions = {}): string {
  if (!existsSync(FLEETD_MAIN)) throw new Error(`${FLEETD_MAIN} is missing: run \`make build\` first`);
  const env = { FLEET_AGENT_TTL: options.agentTtl ?? '5s', ...(options.env ?? {}) };
  const lines = Object.entries(env).map(([k, v]) => `Environment=${JSON.stringify(`${k}=${v}`)}`);
  return `[Unit]
Description=fleetd (fleet-lab)
After=dbus.service

[Service]
EnvironmentFile=/run/fleet-lab/env
${lines.join('\n')}
ExecStart=${options.nodePath ?? process.execPath} ${FLEETD_NODE_FLAGS} ${FLEETD_MAIN}
Restart=always
RestartSec=200ms

[Install]
WantedBy=multi-user.target
`;
}

/** The API endpoint of the fleetd inside a machine, as seen from the host (fleetctl's --endpoint). */
export function fleetdEndpoint(machineRootPath: string): string {
  return `unix://${machineRootPath}/run/fleet.sock`;
}

/** How many live machines the fleetd at `socketPath` lists (undefined if it does not answer). */
function listedMachines(socketPath: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request(
      { socketPath, path: '/fleet/v1/machines?alt=json', headers: { Host: 'domain-sock' }, timeout: 2000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          try {
            const parsed = JSON.parse(body) as { machines?: unknown[] };
            resolve(res.statusCode === 200 ? (parsed.machines?.length ?? 0) : undefined);
          } catch {
            resolve(undefined);
          }
        });
      },
    );
    req.on('error', () => resolve(undefined));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/**
 * Waits until the fleetd of every given machine answers and lists `expected`
 * machines (deadline), so a cluster is usable when `up --fleetd` returns.
 */
export async function waitForFleetd(
  rootPaths: readonly string[],
  expected: number,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const root of rootPaths) {
    for (;;) {
      const n = await listedMachines(`${root}/run/fleet.sock`);
      if (n !== undefined && n >= expected) break;
      if (Date.now() > deadline) {
        throw new UnavailableError(
          `fleetd in ${root} did not list ${expected} machines within ${timeoutMs} ms (is it built? see journalctl -u fleetd in the machine)`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
