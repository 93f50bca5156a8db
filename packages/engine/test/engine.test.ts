import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { MemoryKv, type Kv, type WatchEvent, type WatchHandlers } from '@fleet/registry';
import { eventually } from '../../../test/support/eventually.js';
import { EngineHarness } from './engine-harness.js';

describe('engine over the in-memory registry', () => {
  let kv: MemoryKv;
  let h: EngineHarness;
  beforeEach(() => {
    kv = new MemoryKv();
    h = new EngineHarness(kv);
  });
  afterEach(async () => {
    await h.close();
    await kv.close();
  });

  it('places a launched unit, records placement with hash and desired state, follows desired state changes', async () => {
    const engine = h.startEngine('m1');
    await h.machine('m1');
    await h.submit('hello.service', '', 'launched');
    const m = await h.waitPlaced('hello.service');
    assert.equal(m, 'm1');
    assert.equal(engine.isLeader, true);
    const [p] = await h.registry.listPlacements();
    const rec = await h.registry.getUnitRecord('hello.service');
    assert.equal(p?.hash, rec?.hash);
    assert.equal(p?.desiredState, 'launched');
    await h.registry.setDesiredState('hello.service', 'loaded');
    await eventually(async () => (await h.registry.listPlacements())[0]?.desiredState === 'loaded');
    await h.registry.setDesiredState('hello.service', 'inactive');
    await eventually(async () => (await h.registry.listPlacements()).length === 0);
  });

  it('story: apache replicas on distinct machines; a third waits with a reason until a machine joins', async () => {
    h.startEngine('m1');
    await h.machine('m1');
    await h.machine('m2');
    for (const i of [1, 2, 3]) await h.submit(`apache.${i}.service`, 'X-Conflicts=apache.*.service');
    await h.waitPlaced('apache.1.service');
    await h.waitPlaced('apache.2.service');
    const reason = await eventually(() => h.registry.getUnplacedReason('apache.3.service'));
    assert.match(String(reason), /conflict/);
    const placed = await h.placements();
    assert.notDeepEqual(placed.get('apache.1.service'), placed.get('apache.2.service'));
    assert.equal(placed.has('apache.3.service'), false);
    await h.machine('m3');
    assert.equal(await h.waitPlaced('apache.3.service'), 'm3');
    await eventually(async () => (await h.registry.getUnplacedReason('apache.3.service')) === undefined);
  });

  it('machine loss: its units move in one reconcile, others stay put', async () => {
    h.startEngine('m1');
    const sessions = [await h.machine('m1'), await h.machine('m2'), await h.machine('m3')];
    for (let i = 0; i < 6; i++) await h.submit(`u${i}.service`);
    await eventually(async () => (await h.placements()).size === 6);
    const before = await h.placements();
    const victim = 'm2';
    await sessions[1]?.revoke();
    h.sessions.delete(victim);
    await eventually(async () => {
      const now = await h.placements();
      return now.size === 6 && [...now.values()].every((ms) => ms.length === 1 && ms[0] !== victim);
    });
    const after = await h.placements();
    for (const [unit, ms] of before) {
      if (ms[0] !== victim) assert.deepEqual(after.get(unit), ms, `${unit} must not move`);
    }
  });

  it('destroyed units lose their placement and unreferenced bodies are collected', async () => {
    h.startEngine('m1');
    await h.machine('m1');
    await h.submit('a.service');
    await h.waitPlaced('a.service');
    const rec = await h.registry.getUnitRecord('a.service');
    assert.ok(await h.registry.getBody(rec?.hash ?? ''));
    await h.registry.destroyUnit('a.service');
    await eventually(async () => (await h.registry.listPlacements()).length === 0);
    await eventually(async () => (await h.registry.getBody(rec?.hash ?? '')) === undefined);
  });

  it('a body written again while the unit/ watch lags behind body/ is not collected (destroy, then submit again)', async () => {
    const lagging = new LaggingUnitsKv(kv);
    const h2 = new EngineHarness(lagging);
    try {
      h2.startEngine('m1');
      await h2.machine('m1');
      await h2.submit('a.service');
      await h2.waitPlaced('a.service');
      const hash = (await h2.registry.getUnitRecord('a.service'))?.hash ?? '';
      await h2.registry.destroyUnit('a.service');
      await eventually(async () => (await h2.registry.getBody(hash)) === undefined);
      // The same unit again (unit and body in one transaction); the engine sees the body first.
      lagging.lag = true;
      await h2.submit('a.service');
      await h2.machine('m2'); // something for the engine to reconcile meanwhile
      await eventually(async () => (await h2.registry.listMachines()).length === 2);
      await new Promise((r) => setTimeout(r, 100));
      lagging.release();
      await h2.waitPlaced('a.service');
      assert.ok(await h2.registry.getBody(hash), 'the body of a live unit was collected');
    } finally {
      await h2.close();
    }
  });

  it('two engines: only one leads and commits; when it stops, the other takes over at once', async () => {
    const a = h.startEngine('m1');
    const b = h.startEngine('m2');
    await h.machine('m1');
    await eventually(() => a.isLeader || b.isLeader);
    assert.equal(a.isLeader && b.isLeader, false);
    const leader = a.isLeader ? a : b;
    const other = leader === a ? b : a;
    await h.submit('x.service');
    await h.waitPlaced('x.service');
    assert.equal(other.reconcileCount, 0, 'the follower never reconciled');
    await leader.stop();
    await eventually(() => other.isLeader, { timeoutMs: 3000 });
    await h.submit('y.service');
    await h.waitPlaced('y.service');
  });

  it('a deposed leader stops reconciling and a new one keeps placements stable', async () => {
    const a = h.startEngine('m1');
    await h.machine('m1');
    await h.machine('m2');
    await h.submit('s.service');
    const where = await h.waitPlaced('s.service');
    await eventually(() => a.isLeader);
    const leaderLease = kv.leaseIDs().find((id) => ![...h.sessions.values()].some((s) => s.lease.id === id));
    assert.ok(leaderLease);
    const b = h.startEngine('m2');
    kv.expireLease(leaderLease); // a is partitioned past its TTL
    await eventually(() => b.isLeader);
    await eventually(() => !a.isLeader || a.state === 'campaigning');
    assert.equal(await h.waitPlaced('s.service'), where, 'no churn on leader change');
  });

  it('a move larger than one transaction never shows a unit on two machines (removals commit first)', async () => {
    // etcd may commit transactions sent together in any order: this one commits them last first.
    const reorder = new ReorderingKv(kv);
    await h.close();
    h = new EngineHarness(reorder);
    h.startEngine('m1');
    await h.machine('m1', { role: 'a' });
    await h.machine('m2', { role: 'b' });
    const n = 150; // 300 operations to move them: three transactions
    for (let i = 0; i < n; i++) await h.submit(`w${i}.service`, 'MachineMetadata=role=a');
    await eventually(async () => {
      const p = await h.placements();
      return p.size === n && [...p.values()].every((ms) => ms.join() === 'm1');
    });
    // Follow every revision of schedule/ from here on: unit → machines.
    const where = new Map<string, Set<string>>();
    for (const p of await h.registry.listPlacements()) where.set(p.unit, new Set([p.machineID]));
    const doubled: string[] = [];
    const prefix = h.registry.keys.schedulePrefix;
    const watch = kv.watchPrefix(prefix, (await kv.currentRevision()) + 1, {
      onEvents: (events) => {
        let revision = 0;
        const check = (): void => {
          for (const [unit, ms] of where) if (ms.size > 1) doubled.push(`${unit}@${revision}`);
        };
        for (const ev of events) {
          const r = ev.type === 'put' ? ev.kv.modRevision : ev.modRevision;
          if (r !== revision && revision !== 0) check();
          revision = r;
          const [machine, unit] = (ev.type === 'put' ? ev.kv.key : ev.key).slice(prefix.length).split('/');
          const ms = where.get(unit as string) ?? new Set<string>();
          if (ev.type === 'put') ms.add(machine as string);
          else ms.delete(machine as string);
          where.set(unit as string, ms);
        }
        check();
      },
      onReset: (why) => doubled.push(`watch reset: ${why}`),
    });
    try {
      await h.registry.patchMachineMetadata([
        { op: 'replace', path: '/m1/metadata/role', value: { value: 'b' } },
        { op: 'replace', path: '/m2/metadata/role', value: { value: 'a' } },
      ]);
      await eventually(async () => {
        const p = await h.placements();
        return p.size === n && [...p.values()].every((ms) => ms.join() === 'm2');
      });
      await eventually(() => [...where.values()].every((ms) => ms.size === 1 && ms.has('m2')));
      assert.deepEqual(doubled.slice(0, 5), []);
    } finally {
      await watch.close();
    }
  });

  it('keeps an invalid unit unplaced with the validation error as reason', async () => {
    h.startEngine('m1');
    await h.machine('m1');
    // Written behind the API's back: the engine must not crash on it.
    await h.submit('bad.service', 'MachineID=abc\nGlobal=true');
    const reason = await eventually(() => h.registry.getUnplacedReason('bad.service'));
    assert.match(String(reason), /MachineID cannot be used with Global/);
  });
});

