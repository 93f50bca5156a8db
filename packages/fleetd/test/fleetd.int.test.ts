import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseUnitFile } from '@fleet/core';
import { FakeUnitManager } from '@fleet/agent';
import { FleetClient } from '@fleet/client';
import { Fleetd, loadConfig } from '@fleet/fleetd';
import { startEtcd, type TestEtcd } from '../../../test/support/etcd.js';
import { eventually, uniqueId } from '../../../test/support/eventually.js';

/**
 * Whole daemons in-process against a real etcd, with fake systemd managers:
 * identity, presence, API over a unix socket, engine election and the agent
 * wired together.
 */
describe('fleetd daemons against a real etcd', () => {
  let etcd: TestEtcd;
  let dir: string;
  const prefix = `/${uniqueId('fd')}/`;
  const daemons: Fleetd[] = [];
  const managers = new Map<string, FakeUnitManager>();

  const id = (n: number): string => `${String(n).repeat(8)}${'0'.repeat(24)}`;
  const startDaemon = async (
    n: number,
    extra: Record<string, string> = {},
    manager = new FakeUnitManager(),
  ) => {
    const { config } = loadConfig({
      configPath: join(dir, 'empty.conf'),
      flags: {
        etcd_servers: etcd.endpoint,
        etcd_key_prefix: prefix,
        socket_path: join(dir, `fleet-${n}.sock`),
        state_dir: join(dir, `state-${n}`),
        public_ip: `10.9.0.${n}`,
        agent_ttl: '2s',
        ...extra,
      },
    });
    const d = new Fleetd({ config, machineID: id(n), unitManager: manager, log: () => undefined });
    managers.set(id(n), manager);
    daemons.push(d);
    await d.start();
    return d;
  };
  const client = (n: number) => new FleetClient({ endpoint: `unix://${join(dir, `fleet-${n}.sock`)}` });
  const hello = parseUnitFile('[Unit]\nDescription=MyApp\n\n[Service]\nExecStart=/bin/sleep 1000\n');

  before(async () => {
    etcd = await startEtcd();
    dir = mkdtempSync(join(tmpdir(), 'fleetd-int-'));
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(dir, 'empty.conf'), '');
  });
  after(async () => {
    for (const d of daemons) await d.stop('handover').catch(() => undefined);
    await etcd.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('two machines: a started unit runs on one of them and is reported launched', async () => {
    await startDaemon(1);
    await startDaemon(2);
    const c = client(1);
    await eventually(async () => (await c.listMachines()).length === 2);
    const machines = await c.listMachines();
    assert.deepEqual(
      machines.map((m) => [m.id, m.primaryIP]),
      [
        [id(1), '10.9.0.1'],
        [id(2), '10.9.0.2'],
      ],
    );
    await c.createUnit('hello.service', hello);
    await c.setUnitTargetState('hello.service', 'launched');
    const unit = await eventually(async () => {
      const u = await c.getUnit('hello.service');
      return u?.currentState === 'launched' ? u : undefined;
    });
    const runner = managers.get(unit.machineID ?? '');
    assert.equal(runner?.status('hello.service').activeState, 'active');
    const state = await client(2).getUnitState('hello.service');
    assert.equal(state?.systemdActiveState, 'active');
    assert.equal(state?.machineID, unit.machineID);
  });

  it('SIGTERM-style leave: the unit moves to the other machine within a second and is unloaded here', async () => {
    const c = client(1);
    const unit = await c.getUnit('hello.service');
    const fromIndex = unit?.machineID === id(1) ? 0 : 1;
    const leaving = daemons[fromIndex] as Fleetd;
    const stayingID = fromIndex === 0 ? id(2) : id(1);
    const started = Date.now();
    await leaving.stop('leave');
    const survivor = client(fromIndex === 0 ? 2 : 1);
    await eventually(async () => (await survivor.getUnit('hello.service'))?.machineID === stayingID, {
      timeoutMs: 3000,
    });
    await eventually(() => managers.get(stayingID)?.status('hello.service').activeState === 'active');
    assert.ok(Date.now() - started < 3000);
    assert.equal(managers.get(leaving.machineID)?.unitFiles().has('hello.service'), false, 'purged on leave');
  });

  it('handover restart: the same machine comes back without moving or restarting anything (R4)', async () => {
    const runnerID =
      (await client(daemons[0]?.state === 'running' ? 1 : 2).getUnit('hello.service'))?.machineID ?? '';
    const n = runnerID === id(1) ? 1 : 2;
    const d = daemons.find((x) => x.machineID === runnerID && x.state === 'running') as Fleetd;
    const manager = managers.get(runnerID) as FakeUnitManager;
    await d.stop('handover');
    manager.resetCounters();
    // The fake's systemd outlives the daemon; a new one connects to the same "systemd".
    const again = await startDaemon(n, {}, manager);
    await eventually(
      async () => (await client(n).getUnitState('hello.service'))?.systemdActiveState === 'active',
    );
    assert.equal(again.state, 'running');
    assert.equal(manager.calls.startUnit + manager.calls.stopUnit + manager.calls.unload, 0);
    assert.equal((await client(n).getUnit('hello.service'))?.machineID, runnerID);
  });

  it('SIGHUP reload applies new metadata at once; SIGUSR1 dump shows the units and hides the etcd password', async () => {
    const d = daemons.find((x) => x.state === 'running') as Fleetd;
    const n = d.machineID === id(1) ? 1 : 2;
    const { config } = loadConfig({
      configPath: join(dir, 'empty.conf'),
      flags: {
        etcd_servers: etcd.endpoint,
        etcd_key_prefix: prefix,
        socket_path: join(dir, `fleet-${n}.sock`),
        state_dir: join(dir, `state-${n}`),
        public_ip: `10.9.0.${n}`,
        agent_ttl: '2s',
        metadata: 'region=eu,disk=ssd',
        etcd_password: 'secret',
      },
    });
    await d.reload(config);
    await eventually(async () => {
      const m = (await client(n).listMachines()).find((x) => x.id === d.machineID);
      return m?.metadata?.['region'] === 'eu' && m.metadata['disk'] === 'ssd';
    });
    const dump = JSON.stringify(d.dump());
    assert.match(dump, /"hello\.service"/);
    assert.doesNotMatch(dump, /secret/);
  });

  it('handover restart slower than agent_ttl: the machine stays, its states stay, nothing moves (R4)', async () => {
    // Machines 1 and 2 are both running again after the tests above.
    await startDaemon(daemons.some((x) => x.machineID === id(1) && x.state === 'running') ? 2 : 1);
    const runnerID = (await client(1).getUnit('hello.service'))?.machineID ?? '';
    const n = runnerID === id(1) ? 1 : 2;
    const other = n === 1 ? 2 : 1;
    const d = daemons.find((x) => x.machineID === runnerID && x.state === 'running') as Fleetd;
    const manager = managers.get(runnerID) as FakeUnitManager;
    await d.stop('handover');
    manager.resetCounters();
    // A slow start (node under load): well past the 2 s agent_ttl before the next fleetd is up.
    await new Promise((r) => setTimeout(r, 5000));
    const seen = client(other);
    assert.deepEqual(
      (await seen.listMachines()).map((m) => m.id).sort(),
      [id(1), id(2)],
      'the restarting machine is still present',
    );
    assert.equal((await seen.getUnit('hello.service'))?.machineID, runnerID, 'not moved');
    assert.equal((await seen.getUnitState('hello.service'))?.systemdActiveState, 'active', 'state kept');
    await startDaemon(n, {}, manager);
    await eventually(async () => (await client(n).getUnitState('hello.service'))?.machineID === runnerID);
    assert.equal(manager.calls.startUnit + manager.calls.stopUnit + manager.calls.unload, 0);
  });
});
