/**
 * SystemdManager against a real systemd: PID 1 of a fleet-lab machine,
 * reached from the host through the machine's system bus socket
 * (`/proc/<pid>/root/run/dbus/system_bus_socket`) with files written through
 * `/proc/<pid>/root`. Needs root. Never talks to the host's systemd.
 *
 * The test polls what the listener heard (with deadlines); the adapter itself
 * only reacts to signals. Timings are printed as `timing:` lines.
 */
import assert from 'node:assert/strict';
import { access, lstat, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UnavailableError } from '@fleet/core';
import { startCluster, type Cluster, type Machine } from '@fleet/lab';
import { eventually, uniqueId } from '../../../test/support/eventually.js';
import { SystemdManager, type UnitFile, type UnitStatus } from '@fleet/agent';

const UNITS_DIR = '/run/fleet/units';
const isRoot = process.getuid?.() === 0;

const service = (name: string, exec = '/bin/sleep infinity', install = false): UnitFile => ({
  name,
  text:
    `[Unit]\nDescription=fleet systemd-manager test ${name}\n\n[Service]\nExecStart=${exec}\n` +
    (install ? '\n[Install]\nWantedBy=multi-user.target\n' : ''),
  install,
});

const ms = (from: bigint) => Number(process.hrtime.bigint() - from) / 1e6;

