#!/usr/bin/env node
import { VERSION, errorMessage, isFleetError } from '@fleet/core';
import { parseArgs } from './args.js';
import { loadConfig, CONFIG_KEYS } from './config.js';
import { Fleetd } from './fleetd.js';

const USAGE = `Usage: fleetd [--config PATH] [--KEY=VALUE ...] [--version]

Runs the fleet daemon on this machine: its agent, an engine candidate and the
HTTP API on /var/run/fleet.sock. Every config key can be given as a flag
(--etcd_servers=http://10.0.0.1:2379), as env FLEET_<KEY>, or in
/etc/fleet/fleet.conf; precedence is flags > env > file > defaults.

Keys: ${CONFIG_KEYS.join(', ')}

Signals: SIGTERM/SIGINT leave the cluster (units move elsewhere at once and are
unloaded here); SIGUSR2 exits for a restart, leaving units running for the
next fleetd to adopt; SIGHUP reloads the config; SIGUSR1 dumps state as JSON.
`;

async function main(): Promise<number> {
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`fleetd: ${errorMessage(err)}\n\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.version) {
    process.stdout.write(`fleetd version ${VERSION}\n`);
    return 0;
  }
  const load = () =>
    loadConfig({
      flags: args.flags,
      env: process.env,
      ...(args.configPath ? { configPath: args.configPath } : {}),
    });
  let daemon: Fleetd;
  try {
    daemon = new Fleetd({ config: load().config });
    await daemon.start();
  } catch (err) {
    process.stderr.write(`fleetd: ${errorMessage(err)}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    const stop = (mode: 'leave' | 'handover', signal: string): void => {
      daemon.log(
        `${signal}: ${mode === 'leave' ? 'leaving the cluster' : 'exiting for a restart, units keep running'}`,
      );
      daemon.stop(mode).then(
        () => resolve(0),
        (err: unknown) => {
          daemon.log(`stop failed: ${errorMessage(err)}`);
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('leave', 'SIGTERM'));
    process.once('SIGINT', () => stop('leave', 'SIGINT'));
    process.once('SIGUSR2', () => stop('handover', 'SIGUSR2'));
    process.on('SIGHUP', () => {
      try {
        void daemon.reload(load().config);
      } catch (err) {
        daemon.log(`SIGHUP: keeping the old configuration: ${errorMessage(err)}`);
      }
    });
    process.on('SIGUSR1', () => {
      process.stdout.write(`${JSON.stringify(daemon.dump())}\n`);
    });
  });
}

process.on('unhandledRejection', (reason) => {
  // A stray rejection (e.g. a dropped etcd stream) must not kill the daemon.
  process.stderr.write(
    `fleetd: unhandled rejection: ${isFleetError(reason) ? reason.message : errorMessage(reason)}\n`,
  );
});

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`fleetd: ${errorMessage(err)}\n`);
    process.exit(1);
  },
);
