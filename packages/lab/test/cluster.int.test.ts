/**
 * fleet-lab against the real thing: etcd, machines running systemd, D-Bus
 * from the host, faults. Needs root. One 3-machine cluster serves every test
 * (booting is the expensive part); a second cluster with shared networking
 * and 3 etcd members runs alongside it for a while; the last test tears the
 * first one down and checks that nothing it created remains.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConflictError, UnavailableError, ValidationError } from '@fleet/core';
import { type Cluster, startCluster } from '@fleet/lab';
import { readClusterState } from '../src/state.js';
import { isUnreaped, processRef, run } from '../src/proc.js';
import { STATE_ROOT, SUBNET_DIR } from '../src/layout.js';
import { cgroupPids } from '../src/cgroup.js';
import {
  CGROUP2_ROOT,
  type HostSnapshot,
  activeState,
  allPids,
  connectBus,
  eventually,
  machineIdOverDbus,
  mountPoints,
  netnsOf,
  pidnsOf,
  snapshotHost,
  uniqueName,
} from './support.js';

const CHECKOUT = fileURLToPath(new URL('../../..', import.meta.url)).replace(/\/$/, '');

/** Whether `machine` can open a TCP connection to host:port (bash's /dev/tcp, 1 s limit). */
async function canConnect(cluster: Cluster, machine: string, url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  const r = await cluster.exec(machine, [
    'timeout',
    '1',
    'bash',
    '--norc',
    '-c',
    `exec 3<>/dev/tcp/${hostname}/${port}`,
  ]);
  return r.code === 0;
}

/** Units the host enabled: the entries of its /etc/systemd/system/*.wants directories. */
async function hostEnabledUnits(): Promise<string[]> {
  const dir = '/etc/systemd/system';
  const units: string[] = [];
  for (const entry of await readdir(dir)) {
    if (entry.endsWith('.wants')) units.push(...(await readdir(join(dir, entry)).catch(() => [])));
  }
  return units;
}

async function etcdHealthyFromHost(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
    return ((await res.json()) as { health?: string }).health === 'true';
  } catch {
    return false;
  }
}

