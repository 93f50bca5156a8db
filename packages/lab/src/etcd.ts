/**
 * The cluster's etcd: one member or three, run by the lab (never inside a
 * machine) in the hub network namespace, or on 127.0.0.1 with shared
 * networking. Fast raft timing so 1-second lease TTLs work in tests.
 */
import { access } from 'node:fs/promises';
import { get } from 'node:http';
import { createServer, type Server } from 'node:net';
import { UnavailableError, ValidationError } from '@fleet/core';
import { HUB_HOST_OCTET, hubEtcdPorts, subnetAddress } from './layout.js';
import { type ProcessRef, type EtcdMemberRecord } from './state.js';
import { processRef, spawnDetached, waitFor } from './proc.js';

/** Debian's etcd-server installs it here. */
export const ETCD_BINARY = '/usr/bin/etcd';

/** Throws a ValidationError that says how to get etcd when it is not installed. */
export async function requireEtcd(binary = ETCD_BINARY): Promise<void> {
  try {
    await access(binary);
  } catch {
    throw new ValidationError(
      `${binary} not found: run \`make setup\` (installs Debian's etcd-server and etcd-client) ` +
        'or `apt-get install etcd-server etcd-client`',
      { fields: { binary } },
    );
  }
}

/** Where a cluster's etcd members listen. */
export type EtcdPlacement =
  | { readonly kind: 'hub'; readonly octet: number }
  | { readonly kind: 'host'; readonly ports: readonly number[] };

/** The member records of a new etcd cluster (pure). */
export function etcdMembers(count: number, placement: EtcdPlacement, stateDir: string): EtcdMemberRecord[] {
  if (count !== 1 && count !== 3) {
    throw new ValidationError(`etcd members must be 1 or 3, not ${count}`, { fields: { count } });
  }
  const members: EtcdMemberRecord[] = [];
  for (let i = 0; i < count; i++) {
    let client: string;
    let peer: string;
    if (placement.kind === 'hub') {
      const host = subnetAddress(placement.octet, HUB_HOST_OCTET);
      const ports = hubEtcdPorts(i);
      client = `http://${host}:${ports.client}`;
      peer = `http://${host}:${ports.peer}`;
    } else {
      const c = placement.ports[2 * i];
      const p = placement.ports[2 * i + 1];
      if (c === undefined || p === undefined) throw new ValidationError(`need ${2 * count} ports for etcd`);
      client = `http://127.0.0.1:${c}`;
      peer = `http://127.0.0.1:${p}`;
    }
    const name = `etcd${i}`;
    members.push({
      name,
      clientUrl: client,
      // The host reaches the hub through its link onto the bridge: the same URL works.
      hostClientUrl: client,
      peerUrl: peer,
      dataDir: `${stateDir}/etcd/${name}`,
      logFile: `${stateDir}/etcd/${name}.log`,
    });
  }
  return members;
}

/** Command-line flags of member `index` (pure). */
export function etcdArgs(
  members: readonly EtcdMemberRecord[],
  index: number,
  clusterToken: string,
): string[] {
  const m = members[index];
  if (m === undefined) throw new ValidationError(`no etcd member ${index}`, { fields: { index } });
  return [
    `--name=${m.name}`,
    `--data-dir=${m.dataDir}`,
    `--listen-client-urls=${m.clientUrl}`,
    `--advertise-client-urls=${m.clientUrl}`,
    `--listen-peer-urls=${m.peerUrl}`,
    `--initial-advertise-peer-urls=${m.peerUrl}`,
    `--initial-cluster=${members.map((x) => `${x.name}=${x.peerUrl}`).join(',')}`,
    '--initial-cluster-state=new',
    `--initial-cluster-token=${clusterToken}`,
    // Healthy in ~0.1 s, and lease TTLs down to 1 s (the defaults need ≥ 2 s).
    '--heartbeat-interval=10',
    '--election-timeout=100',
    '--logger=zap',
    '--log-outputs=stderr',
  ];
}

/** Starts member `index`; its data directory is kept, so a restarted member rejoins. */
export async function spawnEtcdMember(options: {
  readonly members: readonly EtcdMemberRecord[];
  readonly index: number;
  readonly clusterToken: string;
  /** Run in the network namespace of this process (the hub holder); undefined = the host's. */
  readonly netnsPid: number | undefined;
  readonly cgroupDir: string;
  readonly binary?: string;
}): Promise<ProcessRef> {
  const member = options.members[options.index];
  if (member === undefined) throw new ValidationError(`no etcd member ${options.index}`);
  const etcd = [
    options.binary ?? ETCD_BINARY,
    ...etcdArgs(options.members, options.index, options.clusterToken),
  ];
  const argv =
    options.netnsPid === undefined ? etcd : ['nsenter', '-t', String(options.netnsPid), '-n', ...etcd];
  const child = spawnDetached(argv, { cgroupDir: options.cgroupDir, logFile: member.logFile });
  const ref = child.pid === undefined ? undefined : await processRef(child.pid);
  if (ref === undefined) {
    throw new UnavailableError(`etcd member ${member.name} did not start; see ${member.logFile}`, {
      fields: { member: member.name },
    });
  }
  return ref;
}

/** GETs `url` and returns the body, or undefined on any failure. */
function httpGet(url: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = get(url, { timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve(res.statusCode === 200 ? Buffer.concat(chunks).toString('utf8') : undefined),
      );
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}

/** True when the member at `clientUrl` reports itself healthy (it has a leader). */
export async function isHealthy(clientUrl: string): Promise<boolean> {
  const body = await httpGet(`${clientUrl}/health`, 1000);
  if (body === undefined) return false;
  try {
    return (JSON.parse(body) as { health?: unknown }).health === 'true';
  } catch {
    return false;
  }
}

/** True when the member at `clientUrl` answers at all (even without quorum). */
export async function isServing(clientUrl: string): Promise<boolean> {
  return (await httpGet(`${clientUrl}/version`, 1000)) !== undefined;
}

export async function waitHealthy(
  urls: readonly string[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  await waitFor(
    async (note) => {
      const health = await Promise.all(urls.map(isHealthy));
      const sick = urls.filter((_, i) => health[i] !== true);
      if (sick.length === 0) return true;
      note(`not healthy: ${sick.join(', ')}`);
      return undefined;
    },
    {
      timeoutMs,
      intervalMs: 25,
      what: 'etcd to become healthy',
      ...(signal === undefined ? {} : { signal }),
    },
  );
}

/** `count` distinct TCP ports free on 127.0.0.1 right now (all held open at once, then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
      const address = server.address();
      if (address === null || typeof address === 'string') throw new UnavailableError('no TCP port');
      ports.push(address.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}
