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
