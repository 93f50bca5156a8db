import { ValidationError } from '@fleet/core';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCluster } from '../cluster.js';
import { fleetdEndpoint, fleetdServiceText, waitForFleetd } from '../fleetd.js';
import { formatDescription } from '../format.js';
import { type CommandIO, json } from './io.js';

export interface UpOptions {
  readonly name: string;
  readonly machines: string;
  readonly etcdMembers: string;
  readonly shareNet?: boolean;
  readonly serviceFile: readonly string[];
  readonly env: readonly string[];
  readonly keep: readonly string[];
  readonly timeout: string;
  readonly json?: boolean;
  readonly fleetd?: boolean;
  readonly agentTtl: string;
}

/** Parses repeated `KEY=VALUE` flags. */
export function parseEnvFlags(flags: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    if (eq <= 0) throw new ValidationError(`--env ${JSON.stringify(flag)}: expected KEY=VALUE`);
    env[flag.slice(0, eq)] = flag.slice(eq + 1);
  }
  return env;
}

export function parseCount(flag: string, value: string): number {
  if (!/^[0-9]+$/.test(value))
    throw new ValidationError(`${flag} ${JSON.stringify(value)}: expected a number`);
  return Number(value);
}

/** `fleet-lab up`: starts a cluster and leaves it running. */
export async function up(options: UpOptions, io: CommandIO): Promise<number> {
  const members = parseCount('--etcd-members', options.etcdMembers);
  if (members !== 1 && members !== 3) throw new ValidationError('--etcd-members must be 1 or 3');
  const env = parseEnvFlags(options.env);
  // Ctrl-C while starting removes what was created so far.
  const abort = new AbortController();
  const onSignal = (): void =>
    abort.abort(new ValidationError('interrupted; the partial cluster was removed'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const started = Date.now();
  // --fleetd: this checkout's fleetd runs under systemd in every machine.
  const tmp = mkdtempSync(join(tmpdir(), 'fleet-lab-up-'));
  const serviceFiles = [...options.serviceFile];
  if (options.fleetd === true) {
    const file = join(tmp, 'fleetd.service');
    writeFileSync(file, fleetdServiceText({ agentTtl: options.agentTtl }));
    serviceFiles.push(file);
  }
  try {
    const cluster = await startCluster({
      name: options.name,
      machines: parseCount('--machines', options.machines),
      etcdMembers: members,
      shareNet: options.shareNet === true,
      serviceFiles,
      machineEnv: () => env,
      ...(options.keep.length > 0 ? { keepPaths: options.keep } : {}),
      bootTimeoutMs: parseCount('--timeout', options.timeout),
      signal: abort.signal,
    });
    const endpoints = options.fleetd === true ? cluster.machines.map((m) => fleetdEndpoint(m.rootPath)) : [];
    if (options.fleetd === true) {
      try {
        await waitForFleetd(
          cluster.machines.map((m) => m.rootPath),
          cluster.machines.length,
        );
      } catch (err) {
        await cluster.close();
        throw err;
      }
    }
    if (options.json === true) {
      io.out(
        json({ ...cluster.describe(), ...(endpoints.length > 0 ? { fleetctlEndpoints: endpoints } : {}) }),
      );
    } else {
      io.out(formatDescription(cluster.describe()));
      if (endpoints.length > 0) {
        io.out('\nfleetd runs in every machine; point fleetctl at any of them:');
        io.out(`  export FLEETCTL_ENDPOINT=${endpoints[0] ?? ''}`);
        io.out(`  bin/fleetctl --endpoint=${endpoints[0] ?? ''} list-machines`);
      }
      io.out(
        `\nup in ${((Date.now() - started) / 1000).toFixed(2)} s; remove with: fleet-lab down ${cluster.name}`,
      );
    }
    return 0;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
