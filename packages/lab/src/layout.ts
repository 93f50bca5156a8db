/**
 * Every name, path, address and port a lab cluster uses, derived from the
 * cluster's name and its allocated subnet. Pure: one place decides the layout,
 * so `down` run from another process finds exactly what `up` created.
 */
import { posix } from 'node:path';
import { ValidationError } from '@fleet/core';

/** Where every cluster's state directory lives (one directory per cluster). */
export const STATE_ROOT = '/run/fleet-lab';
/** Subnet reservations: one file per allocated third octet, holding the cluster name. */
export const SUBNET_DIR = `${STATE_ROOT}/.subnets`;
/** Name of the lab's directory below the cgroup2 root. */
export const CGROUP_TOP = 'fleet-lab';
/** Machines live in 172.31.<octet>.0/24; one octet per cluster. */
export const SUBNET_PREFIX = '172.31';
/** The bridge inside the cluster's hub network namespace (per namespace, so the same in every cluster). */
export const BRIDGE = 'br0';
/** The hub end of the host's link to the bridge. */
export const HUB_HOST_PEER = 'to-host';
/** Inside each machine, its end of the veth pair. */
export const MACHINE_LINK = 'host0';
/** Host address on a cluster's subnet (the host end of the host link). */
export const HOST_HOST_OCTET = 254;
/** The bridge (and etcd) address on a cluster's subnet. */
export const HUB_HOST_OCTET = 1;
/** Machine N (1-based) gets .<N + MACHINE_OCTET_BASE>. */
export const MACHINE_OCTET_BASE = 10;
/** Highest machine number that still fits below the host address. */
export const MAX_MACHINES = HOST_HOST_OCTET - MACHINE_OCTET_BASE - 1;
/** Client and peer ports of etcd member i inside the hub: 2379/2380, 12379/12380, 22379/22380. */
export const ETCD_PORT_STRIDE = 10000;

const CLUSTER_NAME = /^[a-z0-9](?:[a-z0-9-]{0,22}[a-z0-9])?$/;

/** Returns why `name` cannot name a cluster, or undefined when it can. */
export function clusterNameProblem(name: string): string | undefined {
  if (!CLUSTER_NAME.test(name)) {
    return `invalid cluster name ${JSON.stringify(name)}: use 1-24 characters a-z, 0-9 and "-", not starting or ending with "-"`;
  }
  return undefined;
}

export function validateClusterName(name: string): void {
  const problem = clusterNameProblem(name);
  if (problem !== undefined) throw new ValidationError(problem, { fields: { cluster: name } });
}

/** Machine N is named `mN`; names stay short because `ve-<name>` must fit in 15 characters. */
export function machineName(index: number): string {
  return `m${index}`;
}

/** Inverse of {@link machineName}; undefined for anything else. */
export function machineIndex(name: string): number | undefined {
  const m = /^m([1-9][0-9]*)$/.exec(name);
  if (m === null) return undefined;
  const n = Number(m[1]);
  return n <= MAX_MACHINES ? n : undefined;
}

/** Names of everything one cluster owns on the host. */
export interface ClusterPaths {
  readonly stateDir: string;
  readonly stateFile: string;
  /** The machine init script, copied here so a checkout under /tmp is never needed at boot. */
  readonly initScript: string;
  readonly servicesDir: string;
  /** Relative to the cgroup2 root: the cluster's cgroup, holding every process the lab starts for it. */
  readonly cgroup: string;
  readonly etcdCgroup: string;
  /** Cgroup of the process holding the hub network namespace. */
  readonly hubCgroup: string;
  readonly hubLog: string;
}

export function clusterPaths(cluster: string): ClusterPaths {
  const stateDir = `${STATE_ROOT}/${cluster}`;
  return {
    stateDir,
    stateFile: `${stateDir}/state.json`,
    initScript: `${stateDir}/machine-init.sh`,
    servicesDir: `${stateDir}/services`,
    cgroup: `${CGROUP_TOP}/${cluster}`,
    etcdCgroup: `${CGROUP_TOP}/${cluster}/etcd`,
    hubCgroup: `${CGROUP_TOP}/${cluster}/hub`,
    hubLog: `${stateDir}/hub.log`,
  };
}

export interface MachinePaths {
  /** The machine's directory in the cluster state directory. */
  readonly dir: string;
  /** Files installed into the machine at each boot: `seed/run/…` → `/run/…`, `seed/etc/…` → `/etc/…`. */
  readonly seedDir: string;
  readonly bootLog: string;
  /** Relative to the cgroup2 root; the root of the machine's cgroup namespace. */
  readonly cgroup: string;
  /** The veth end in the hub namespace, enslaved to the bridge (≤ 15 characters). */
  readonly hubLink: string;
}

export function machinePaths(cluster: string, machine: string): MachinePaths {
  const c = clusterPaths(cluster);
  const dir = `${c.stateDir}/machines/${machine}`;
  return {
    dir,
    seedDir: `${dir}/seed`,
    bootLog: `${dir}/boot.log`,
    cgroup: `${c.cgroup}/${machine}`,
    hubLink: `ve-${machine}`,
  };
}

/** The host end of the host link for the cluster on subnet `octet` (≤ 15 characters). */
export function hostLinkName(octet: number): string {
  return `fl-lab-${octet}`;
}