/** Commits transactions that arrive within the same few milliseconds in reverse order. */
class ReorderingKv implements Kv {
  private pending: Array<() => void> = [];
  constructor(private readonly inner: Kv) {}
  get: Kv['get'] = (key) => this.inner.get(key);
  range: Kv['range'] = (prefix) => this.inner.range(prefix);
  grantLease: Kv['grantLease'] = (ttl) => this.inner.grantLease(ttl);
  currentRevision: Kv['currentRevision'] = () => this.inner.currentRevision();
  close: Kv['close'] = () => this.inner.close();
  watchPrefix: Kv['watchPrefix'] = (prefix, start, handlers) =>
    this.inner.watchPrefix(prefix, start, handlers);
  txn: Kv['txn'] = (compares, success, failure) =>
    new Promise((resolve, reject) => {
      if (this.pending.length === 0) {
        setTimeout(() => {
          for (const run of this.pending.splice(0).reverse()) run();
        }, 5);
      }
      this.pending.push(() => void this.inner.txn(compares, success, failure).then(resolve, reject));
    });
}

/** Holds back watch events on `unit/` while `lag` is set: a unit watch behind the others. */
class LaggingUnitsKv implements Kv {
  lag = false;
  private readonly held: Array<() => void> = [];
  constructor(private readonly inner: Kv) {}
  get: Kv['get'] = (key) => this.inner.get(key);
  range: Kv['range'] = (prefix) => this.inner.range(prefix);
  txn: Kv['txn'] = (compares, success, failure) => this.inner.txn(compares, success, failure);
  grantLease: Kv['grantLease'] = (ttl) => this.inner.grantLease(ttl);
  currentRevision: Kv['currentRevision'] = () => this.inner.currentRevision();
  close: Kv['close'] = () => this.inner.close();
  watchPrefix: Kv['watchPrefix'] = (prefix, start, handlers: WatchHandlers) => {
    if (!prefix.endsWith('/unit/')) return this.inner.watchPrefix(prefix, start, handlers);
    return this.inner.watchPrefix(prefix, start, {
      ...handlers,
      onEvents: (events: readonly WatchEvent[], revision: number) => {
        if (this.lag) this.held.push(() => handlers.onEvents(events, revision));
        else handlers.onEvents(events, revision);
      },
    });
  };
  release(): void {
    this.lag = false;
    for (const deliver of this.held.splice(0)) deliver();
  }
}