describe('SystemdManager against systemd in a fleet-lab machine', { skip: !isRoot && 'needs root' }, () => {
  let cluster: Cluster | undefined;
  let machine: Machine;
  let m: SystemdManager;
  const logs: string[] = [];
  const disconnects: UnavailableError[] = [];
  /** What the listener heard: every status in order, and the latest per unit. */
  const heard: UnitStatus[] = [];
  const latest = new Map<string, UnitStatus>();
  const watched = new Set<string>();
  const timings: Record<string, number> = {};

  const listener = (s: UnitStatus) => {
    heard.push(s);
    latest.set(s.name, s);
  };
  const watch = (...names: string[]) => {
    for (const n of names) watched.add(n);
    m.watch(new Set(watched), listener);
  };
  const state = (name: string) => {
    const s = latest.get(name);
    return s === undefined ? 'unknown' : `${s.loadState} ${s.activeState}/${s.subState}`;
  };
  const heardState = (name: string, expected: string, timeoutMs = 10_000) =>
    eventually(() => state(name) === expected || undefined, {
      timeoutMs,
      message: `listener to report ${name} as ${expected} (last: ${state(name)})`,
    });
  const calls = (member: string) => m.callCounts().get(member) ?? 0;
  const systemctl = async (...args: string[]) => (await machine.exec(['systemctl', ...args])).stdout.trim();
  const hostFile = (name: string) => join(machine.rootPath, UNITS_DIR, name);

  before(async () => {
    cluster = await startCluster({ name: uniqueId('sm-'), machines: 1 });
    const first = cluster.machines[0];
    assert.ok(first);
    machine = first;
    m = new SystemdManager({
      busAddress: machine.dbusAddress,
      rootPath: machine.rootPath,
      unitsDirectory: UNITS_DIR,
      log: (line) => logs.push(line),
      onDisconnect: (err) => disconnects.push(err),
    });
    await m.start();
  });

  after(async () => {
    await m?.close();
    await cluster?.close();
    if (Object.keys(timings).length > 0) {
      for (const [k, v] of Object.entries(timings)) console.log(`timing: ${k} ${v.toFixed(1)} ms`);
    }
  });

  it('write + link + reload + start: the listener hears active/running; systemd runs our file', async () => {
    const unit = service('sm-hello.service');
    watch(unit.name);
    await heardState(unit.name, 'not-found inactive/dead');

    await m.writeAndLink([unit]);
    assert.equal(await readFile(hostFile(unit.name), 'utf8'), unit.text);
    await m.reload();
    await heardState(unit.name, 'loaded inactive/dead');
    const t0 = process.hrtime.bigint();
    await m.startUnit(unit.name);
    timings['StartUnit round trip'] = ms(t0);
    await heardState(unit.name, 'loaded active/running');
    timings['start → listener heard active (1 unit)'] = ms(t0);

    // linked as a runtime unit: /run/systemd/system/<name> → our file
    assert.equal(
      await systemctl('show', '-p', 'FragmentPath', '--value', unit.name),
      `/run/systemd/system/${unit.name}`,
    );
    assert.equal(
      await readlink(join(machine.rootPath, '/run/systemd/system', unit.name)),
      `${UNITS_DIR}/${unit.name}`,
    );
    assert.equal(await systemctl('is-active', unit.name), 'active');
    assert.ok((await m.mainPID(unit.name)) > 1);
    assert.deepEqual((await m.readUnitFiles()).get(unit.name), unit.text);
  });

  it('start of an active unit, a rewrite of the same text and a reload do not restart it (same MainPID)', async () => {
    const name = 'sm-hello.service';
    const pid = await m.mainPID(name);
    await m.writeAndLink([service(name)]);
    await m.reload();
    await m.startUnit(name);
    await heardState(name, 'loaded active/running');
    assert.equal(await m.mainPID(name), pid);
  });

  it('systemd loads a unit it does not know on first use: a new unit starts without a reload, a known one keeps its old definition until one', async () => {
    const name = 'sm-noreload.service';
    // Queried first, so systemd holds a not-found stub (as the agent's pre-check leaves it).
    assert.equal((await m.statuses([name])).get(name)?.loadState, 'not-found');
    await m.writeAndLink([service(name)]);
    watch(name);
    await m.startUnit(name);
    await heardState(name, 'loaded active/running');
    assert.equal(await systemctl('show', '-p', 'NeedDaemonReload', '--value', name), 'no');
    // a changed file of a known unit is not picked up without a reload
    await m.writeAndLink([{ name, text: `${service(name).text}Environment=CHANGED=1\n`, install: false }]);
    assert.equal(await systemctl('show', '-p', 'NeedDaemonReload', '--value', name), 'yes');
    await m.reload();
    assert.equal(await systemctl('show', '-p', 'NeedDaemonReload', '--value', name), 'no');
    await m.unload([name]);
    await m.reload();
  });

  it('stop: the listener hears inactive/dead', async () => {
    await m.stopUnit('sm-hello.service');
    await heardState('sm-hello.service', 'loaded inactive/dead');
    assert.equal(await m.mainPID('sm-hello.service'), 0);
    // stopping what systemd never heard of is fine
    await m.stopUnit('sm-never-existed.service');
  });

  it('a unit with [Install] is enabled (runtime) as well as linked', async () => {
    const unit = service('sm-installed.service', '/bin/sleep infinity', true);
    await m.writeAndLink([unit]);
    await m.reload();
    assert.equal(await systemctl('is-enabled', unit.name), 'enabled-runtime');
    assert.equal(
      await readlink(join(machine.rootPath, '/run/systemd/system/multi-user.target.wants', unit.name)),
      `${UNITS_DIR}/${unit.name}`,
    );
    const plain = service('sm-plain.service');
    await m.writeAndLink([plain]);
    await m.reload();
    assert.equal(await systemctl('is-enabled', plain.name), 'linked-runtime');
  });

  it('unload: stopped, disabled, file removed; after one reload the unit is not-found', async () => {
    const names = ['sm-installed.service', 'sm-plain.service', 'sm-hello.service'];
    watch(...names);
    await m.startUnit('sm-installed.service');
    await heardState('sm-installed.service', 'loaded active/running');
    await m.unload([...names, 'sm-unknown.service']);
    for (const name of names) {
      await assert.rejects(access(hostFile(name)), /ENOENT/);
    }
    // lstat, not access: a link's target is a path inside the machine, which access would follow on the host
    const link = (path: string) => lstat(join(machine.rootPath, path));
    await assert.rejects(link('/run/systemd/system/multi-user.target.wants/sm-installed.service'), /ENOENT/);
    await assert.rejects(link('/run/systemd/system/sm-plain.service'), /ENOENT/);
    await m.reload();
    for (const name of names) await heardState(name, 'not-found inactive/dead');
    const s = await m.statuses(names);
    for (const name of names) assert.equal(s.get(name)?.loadState, 'not-found', name);
    assert.equal((await m.readUnitFiles()).size, 0);
  });

  it('a failing unit is reported failed/failed', async () => {
    const unit = service('sm-fails.service', '/bin/false');
    watch(unit.name);
    await m.writeAndLink([unit]);
    await m.reload();
    await m.startUnit(unit.name);
    await heardState(unit.name, 'loaded failed/failed');
    assert.equal((await m.statuses([unit.name])).get(unit.name)?.activeState, 'failed');
    const resets = calls('ResetFailedUnit');
    await m.unload([unit.name]);
    assert.equal(calls('ResetFailedUnit') - resets, 1);
    await m.reload();
    await heardState(unit.name, 'not-found inactive/dead');
  });

  it('names with characters systemd escapes in object paths are followed', async () => {
    const unit = service('sm-odd:name_1.service');
    watch(unit.name);
    await m.writeAndLink([unit]);
    await m.reload();
    await m.startUnit(unit.name);
    await heardState(unit.name, 'loaded active/running');
    await m.unload([unit.name]);
    await m.reload();
    await heardState(unit.name, 'not-found inactive/dead');
  });

  it('200 units: ONE LinkUnitFiles and ONE Reload, all started, all heard active; statuses in ONE call', async () => {
    const units = Array.from({ length: 200 }, (_, i) =>
      service(`sm-batch-${String(i).padStart(3, '0')}.service`),
    );
    const names = units.map((u) => u.name);
    watch(...names);
    const before = m.callCounts();
    const delta = (member: string) => calls(member) - (before.get(member) ?? 0);

    let t = process.hrtime.bigint();
    await m.writeAndLink(units);
    timings['writeAndLink 200 (files + one LinkUnitFiles)'] = ms(t);
    t = process.hrtime.bigint();
    await m.reload();
    timings['Reload with 200 new units'] = ms(t);
    assert.equal(delta('LinkUnitFiles'), 1);
    assert.equal(delta('Reload'), 1);
    assert.equal(delta('EnableUnitFiles'), 0);

    t = process.hrtime.bigint();
    await Promise.all(names.map((n) => m.startUnit(n)));
    timings['StartUnit ×200 queued (concurrency 8)'] = ms(t);
    await eventually(() => names.every((n) => state(n) === 'loaded active/running') || undefined, {
      timeoutMs: 30_000,
      intervalMs: 20,
      message: 'all 200 heard active',
    });
    timings['start 200 → all heard active'] = ms(t);
    assert.equal(delta('StartUnit'), 200);

    const listBefore = calls('ListUnitsByNames');
    t = process.hrtime.bigint();
    const s = await m.statuses(names);
    timings['statuses(200)'] = ms(t);
    assert.equal(calls('ListUnitsByNames') - listBefore, 1);
    assert.equal(s.size, 200);
    for (const n of names) assert.equal(s.get(n)?.activeState, 'active', n);
    assert.equal(
      (
        await machine.exec([
          'sh',
          '-c',
          "systemctl list-units --no-legend --state=running 'sm-batch-*' | wc -l",
        ])
      ).stdout.trim(),
      '200',
    );
  });

  it('idle: 50+ watched running units cost zero D-Bus calls over 2 s', async () => {
    assert.ok(watched.size >= 50);
    // Let the previous test's signal aftermath settle: wait until a 200 ms window is quiet.
    let last = JSON.stringify([...m.callCounts()]);
    await eventually(
      async () => {
        await new Promise((r) => setTimeout(r, 200));
        const now = JSON.stringify([...m.callCounts()]);
        const quiet = now === last;
        last = now;
        return quiet || undefined;
      },
      { timeoutMs: 10_000, message: 'calls to settle' },
    );
    const before = m.callCounts();
    await new Promise((r) => setTimeout(r, 2000)); // the measured window itself
    assert.deepEqual(m.callCounts(), before, 'no D-Bus calls while idle');
  });

  it('an external daemon-reload is noticed (Reloading signal → one batched resync)', async () => {
    const name = 'sm-batch-000.service';
    const listBefore = calls('ListUnitsByNames');
    // remove the link behind the adapter's back; the unit keeps running but loses its file
    await machine.exec(['rm', '-f', `/run/systemd/system/${name}`]);
    await machine.exec(['systemctl', 'daemon-reload']);
    await heardState(name, 'not-found active/running');
    assert.equal(calls('ListUnitsByNames') - listBefore, 1, 'one batched resync of all watched units');
  });

  it('unload 200 in one batch: ONE DisableUnitFiles, then one reload; all not-found', async () => {
    const names = [...watched].filter((n) => n.startsWith('sm-batch-'));
    const disableBefore = calls('DisableUnitFiles');
    const resetBefore = calls('ResetFailedUnit');
    const t = process.hrtime.bigint();
    await m.unload(names);
    await m.reload();
    timings['unload 200 + Reload'] = ms(t);
    // sm-batch-000's link was already gone: the batch fails once, then per-name calls
    const disables = calls('DisableUnitFiles') - disableBefore;
    assert.ok(disables === 1 || disables === 1 + names.length, `DisableUnitFiles calls: ${disables}`);
    assert.equal(calls('ResetFailedUnit') - resetBefore, 0, 'none was failed: no ResetFailedUnit');
    await eventually(() => names.every((n) => state(n) === 'not-found inactive/dead') || undefined, {
      timeoutMs: 20_000,
      message: 'all 200 heard not-found inactive',
    });
    assert.equal((await m.readUnitFiles()).size, 0);
  });

  it('when systemd-side D-Bus restarts, the loss is reported and the next call reconnects and resyncs', async () => {
    const unit = service('sm-reconnect.service');
    watch(unit.name);
    await m.writeAndLink([unit]);
    await m.reload();
    await heardState(unit.name, 'loaded inactive/dead');
    const lost = disconnects.length;
    await machine.exec(['systemctl', 'restart', 'dbus.service']);
    await eventually(() => disconnects.length > lost || undefined, {
      timeoutMs: 10_000,
      message: 'disconnect',
    });
    // changed while nobody listened
    await machine.exec(['systemctl', 'start', unit.name]);
    await eventually(
      async () => {
        try {
          await m.start();
          return true;
        } catch {
          return undefined; // the new bus may not listen yet
        }
      },
      { timeoutMs: 10_000, message: 'reconnect' },
    );
    await heardState(unit.name, 'loaded active/running');
    await m.unload([unit.name]);
    await m.reload();
  });

  it('close() does not stop units', async () => {
    const unit = service('sm-survivor.service');
    await m.writeAndLink([unit]);
    await m.reload();
    await m.startUnit(unit.name);
    await eventually(async () => (await systemctl('is-active', unit.name)) === 'active' || undefined);
    await m.close();
    await m.close();
    assert.equal(await systemctl('is-active', unit.name), 'active');
  });
});