describe('fleet-lab: a 3-machine cluster with real systemd and etcd', () => {
  const name = uniqueName('t');
  let cluster: Cluster | undefined;
  let host: HostSnapshot;
  let work: string;
  const canaries = {
    tmp: `/tmp/fleet-lab-canary-${name}`,
    varTmp: `/var/tmp/fleet-lab-canary-${name}`,
  };
  let bootMs = 0;

  const c = (): Cluster => {
    assert.ok(cluster, 'the cluster did not start');
    return cluster;
  };

  before(async () => {
    host = await snapshotHost();
    // If a machine's systemd-tmpfiles cleaned the host's /tmp or /var/tmp, these would vanish.
    await writeFile(canaries.tmp, 'canary\n');
    await writeFile(canaries.varTmp, 'canary\n');
    work = await mkdtemp(join(tmpdir(), 'fleet-lab-test-'));
    const service = join(work, 'lab-hello.service');
    await writeFile(
      service,
      [
        '[Service]',
        'EnvironmentFile=/run/fleet-lab/env',
        `ExecStart=/bin/sh -c 'echo "$FLEET_MACHINE_NAME $FLEET_PUBLIC_IP $FLEET_ETCD_SERVERS $FLEET_METADATA" > /run/hello; exec sleep infinity'`,
        '',
      ].join('\n'),
    );
    // Stands for a checkout under /tmp (as CI may clone): kept visible inside machines.
    await mkdir(join(work, 'checkout'));
    await writeFile(join(work, 'checkout/README'), 'from the host\n');
    const started = Date.now();
    cluster = await startCluster({
      name,
      machines: 3,
      keepPaths: [CHECKOUT, join(work, 'checkout')],
      serviceFiles: [service],
      machineEnv: (m) => ({ FLEET_METADATA: `index=${m.index}` }),
      machineFiles: (m) => ({ '/etc/fleet-lab-test': `file of ${m.name}\n` }),
    });
    bootMs = Date.now() - started;
  });

  after(async () => {
    await cluster?.close();
    await rm(canaries.tmp, { force: true });
    await rm(canaries.varTmp, { force: true });
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it('boots every machine with its own machine ID and hostname, systemd running, nothing failed', async (t) => {
    const hostEnabled = await hostEnabledUnits();
    t.diagnostic(`host-enabled units that must stay inactive: ${hostEnabled.join(' ') || 'none'}`);
    t.diagnostic(`etcd + 3 machines up in ${bootMs} ms`);
    const machines = c().machines;
    assert.equal(machines.length, 3);
    const ids = new Set<string>();
    for (const m of machines) {
      assert.match(m.machineID, /^[0-9a-f]{32}$/);
      const bus = connectBus(m.dbusAddress);
      try {
        assert.equal(await machineIdOverDbus(bus), m.machineID, `${m.name}: systemd's machine ID`);
      } finally {
        bus.close();
      }
      ids.add(m.machineID);
      assert.equal((await m.exec(['hostname'])).stdout.trim(), m.name);
      // dbus-daemon reads this file before /etc/machine-id.
      assert.equal((await m.exec(['cat', '/var/lib/dbus/machine-id'])).stdout.trim(), m.machineID);
      assert.equal((await m.exec(['systemctl', 'is-system-running'])).stdout.trim(), 'running');
      const failed = await m.exec(['systemctl', 'list-units', '--failed', '--plain', '--no-legend']);
      assert.equal(failed.stdout.trim(), '', `${m.name} has failed units`);
      // Units the host enabled (Debian's etcd.service, postgresql, apt timers, getty…) did not start.
      const active = await m.exec(['systemctl', 'list-units', '--state=active', '--plain', '--no-legend']);
      const activeUnits = new Set(active.stdout.split('\n').map((l) => l.split(' ')[0]));
      for (const unit of hostEnabled)
        assert.ok(!activeUnits.has(unit), `${m.name}: host-enabled ${unit} is active`);
    }
    assert.equal(ids.size, 3, 'machine IDs are distinct');
    assert.ok(![...ids].some((id) => host.machineId.startsWith(id)), 'no machine has the host machine ID');
  });

  it('keeps machine processes in their own cgroup namespace and subtree, not in the host root cgroup', async () => {
    const rootProcs = (await readFile(join(CGROUP2_ROOT, 'cgroup.procs'), 'utf8'))
      .split('\n')
      .filter(Boolean);
    for (const m of c().machines) {
      const machineNs = await pidnsOf(m.pid);
      assert.ok(machineNs);
      for (const pid of rootProcs) {
        assert.notEqual(
          await pidnsOf(Number(pid)),
          machineNs,
          `process ${pid} of ${m.name} is in the root cgroup`,
        );
      }
      // (Hybrid hosts also list their v1 hierarchies; the cgroup2 line is the one systemd uses.)
      const inside = (await m.exec(['cat', '/proc/1/cgroup'])).stdout.split('\n');
      assert.ok(inside.includes('0::/init.scope'), `${m.name}: PID 1 is at the root of its own cgroup2 tree`);
      const slices = await stat(join(m.cgroupPath, 'system.slice'));
      assert.ok(slices.isDirectory(), "systemd built system.slice inside the machine's cgroup directory");
    }
  });

  it('runs the service files at boot, with the lab environment and per-machine extras', async () => {
    const ips = new Set<string>();
    for (const m of c().machines) {
      assert.equal((await m.exec(['systemctl', 'is-active', 'lab-hello.service'])).stdout.trim(), 'active');
      const hello = await eventually(async () => {
        const r = await m.exec(['cat', '/run/hello']);
        return r.code === 0 ? r.stdout.trim() : undefined;
      }, `/run/hello in ${m.name}`);
      assert.equal(hello, `${m.name} ${m.ip} ${c().etcdEndpoints.join(',')} index=${m.index}`);
      assert.equal((await m.exec(['cat', '/etc/fleet-lab-test'])).stdout, `file of ${m.name}\n`);
      ips.add(m.ip);
    }
    assert.equal(ips.size, 3, 'addresses are distinct');
    await assert.rejects(stat('/etc/fleet-lab-test'), 'machine files never reach the host');
  });

  it('lets every machine reach etcd over the bridge, and the host reach it too', async () => {
    for (const m of c().machines) {
      const r = await m.exec(['etcdctl', `--endpoints=${c().etcdEndpoints.join(',')}`, 'endpoint', 'health']);
      assert.equal(r.code, 0, `${m.name}: ${r.stderr}`);
      assert.match(r.stdout + r.stderr, /is healthy/);
    }
    for (const url of c().hostEtcdEndpoints) assert.ok(await etcdHealthyFromHost(url), `host reaches ${url}`);
  });

  it('shows the project checkout inside machines at the same path, even below the private /tmp', async () => {
    const r = await c().exec('m1', ['test', '-f', join(CHECKOUT, 'packages/lab/package.json')]);
    assert.equal(r.code, 0);
    const kept = join(work, 'checkout');
    // The machine's boot emptied its own /tmp around the kept directory, not through it.
    assert.equal((await c().exec('m1', ['cat', join(kept, 'README')])).stdout, 'from the host\n');
    assert.equal((await c().exec('m2', ['sh', '-c', `echo built > ${kept}/out`])).code, 0);
    assert.equal(await readFile(join(kept, 'out'), 'utf8'), 'built\n', 'writes reach the host');
    assert.equal(await readFile(join(kept, 'README'), 'utf8'), 'from the host\n');
    const others = await c().exec('m1', ['ls', '-A', '/tmp']);
    assert.doesNotMatch(others.stdout, /fleet-lab-canary/, "the host's other /tmp files are not visible");
  });

  it('starts a runtime unit over D-Bus from the host', async () => {
    const m = c().machine('m1');
    await writeFile(
      join(m.rootPath, 'run/systemd/system/lab-dbus-test.service'),
      '[Service]\nExecStart=/bin/sleep infinity\n',
    );
    const bus = connectBus(m.dbusAddress);
    const systemd = 'org.freedesktop.systemd1';
    try {
      await bus.call(systemd, '/org/freedesktop/systemd1', `${systemd}.Manager`, 'Reload');
      await bus.call(systemd, '/org/freedesktop/systemd1', `${systemd}.Manager`, 'StartUnit', 'ss', [
        'lab-dbus-test.service',
        'replace',
      ]);
      await eventually(
        async () => (await activeState(bus, 'lab-dbus-test.service')) === 'active',
        'lab-dbus-test.service to be active',
      );
    } finally {
      bus.close();
    }
    assert.equal((await m.exec(['systemctl', 'is-active', 'lab-dbus-test.service'])).stdout.trim(), 'active');
  });

  it('exec returns exit codes and output, feeds stdin, and kills commands that overrun', async () => {
    const m = c().machine('m2');
    const r = await m.exec(['sh', '-c', 'echo out; echo err >&2; exit 3']);
    assert.deepEqual([r.code, r.stdout, r.stderr], [3, 'out\n', 'err\n']);
    assert.equal((await m.exec(['cat'], { input: 'from stdin' })).stdout, 'from stdin');
    assert.equal((await m.exec(['sh', '-c', 'echo $X'], { env: { X: 'given' } })).stdout, 'given\n');
    await assert.rejects(m.exec(['sleep', '31'], { timeoutMs: 200 }), UnavailableError);
    const left = await eventually(async () => {
      const p = await m.exec(['pgrep', '-f', 'sleep 31']);
      return p.code === 1 ? p : undefined;
    }, 'the overrun command to be gone');
    assert.equal(left.stdout, '');
    await assert.rejects(c().exec('m9', ['true']), /no machine m9/);
  });

  it('kill stops every process of a machine; restart brings back the same identity', async () => {
    const m = c().machine('m3');
    const { machineID, ip } = m;
    const pids = await cgroupPids(m.cgroupPath, '.');
    assert.ok(pids.length >= 3, `systemd, journald, dbus… are in the machine's cgroup: ${pids.join(' ')}`);
    const refs = (await Promise.all(pids.map(processRef))).filter((r) => r !== undefined);
    const oldPid = m.pid;

    await c().kill(m);
    assert.equal(m.running, false);
    for (const ref of refs) assert.equal(await isUnreaped(ref), false, `process ${ref.pid} is gone`);
    await assert.rejects(stat(m.cgroupPath), 'its cgroup directory is removed');
    assert.throws(() => m.pid, ConflictError);
    assert.equal((await c().exec('m1', ['true'])).code, 0, 'the other machines live on');
    await c().kill(m); // idempotent

    await c().restart(m);
    assert.notEqual(m.pid, oldPid);
    assert.equal(m.machineID, machineID);
    const bus = connectBus(m.dbusAddress);
    try {
      assert.equal(await machineIdOverDbus(bus), machineID);
    } finally {
      bus.close();
    }
    assert.equal((await m.exec(['hostname'])).stdout.trim(), 'm3');
    assert.match(
      (await m.exec(['ip', '-4', '-o', 'addr', 'show', 'host0'])).stdout,
      new RegExp(` ${ip}/24 `),
    );
    assert.ok(await canConnect(c(), 'm3', c().etcdEndpoints[0]!), 'the restarted machine reaches etcd');
  });

  it('restart with newMachineID boots the machine under a new machine ID (same hostname and IP)', async () => {
    const m = c().machine('m3');
    const { machineID: oldID, ip } = m;
    await c().restart(m, { newMachineID: true });
    assert.match(m.machineID, /^[0-9a-f]{32}$/);
    assert.notEqual(m.machineID, oldID);
    assert.equal((await m.exec(['cat', '/etc/machine-id'])).stdout.trim(), m.machineID);
    const bus = connectBus(m.dbusAddress);
    try {
      assert.equal(await machineIdOverDbus(bus), m.machineID);
    } finally {
      bus.close();
    }
    assert.equal((await m.exec(['hostname'])).stdout.trim(), 'm3');
    assert.equal(m.ip, ip);
    const recorded = (await readClusterState(c().name)).machines.find((r) => r.name === 'm3');
    assert.equal(recorded?.machineID, m.machineID, 'the new ID is on record');
    // A plain restart keeps the new identity.
    const newID = m.machineID;
    await c().restart(m);
    assert.equal((await m.exec(['cat', '/etc/machine-id'])).stdout.trim(), newID);
  });

  it('partition cuts a machine off etcd while the others still reach it; heal reconnects it', async () => {
    const etcd = c().etcdEndpoints[0]!;
    await c().partition('m2');
    assert.equal(c().machine('m2').partitioned, true);
    await eventually(async () => !(await canConnect(c(), 'm2', etcd)), 'm2 to lose etcd');
    assert.equal(await canConnect(c(), 'm1', etcd), true, 'm1 still reaches etcd');
    assert.equal(await canConnect(c(), 'm3', etcd), true, 'm3 still reaches etcd');
    await c().heal('m2');
    assert.equal(c().machine('m2').partitioned, false);
    await eventually(() => canConnect(c(), 'm2', etcd), 'm2 to reach etcd again');
  });

  it('add boots one more machine with the per-machine extras', async () => {
    const m = await c().add();
    assert.equal(m.name, 'm4');
    assert.equal(m.running, true);
    assert.equal(new Set(c().machines.map((x) => x.machineID)).size, 4);
    assert.match((await m.exec(['cat', '/run/fleet-lab/env'])).stdout, /FLEET_METADATA="index=4"/);
    assert.ok(await canConnect(c(), 'm4', c().etcdEndpoints[0]!));
  });

  it('stops and starts etcd, keeping its data', async () => {
    const [endpoint] = c().hostEtcdEndpoints;
    assert.ok(endpoint);
    const put = await run('etcdctl', [`--endpoints=${endpoint}`, 'put', '/lab-test', 'kept']);
    assert.equal(put.code, 0, put.stderr);
    await c().stopEtcd();
    assert.equal(await etcdHealthyFromHost(endpoint), false);
    assert.equal(await canConnect(c(), 'm1', c().etcdEndpoints[0]!), false);
    await c().startEtcd();
    assert.equal(await etcdHealthyFromHost(endpoint), true);
    const get = await run('etcdctl', [`--endpoints=${endpoint}`, 'get', '--print-value-only', '/lab-test']);
    assert.equal(get.stdout.trim(), 'kept');
  });

  it('runs a second cluster (shared network, 3 etcd members) alongside without collisions', async () => {
    const other = await startCluster({ name: uniqueName('s'), machines: 1, etcdMembers: 3, shareNet: true });
    try {
      assert.notEqual(other.stateDir, c().stateDir);
      const m = other.machine('m1');
      assert.equal(m.ip, '127.0.0.1');
      assert.notEqual(m.cgroupPath, c().machine('m1').cgroupPath);
      assert.equal(await netnsOf(m.pid), await netnsOf('self'), 'shares the host network namespace');
      assert.equal(new Set(other.etcdEndpoints).size, 3);
      for (const url of other.etcdEndpoints) assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const r = await m.exec([
        'etcdctl',
        `--endpoints=${other.etcdEndpoints.join(',')}`,
        'endpoint',
        'health',
      ]);
      assert.equal(r.code, 0, r.stderr);
      await assert.rejects(other.partition('m1'), ValidationError);
      assert.notEqual(m.machineID, c().machine('m1').machineID);

      // One member down: the other two keep quorum; it rejoins when started again.
      await other.stopEtcdMember(0, { signal: 'SIGKILL' });
      await eventually(async () => {
        const h = await run('etcdctl', [`--endpoints=${other.etcdEndpoints[1]}`, 'endpoint', 'health']);
        return h.code === 0;
      }, 'the remaining etcd members to have a leader');
      await other.startEtcdMember(0);
      await eventually(() => etcdHealthyFromHost(other.hostEtcdEndpoints[0]!), 'member 0 to rejoin');
    } finally {
      await other.close();
    }
    await assert.rejects(stat(other.stateDir));
    for (const m of c().machines) assert.equal((await m.exec(['true'])).code, 0, `${m.name} unaffected`);
  });

  it('down removes every process, namespace, link, cgroup, mount and file it created', async () => {
    const state = await readClusterState(name);
    assert.ok(state.hub && state.hostLink);
    const hubNetns = await netnsOf(state.hub.pid);
    assert.ok(hubNetns);
    const machineNetns = await Promise.all(c().machines.map((m) => netnsOf(m.pid)));
    const cgroupDir = join(state.cgroupRoot, 'fleet-lab', name);
    const recorded = [
      state.hub,
      ...state.etcd.members.map((m) => m.process),
      ...state.machines.flatMap((m) => [m.init, m.wrapper]),
    ].filter((r) => r !== undefined);
    const inCgroup = (await Promise.all((await cgroupPids(cgroupDir, '.')).map(processRef))).filter(
      (r) => r !== undefined,
    );
    assert.ok(inCgroup.length > recorded.length);

    await c().close();
    await c().close(); // idempotent

    for (const ref of [...recorded, ...inCgroup]) {
      assert.equal(await isUnreaped(ref), false, `process ${ref.pid} is gone`);
    }
    for (const pid of await allPids()) {
      const ns = await netnsOf(pid);
      assert.ok(
        ns === undefined || (ns !== hubNetns && !machineNetns.includes(ns)),
        `process ${pid} in a lab netns`,
      );
    }
    assert.notEqual((await run('ip', ['link', 'show', 'dev', state.hostLink])).code, 0, 'host link removed');
    await assert.rejects(stat(cgroupDir), 'cgroup directories removed');
    await assert.rejects(stat(c().stateDir), 'state directory removed');
    const reservation = await readFile(join(SUBNET_DIR, String(state.octet)), 'utf8').catch(() => undefined);
    assert.notEqual(reservation?.trim(), name, 'subnet reservation released');
    assert.deepEqual(
      (await mountPoints()).filter((p) => p.startsWith(STATE_ROOT) || p.includes('fleet-lab')),
      [],
    );
    assert.doesNotMatch((await run('ip', ['netns', 'list'])).stdout, /fleet-lab/);

    // The host is as it was.
    const now = await snapshotHost();
    assert.deepEqual(now, host);
    assert.equal(await readFile(canaries.tmp, 'utf8'), 'canary\n');
    assert.equal(await readFile(canaries.varTmp, 'utf8'), 'canary\n');
  });
});
