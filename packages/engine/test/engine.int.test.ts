import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EtcdKv } from '@fleet/registry';
import { startEtcd, type TestEtcd } from '../../../test/support/etcd.js';
import { eventually } from '../../../test/support/eventually.js';
import { EngineHarness } from './engine-harness.js';

describe('engine against a real etcd', () => {
  let etcd: TestEtcd;
  const clients: EtcdKv[] = [];
  const harnesses: EngineHarness[] = [];
  const kv = (): EtcdKv => {
    const c = new EtcdKv({ endpoints: [etcd.endpoint] });
    clients.push(c);
    return c;
  };
  const harness = (): EngineHarness => {
    const h = new EngineHarness(kv());
    harnesses.push(h);
    return h;
  };
  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    for (const h of harnesses) await h.close();
    for (const c of clients) await c.close();
    await etcd.close();
  });

  it('a machine whose lease expires loses its units to the others', async () => {
    const h = harness();
    h.startEngine('m1', 2);
    await h.machine('m1', {}, 5);
    const doomed = await h.machine('m2', {}, 1);
    for (let i = 0; i < 4; i++) await h.submit(`w${i}.service`);
    await eventually(async () => (await h.placements()).size === 4);
    const before = await h.placements();
    assert.ok(
      [...before.values()].some((m) => m[0] === 'm2'),
      'least-loaded spreads units',
    );
    doomed.lease.release(); // stops keepalives: the lease runs out after its 1 s TTL
    h.sessions.delete('m2');
    await eventually(
      async () => {
        const now = await h.placements();
        return now.size === 4 && [...now.values()].every((m) => m[0] === 'm1');
      },
      { timeoutMs: 6000, message: 'units moved off the expired machine' },
    );
  });

  it('two engines on separate clients: exactly one leads; the survivor takes over within the TTL', async () => {
    const h1 = harness();
    const h2 = new EngineHarness(kv(), h1.registry.keys.prefix);
    harnesses.push(h2);
    const a = h1.startEngine('a', 1);
    const b = h2.startEngine('b', 1);
    await h1.machine('m1');
    await eventually(() => a.isLeader || b.isLeader);
    assert.equal(a.isLeader && b.isLeader, false);
    await h1.submit('one.service');
    await h1.waitPlaced('one.service');
    const [leader, follower, followerHarness] = a.isLeader ? [a, b, h2] : [b, a, h1];
    assert.equal(follower.reconcileCount, 0);
    await leader.stop();
    await eventually(() => follower.isLeader, { timeoutMs: 3000 });
    await followerHarness.submit('two.service');
    await followerHarness.waitPlaced('two.service');
  });
});
