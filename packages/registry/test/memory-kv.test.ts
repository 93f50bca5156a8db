import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseUnitFile } from '@fleet/core';
import { MemoryKv, PrefixCache, Registry } from '@fleet/registry';
import { eventually } from '../../../test/support/eventually.js';
import { kvConformance } from './conformance.js';

kvConformance(
  'memory',
  async () => {
    const kv = new MemoryKv();
    return {
      kv: () => kv,
      expire: async (id) => kv.expireLease(id),
      compact: async () => kv.compact(),
      close: () => kv.close(),
    };
  },
  { canReconnect: false },
);

describe('PrefixCache over a watch that fell behind a compaction', () => {
  it('re-reads everything once and ends consistent', async () => {
    const kv = new MemoryKv();
    const reg = new Registry(kv, { prefix: '/c/' });
    await reg.createUnit('a.service', parseUnitFile('[Service]\nExecStart=/bin/true\n'), 'inactive');
    const cache = new PrefixCache(kv, reg.keys.unitsPrefix, {
      decode: (_k, v) => reg.decodeUnit(v.value),
      resetDelayMs: 1,
    });
    await cache.start();
    assert.equal(cache.reloads, 1);
    kv.holdWatchEvents = true;
    await reg.createUnit('b.service', parseUnitFile('[Service]\nExecStart=/bin/false\n'), 'loaded');
    await reg.destroyUnit('a.service');
    kv.compact();
    kv.releaseWatchEvents();
    await eventually(() => cache.reloads === 2 && cache.has('b.service') && !cache.has('a.service'));
    assert.deepEqual([...cache.entries().keys()], ['b.service']);
    await cache.close();
    await kv.close();
  });
});

describe('etcd error texts', () => {
  it('give people a short reason, not gRPC text', async () => {
    const { shortReason } = await import('@fleet/registry');
    assert.equal(
      shortReason(
        '14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:2379',
      ),
      'connection refused',
    );
    assert.equal(shortReason('4 DEADLINE_EXCEEDED: Deadline exceeded after 1.001s'), 'timed out');
    assert.equal(shortReason('Breaker is open'), 'not answering, retrying shortly');
    assert.equal(shortReason('14 UNAVAILABLE: something else'), 'unavailable');
  });
});
