import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NotFoundError, UnavailableError, ValidationError } from '@fleet/core';
import { FakeUnitManager, type UnitFile, type UnitStatus } from '@fleet/agent';

const svc = (name: string, exec = '/bin/sleep infinity', install = false): UnitFile => ({
  name,
  text: `[Service]\nExecStart=${exec}\n${install ? '\n[Install]\nWantedBy=multi-user.target\n' : ''}`,
  install,
});

function recorder() {
  const seen: UnitStatus[] = [];
  const listener = (s: UnitStatus) => seen.push(s);
  const states = (name: string) =>
    seen.filter((s) => s.name === name).map((s) => `${s.activeState}/${s.subState}`);
  return { seen, listener, states };
}

describe('FakeUnitManager', () => {
  it('writes, links and reads unit files; enables [Install] units', async () => {
    const m = new FakeUnitManager();
    await m.writeAndLink([svc('a.service'), svc('b.service', '/bin/true', true)]);
    assert.deepEqual([...(await m.readUnitFiles()).keys()], ['a.service', 'b.service']);
    assert.equal((await m.readUnitFiles()).get('a.service'), svc('a.service').text);
    assert.equal(m.isLinked('a.service'), true);
    assert.equal(m.isEnabled('a.service'), false);
    assert.equal(m.isEnabled('b.service'), true);
    assert.equal(m.calls.writeAndLink, 1);
    assert.equal(m.calls.linkedFiles, 2);
    assert.equal(m.calls.enable, 1);
    assert.equal(m.needsReload, true);
  });

  it('rejects invalid unit names like the adapter', async () => {
    const m = new FakeUnitManager();
    await assert.rejects(m.writeAndLink([{ name: '../evil', text: '', install: false }]), ValidationError);
    await assert.rejects(m.startUnit('nodot'), ValidationError);
    await assert.rejects(m.statuses(['bad/name.service']), ValidationError);
    assert.equal(m.calls.writeAndLink, 0);
  });

  it('an unlinked unit cannot start; a linked one systemd does not know loads on first use; start goes activating then active/running', async () => {
    const m = new FakeUnitManager();
    const r = recorder();
    await assert.rejects(m.startUnit('a.service'), NotFoundError);
    assert.equal((await m.statuses(['a.service'])).get('a.service')?.loadState, 'not-found');
    await m.writeAndLink([svc('a.service')]);
    assert.equal((await m.statuses(['a.service'])).get('a.service')?.loadState, 'loaded');
    await m.reload();
    assert.equal(m.needsReload, false);
    m.watch(new Set(['a.service']), r.listener);
    await m.settled();
    assert.deepEqual(r.states('a.service'), ['inactive/dead'], 'baseline');
    await m.startUnit('a.service');
    assert.equal(m.status('a.service').activeState, 'activating', 'the job is queued, not finished');
    await m.settled();
    assert.deepEqual(r.states('a.service'), ['inactive/dead', 'activating/start', 'active/running']);
    const status = (await m.statuses(['a.service'])).get('a.service');
    assert.equal(status?.loadState, 'loaded');
    assert.equal(status?.activeState, 'active');
    assert.ok((await m.mainPID('a.service')) > 0);
  });

  it('starting an active unit is a no-op (no restart, same MainPID)', async () => {
    const m = new FakeUnitManager();
    await m.writeAndLink([svc('a.service')]);
    await m.reload();
    await m.startUnit('a.service');
    await m.settled();
    const pid = await m.mainPID('a.service');
    const r = recorder();
    m.watch(new Set(['a.service']), r.listener);
    await m.settled();
    await m.startUnit('a.service');
    await m.settled();
    assert.equal(await m.mainPID('a.service'), pid);
    assert.deepEqual(r.states('a.service'), ['active/running']);
  });

  it('stop: deactivating then inactive/dead; stopping an unknown unit is fine', async () => {
    const m = new FakeUnitManager();
    const r = recorder();
    await m.writeAndLink([svc('a.service')]);
    await m.reload();
    await m.startUnit('a.service');
    await m.settled();
    m.watch(new Set(['a.service']), r.listener);
    await m.stopUnit('a.service');
    await m.settled();
    assert.deepEqual(r.states('a.service'), ['deactivating/stop', 'inactive/dead']);
    assert.equal(await m.mainPID('a.service'), 0);
    await m.stopUnit('never.service');
    assert.equal(m.status('never.service').loadState, 'not-found');
  });

  it('a stop right after a start wins over the pending start transition', async () => {
    const m = new FakeUnitManager();
    await m.writeAndLink([svc('a.service')]);
    await m.reload();
    await m.startUnit('a.service');
    await m.stopUnit('a.service');
    await m.settled();
    assert.equal(m.status('a.service').activeState, 'inactive');
  });

  it('ExecStart=/bin/false fails; a custom predicate too; stop leaves failed units failed', async () => {
    const m = new FakeUnitManager();
    const r = recorder();
    await m.writeAndLink([svc('bad.service', '/bin/false'), svc('good.service')]);
    await m.reload();
    m.watch(new Set(['bad.service', 'good.service']), r.listener);
    await m.startUnit('bad.service');
    await m.startUnit('good.service');
    await m.settled();
    assert.equal(m.status('bad.service').activeState, 'failed');
    assert.equal(m.status('bad.service').subState, 'failed');
    assert.equal(m.status('good.service').activeState, 'active');
    assert.deepEqual(r.states('bad.service').slice(-1), ['failed/failed']);
    await m.stopUnit('bad.service');
    await m.settled();
    assert.equal(m.status('bad.service').activeState, 'failed');

    const custom = new FakeUnitManager({ fails: (name) => name.startsWith('x') });
    await custom.writeAndLink([svc('x.service'), svc('y.service')]);
    await custom.reload();
    await custom.startUnit('x.service');
    await custom.startUnit('y.service');
    await custom.settled();
    assert.equal(custom.status('x.service').activeState, 'failed');
    assert.equal(custom.status('y.service').activeState, 'active');
  });

  it('oneshot, socket and timer units settle in their own states', async () => {
    const m = new FakeUnitManager();
    await m.writeAndLink([
      { name: 'once.service', text: '[Service]\nType=oneshot\nExecStart=/bin/true\n', install: false },
      {
        name: 'kept.service',
        text: '[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n',
        install: false,
      },
      { name: 'x.socket', text: '[Socket]\nListenStream=1234\n', install: false },
      { name: 'x.timer', text: '[Timer]\nOnCalendar=daily\n', install: false },
    ]);
    await m.reload();
    for (const n of ['once.service', 'kept.service', 'x.socket', 'x.timer']) await m.startUnit(n);
    await m.settled();
    const s = await m.statuses(['once.service', 'kept.service', 'x.socket', 'x.timer']);
    assert.deepEqual(
      [...s.values()].map((u) => `${u.name} ${u.activeState}/${u.subState}`),
      [
        'once.service inactive/dead',
        'kept.service active/exited',
        'x.socket active/listening',
        'x.timer active/waiting',
      ],
    );
  });

  it('a file changed without a reload starts with the old definition and is recorded', async () => {
    const m = new FakeUnitManager();
    await m.writeAndLink([svc('a.service', '/bin/false')]);
    await m.reload();
    await m.writeAndLink([svc('a.service', '/bin/sleep 1000')]);
    assert.equal(m.needsReload, true);
    await m.startUnit('a.service');
    await m.settled();
    assert.deepEqual(m.staleStarts, ['a.service']);
    assert.equal(m.status('a.service').activeState, 'failed', 'ran the loaded (old) text');
    assert.match(m.loadedText('a.service') ?? '', /bin\/false/);
    await m.reload();
    await m.startUnit('a.service');
    await m.settled();
    assert.equal(m.status('a.service').activeState, 'active');
  });

  it('unload: stops, unlinks, resets failed, removes the file; after reload the unit is not-found', async () => {
    const m = new FakeUnitManager();
    const r = recorder();
    await m.writeAndLink([svc('a.service', '/bin/sleep 1', true), svc('f.service', '/bin/false')]);
    await m.reload();
    await m.startUnit('a.service');
    await m.startUnit('f.service');
    await m.settled();
    m.watch(new Set(['a.service', 'f.service']), r.listener);
    await m.settled();
    await m.unload(['a.service', 'f.service', 'unknown.service']);
    await m.settled();
    assert.deepEqual([...(await m.readUnitFiles()).keys()], []);
    assert.equal(m.isLinked('a.service'), false);
    assert.equal(m.isEnabled('a.service'), false);
    assert.equal(m.status('a.service').activeState, 'inactive');
    assert.equal(m.status('f.service').activeState, 'inactive', 'reset-failed');
    assert.equal(m.status('a.service').loadState, 'loaded', 'still loaded until the reload');
    assert.equal(m.needsReload, true);
    await m.reload();
    assert.equal(m.status('a.service').loadState, 'not-found');
    assert.deepEqual(r.states('a.service'), [
      'active/running',
      'deactivating/stop',
      'inactive/dead',
      'inactive/dead',
    ]);
    assert.equal(r.seen.at(-1)?.loadState, 'not-found');
  });

  it('counts calls and logs operations in order, so a reconcile pass can be checked', async () => {
    const m = new FakeUnitManager();
    await m.writeAndLink([svc('a.service'), svc('b.service')]);
    await m.reload();
    await m.startUnit('a.service');
    await m.startUnit('b.service');
    await m.settled();
    m.resetCounters();
    await m.unload(['a.service']);
    await m.writeAndLink([svc('c.service')]);
    await m.reload();
    await m.stopUnit('b.service');
    await m.startUnit('c.service');
    assert.deepEqual(
      m.operations.map((o) => `${o.op} ${o.units.join(',')}`.trim()),
      ['unload a.service', 'writeAndLink c.service', 'reload', 'stopUnit b.service', 'startUnit c.service'],
    );
    assert.equal(m.calls.reload, 1);
    assert.equal(m.calls.writeAndLink, 1);
    assert.equal(m.calls.startUnit, 1);
    assert.equal(m.calls.stopUnit, 1);
    assert.equal(m.calls.unload, 1);
  });

  it('watch replaces the watched set; unwatched units are not reported', async () => {
    const m = new FakeUnitManager();
    const r = recorder();
    await m.writeAndLink([svc('a.service'), svc('b.service')]);
    await m.reload();
    m.watch(new Set(['a.service']), r.listener);
    await m.settled();
    m.watch(new Set(['b.service']), r.listener);
    await m.settled();
    await m.startUnit('a.service');
    await m.startUnit('b.service');
    await m.settled();
    assert.deepEqual(r.states('a.service'), ['inactive/dead']);
    assert.deepEqual(r.states('b.service'), ['inactive/dead', 'activating/start', 'active/running']);
  });

  it('external state changes (a crash) reach the listener', async () => {
    const m = new FakeUnitManager();
    const r = recorder();
    await m.writeAndLink([svc('a.service')]);
    await m.reload();
    await m.startUnit('a.service');
    await m.settled();
    m.watch(new Set(['a.service']), r.listener);
    await m.settled();
    m.setUnitState('a.service', { activeState: 'failed', subState: 'failed', mainPID: 0 });
    assert.deepEqual(r.states('a.service'), ['active/running', 'failed/failed']);
  });

  it('unavailable: every call rejects with UnavailableError; watched units resync when it returns', async () => {
    const m = new FakeUnitManager();
    const r = recorder();
    await m.writeAndLink([svc('a.service')]);
    await m.reload();
    m.watch(new Set(['a.service']), r.listener);
    await m.settled();
    m.setUnavailable(true);
    await assert.rejects(m.startUnit('a.service'), UnavailableError);
    await assert.rejects(m.statuses(['a.service']), UnavailableError);
    m.setUnitState('a.service', { activeState: 'active', subState: 'running' });
    assert.deepEqual(r.states('a.service'), ['inactive/dead'], 'no signals while the bus is gone');
    m.setUnavailable(false);
    assert.deepEqual(r.states('a.service'), ['inactive/dead', 'active/running']);
  });

  it('disconnect: onDisconnect is told, changes are lost until the next call reconnects and resyncs', async () => {
    const lost: UnavailableError[] = [];
    const m = new FakeUnitManager({ onDisconnect: (err) => lost.push(err) });
    const r = recorder();
    await m.writeAndLink([svc('a.service')]);
    await m.reload();
    m.watch(new Set(['a.service']), r.listener);
    await m.settled();
    m.disconnect();
    assert.equal(lost.length, 1);
    m.setUnitState('a.service', { activeState: 'failed', subState: 'failed' });
    await m.settled();
    assert.deepEqual(r.states('a.service'), ['inactive/dead'], 'no signals while disconnected');
    await m.start();
    await m.settled();
    assert.equal(m.isDisconnected, false);
    assert.deepEqual(r.states('a.service'), ['inactive/dead', 'failed/failed']);
  });

  it('close: idempotent, later calls are unavailable, no more listener calls, units keep running', async () => {
    const m = new FakeUnitManager();
    const r = recorder();
    await m.writeAndLink([svc('a.service')]);
    await m.reload();
    m.watch(new Set(['a.service']), r.listener);
    await m.startUnit('a.service');
    const heard = r.states('a.service');
    assert.deepEqual(heard, ['activating/start']);
    await m.close();
    await m.close();
    await m.settled();
    assert.equal(m.status('a.service').activeState, 'active');
    assert.deepEqual(r.states('a.service'), heard, 'nothing after close');
    await assert.rejects(m.startUnit('a.service'), UnavailableError);
  });

  it('a throwing listener does not break the manager', async () => {
    const m = new FakeUnitManager();
    await m.writeAndLink([svc('a.service')]);
    await m.reload();
    m.watch(new Set(['a.service']), () => {
      throw new Error('boom');
    });
    await m.startUnit('a.service');
    await m.settled();
    assert.equal(m.status('a.service').activeState, 'active');
    assert.ok(m.listenerErrors.length > 0);
  });
});
