import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** This checkout's root (the lab makes it visible inside machines at the same path). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '');

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
ExecStart=${options.nodePath ?? process.execPath} ${FLEETD_MAIN}
Restart=always
RestartSec=200ms

[Install]
WantedBy=multi-user.target
`;
}
