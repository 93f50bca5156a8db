import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EtcdKv, RANGE_PAGE_KEYS } from '@fleet/registry';
import { startEtcd, type TestEtcd } from '../../../test/support/etcd.js';
import { eventually, uniqueId } from '../../../test/support/eventually.js';
import { kvConformance } from './conformance.js';

kvConformance(
  'etcd',
  async () => {
    const etcd = await startEtcd();
    const kv = new EtcdKv({ endpoints: [etcd.endpoint] });
    return {
      kv: () => kv,
      // a partitioned owner: stop keeping the lease alive and wait out its TTL
      expire: async (leaseID) => {
        await kv.client.leaseClient.leaseRevoke({ ID: leaseID });
      },
      compact: async () => {
        const rev = await kv.currentRevision();
        await kv.client.kv.compact({ revision: String(rev), physical: true });
      },
      reconnect: async () => {
        await etcd.stop();
        await etcd.start();
        await eventually(async () => (await kv.currentRevision()) > 0, { timeoutMs: 10_000 });
      },
      close: async () => {
        await kv.close();
        await etcd.close();
      },
    };
  },
  { canReconnect: true },
);

describe('EtcdKv.range on a large prefix', () => {
  let etcd: TestEtcd;
  let kv: EtcdKv;
  before(async () => {
    etcd = await startEtcd();
    kv = new EtcdKv({ endpoints: [etcd.endpoint] });
  });
  after(async () => {
    await kv.close();
    await etcd.close();
  });

  it('returns every key of a prefix larger than one gRPC message, in order, at one revision', async () => {
    const prefix = `/${uniqueId('big')}/`;
    const value = 'v'.repeat(500);
    // Two pages, and ≈ 5.3 MB: more than gRPC's default 4 MiB message limit.
    const n = RANGE_PAGE_KEYS + 500;
    const names = Array.from({ length: n }, (_, i) => `${prefix}k${String(i).padStart(5, '0')}`);
    for (let i = 0; i < n; i += 125) {
      await kv.txn(
        [],
        names.slice(i, i + 125).map((key) => ({ type: 'put' as const, key, value: `${value}${key}` })),
      );
    }
    await kv.txn([], [{ type: 'put', key: `${prefix.slice(0, -1)}0`, value: 'outside' }]);

    // A write racing the pages is either entirely in the snapshot or not at all.
    const late = kv.txn([], [{ type: 'put', key: `${prefix}zz-late`, value: 'late' }]);
    const res = await kv.range(prefix);
    const lateRevision = (await late).revision;

    const expected = lateRevision <= res.revision ? [...names, `${prefix}zz-late`] : names;
    assert.deepEqual(
      res.kvs.map((x) => x.key),
      expected,
    );
    assert.ok(res.kvs.every((x) => x.modRevision <= res.revision));
    assert.equal(res.kvs[0]?.value, `${value}${names[0]}`);
  });
});

describe('EtcdKv leases when etcd stops answering', () => {
  let etcd: TestEtcd;
  let kv: EtcdKv;
  before(async () => {
    etcd = await startEtcd();
    kv = new EtcdKv({ endpoints: [etcd.endpoint] });
  });
  after(async () => {
    etcd.resume();
    await kv.close();
    await etcd.close();
  });

  it('a lease is reported lost once no keepalive was answered for its TTL, while etcd is still silent', async () => {
    const lease = await kv.grantLease(2);
    let lost: string | undefined;
    lease.onLost((reason) => (lost = reason));
    // Keepalives were answered: still alive a TTL later.
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(lost, undefined);
    etcd.pause();
    try {
      // etcd3 alone reports the loss only after 2 × TTL (4 s), too late for a
      // partition that heals in between: its expiry's watch events come first.
      await eventually(() => lost, { timeoutMs: 3500, intervalMs: 50, message: 'lease reported lost' });
    } finally {
      etcd.resume();
    }
    assert.match(String(lost), /expired/);
  });
});
