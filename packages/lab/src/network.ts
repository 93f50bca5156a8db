/**
 * A cluster's network: a hub network namespace holding a bridge (and etcd),
 * one veth pair per machine from the bridge into the machine's namespace, and
 * one veth pair from the host into the bridge so processes on the host reach
 * etcd and the machines. Every name comes from {@link ./layout.ts}.
 *
 *   host netns: fl-lab-<octet> (.254) ══ to-host ─┐
 *                                  hub netns: br0 (172.31.<octet>.1, etcd)
 *   machine m1 netns: host0 (.11) ══ ve-m1 ───────┘
 */
import { mkdir, readFile, readdir, readlink, unlink, writeFile } from 'node:fs/promises';
import { ConflictError, UnavailableError } from '@fleet/core';
import {
  BRIDGE,
  HOST_HOST_OCTET,
  HUB_HOST_OCTET,
  HUB_HOST_PEER,
  MACHINE_LINK,
  SUBNET_DIR,
  candidateOctets,
  hostLinkName,
  parseRoutes,
  subnetAddress,
} from './layout.js';
import { processRef, run, runOk, spawnDetached, waitFor } from './proc.js';
import type { ProcessRef } from './state.js';

/** Runs `ip` commands in batch mode (one process for many), in the network namespace of `pid` if given. */
async function ipBatch(commands: readonly string[], pid?: number): Promise<void> {
  const argv = pid === undefined ? ['ip', '-b', '-'] : ['nsenter', '-t', String(pid), '-n', 'ip', '-b', '-'];
  const [file = 'ip', ...args] = argv;
  await runOk(file, args, { input: `${commands.join('\n')}\n` });
}

/** Reserves a /24 for `cluster` (an O_EXCL file per octet) and returns its octet. */
export async function reserveSubnet(cluster: string): Promise<number> {
  await mkdir(SUBNET_DIR, { recursive: true });
  const reserved = new Set<number>();
  for (const entry of await readdir(SUBNET_DIR)) {
    if (/^[0-9]{1,3}$/.test(entry)) reserved.add(Number(entry));
  }
  const routes = parseRoutes(await runOk('ip', ['-4', 'route', 'show', 'table', 'all']));
  for (const octet of candidateOctets(cluster, reserved, routes)) {
    for (let attempt = 0; ; attempt++) {
      try {
        await writeFile(`${SUBNET_DIR}/${octet}`, `${cluster}\n`, { flag: 'wx' });
        return octet;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') break; // another cluster won the race for this octet
        // The empty directory was removed by another cluster's `down` meanwhile.
        if (code !== 'ENOENT' || attempt >= 3) throw err;
        await mkdir(SUBNET_DIR, { recursive: true });
      }
    }
  }
  throw new ConflictError('no free 172.31.x.0/24 subnet left for a fleet-lab cluster; run `fleet-lab list`', {
    fields: { cluster },
  });
}

/** Octets reserved in the name of `cluster` (normally one; none after `down`). */
export async function subnetsOf(cluster: string): Promise<number[]> {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = await readdir(SUBNET_DIR);
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (!/^[0-9]{1,3}$/.test(entry)) continue;
    const owner = await readFile(`${SUBNET_DIR}/${entry}`, 'utf8').catch(() => '');
    if (owner.trim() === cluster) out.push(Number(entry));
  }
  return out;
}

export async function releaseSubnet(octet: number): Promise<void> {
  await unlink(`${SUBNET_DIR}/${octet}`).catch(() => undefined);
}

/** The bridge's fixed MAC address: locally administered, unique per subnet. */
export function bridgeMac(octet: number): string {
  return `02:00:ac:1f:${octet.toString(16).padStart(2, '0')}:01`;
}

/**
 * Creates the hub: a holder process (`sleep infinity`) in a new network
 * namespace, with the bridge inside and the host's link onto it. The
 * namespace is unnamed on purpose: it exists exactly as long as processes in
 * it do (the holder, etcd), so killing the cluster's processes removes it,
 * with its bridge and veths, even after a crash. Nothing goes into the host's
 * mount table (`ip netns add` would leave a /run/netns mount behind).
 */