export function subnetCidr(octet: number): string {
  return `${SUBNET_PREFIX}.${octet}.0/24`;
}

export function subnetAddress(octet: number, host: number): string {
  return `${SUBNET_PREFIX}.${octet}.${host}`;
}

export function machineAddress(octet: number, index: number): string {
  return subnetAddress(octet, MACHINE_OCTET_BASE + index);
}

/**
 * The octet a cluster tries first: a hash of its name, so the same name tends
 * to get the same subnet, and different names rarely probe the same octets.
 */
export function preferredOctet(cluster: string): number {
  let h = 2166136261;
  for (const c of Buffer.from(cluster, 'utf8')) {
    h ^= c;
    h = Math.imul(h, 16777619) >>> 0;
  }
  return h % 256;
}

/** A host route, as far as subnet allocation cares: its network and prefix length. */
export interface Route {
  readonly network: string;
  readonly prefixLength: number;
}

function ipv4ToInt(address: string): number | undefined {
  const parts = address.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^[0-9]{1,3}$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

/** True when the /24 for `octet` overlaps `route` (either contains the other). */
export function overlaps(octet: number, route: Route): boolean {
  const net = ipv4ToInt(route.network);
  if (net === undefined || route.prefixLength === 0) return false;
  const ours = ipv4ToInt(subnetAddress(octet, 0)) ?? 0;
  const len = Math.min(24, route.prefixLength);
  const mask = len === 0 ? 0 : (~0 << (32 - len)) >>> 0;
  return (ours & mask) >>> 0 === (net & mask) >>> 0;
}

const ROUTE_TYPES = new Set([
  'unicast',
  'local',
  'broadcast',
  'multicast',
  'anycast',
  'blackhole',
  'unreachable',
  'prohibit',
  'throw',
  'nat',
]);

/**
 * Parses the destinations of `ip -4 route show table all` (a leading route
 * type is skipped; `default` and non-IPv4 destinations are ignored).
 */
export function parseRoutes(ipRouteOutput: string): Route[] {
  const routes: Route[] = [];
  for (const line of ipRouteOutput.split('\n')) {
    const words = line.trim().split(/\s+/);
    const dest = ROUTE_TYPES.has(words[0] ?? '') ? words[1] : words[0];
    if (dest === undefined || dest === '' || dest === 'default') continue;
    const [network, len] = dest.split('/');
    if (network === undefined || ipv4ToInt(network) === undefined) continue;
    routes.push({ network, prefixLength: len === undefined ? 32 : Number(len) });
  }
  return routes;
}

/**
 * The octets to try for a new cluster, best first: starting at the preferred
 * one, skipping octets reserved by other clusters and those overlapping a host
 * route (a real network on 172.31.x must stay reachable).
 */
export function candidateOctets(
  cluster: string,
  reserved: ReadonlySet<number>,
  routes: readonly Route[],
): number[] {
  const start = preferredOctet(cluster);
  const out: number[] = [];
  for (let i = 0; i < 256; i++) {
    const octet = (start + i) % 256;
    if (reserved.has(octet)) continue;
    if (routes.some((r) => overlaps(octet, r))) continue;
    out.push(octet);
  }
  return out;
}

/** Roots the machine's mounts cover; host paths below them are hidden unless kept. */
export const COVERED_ROOTS = ['/tmp', '/var/tmp', '/run', '/dev', '/etc', '/var'] as const;

/**
 * Which of `paths` must be bind-mounted aside and moved back so they stay
 * visible (read-write, the host's files) inside machines: those below a root
 * the machine covers. Throws for paths that would defeat the isolation (a
 * covered root itself, or one containing the lab's state).
 */
export function pathsToKeep(paths: readonly string[]): string[] {
  const keep: string[] = [];
  for (const raw of paths) {
    if (!posix.isAbsolute(raw)) {
      throw new ValidationError(`keep path ${JSON.stringify(raw)} is not absolute`, {
        fields: { path: raw },
      });
    }
    const path = posix.normalize(raw).replace(/(.)\/+$/, '$1');
    const covered = COVERED_ROOTS.some((root) => path.startsWith(`${root}/`));
    const holdsState = STATE_ROOT === path || STATE_ROOT.startsWith(`${path}/`);
    if ((COVERED_ROOTS as readonly string[]).includes(path) || holdsState || path === '/') {
      throw new ValidationError(
        `cannot keep ${path} visible inside machines: it would expose the host's ${path}`,
        {
          fields: { path },
        },
      );
    }
    if (path.startsWith(`${STATE_ROOT}/`)) {
      throw new ValidationError(`cannot keep ${path}: it is inside the lab's state`, { fields: { path } });
    }
    if (covered && !keep.includes(path)) keep.push(path);
  }
  return keep;
}

/** etcd member `i` (0-based) inside the hub: same bridge address, ports 2379 + i·10000. */
export function hubEtcdPorts(i: number): { client: number; peer: number } {
  return { client: 2379 + i * ETCD_PORT_STRIDE, peer: 2380 + i * ETCD_PORT_STRIDE };
}

/** The path of a machine's system bus socket as seen from the host. */
export function dbusSocketPath(pid: number): string {
  return `/proc/${pid}/root/run/dbus/system_bus_socket`;
}