export async function createHub(options: {
  readonly octet: number;
  readonly cgroupDir: string;
  readonly logFile: string;
}): Promise<ProcessRef> {
  const child = spawnDetached(['unshare', '--net', '--', 'sleep', 'infinity'], {
    cgroupDir: options.cgroupDir,
    logFile: options.logFile,
  });
  const pid = child.pid;
  const hub = pid === undefined ? undefined : await processRef(pid);
  if (hub === undefined || pid === undefined)
    throw new UnavailableError('the hub network holder did not start');
  const ownNetns = await readlink('/proc/self/ns/net');
  // unshare has switched namespaces once it has exec'd sleep.
  await waitFor(
    async () => {
      const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
      const netns = await readlink(`/proc/${pid}/ns/net`).catch(() => ownNetns);
      return comm.trim() === 'sleep' && netns !== ownNetns ? true : undefined;
    },
    { timeoutMs: 5_000, intervalMs: 2, what: 'the hub network namespace' },
  );
  await ipBatch(
    [
      'link set lo up',
      // No STP and no forwarding delay: ports forward as soon as they are up.
      `link add ${BRIDGE} type bridge stp_state 0 forward_delay 0`,
      // A bridge without its own address takes the lowest of its ports' and
      // changes it when ports come and go (a machine restarts or is added),
      // leaving stale ARP entries for the etcd address on the host and in
      // every machine. A fixed, locally administered address never changes.
      `link set ${BRIDGE} address ${bridgeMac(options.octet)}`,
      `addr add ${subnetAddress(options.octet, HUB_HOST_OCTET)}/24 dev ${BRIDGE}`,
      `link set ${BRIDGE} up`,
    ],
    pid,
  );
  const hostLink = hostLinkName(options.octet);
  await runOk('ip', [
    'link',
    'add',
    hostLink,
    'type',
    'veth',
    'peer',
    'name',
    HUB_HOST_PEER,
    'netns',
    String(pid),
  ]);
  await ipBatch([`link set ${HUB_HOST_PEER} master ${BRIDGE}`, `link set ${HUB_HOST_PEER} up`], pid);
  await ipBatch([
    `addr add ${subnetAddress(options.octet, HOST_HOST_OCTET)}/24 dev ${hostLink}`,
    `link set ${hostLink} up`,
  ]);
  return hub;
}

/** Deletes the host's link into a hub (both veth ends go). Missing is fine. */
export async function deleteHostLink(hostLink: string): Promise<void> {
  await run('ip', ['link', 'del', hostLink]);
}

/** True if the host has a network interface with this name. */
export async function linkExists(name: string): Promise<boolean> {
  return (await run('ip', ['link', 'show', 'dev', name])).code === 0;
}

/**
 * Plugs machine `pid` into the bridge: a veth pair created from the hub
 * directly into the machine's namespace, addressed inside. The bridge port
 * stays down when the machine is partitioned.
 */
export async function attachMachine(options: {
  readonly hubPid: number;
  readonly hubLink: string;
  readonly machinePid: number;
  readonly address: string;
  readonly partitioned: boolean;
}): Promise<void> {
  const hub = [
    `link add ${options.hubLink} type veth peer name ${MACHINE_LINK} netns ${options.machinePid}`,
    `link set ${options.hubLink} master ${BRIDGE}`,
  ];
  if (!options.partitioned) hub.push(`link set ${options.hubLink} up`);
  await ipBatch(hub, options.hubPid);
  await ipBatch(
    ['link set lo up', `addr add ${options.address}/24 dev ${MACHINE_LINK}`, `link set ${MACHINE_LINK} up`],
    options.machinePid,
  );
}

/** Sets a machine's bridge port up (heal) or down (partition). */
export async function setMachineLink(hubPid: number, hubLink: string, up: boolean): Promise<void> {
  const r = await run('nsenter', [
    '-t',
    String(hubPid),
    '-n',
    'ip',
    'link',
    'set',
    hubLink,
    up ? 'up' : 'down',
  ]);
  if (r.code !== 0) {
    throw new UnavailableError(`cannot set ${hubLink} ${up ? 'up' : 'down'}: ${r.stderr.trim()}`, {
      fields: { link: hubLink },
    });
  }
}
