import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { getHeapStatistics } from 'node:v8';
import { IdleCollector } from '@fleet/fleetd';

describe('IdleCollector', () => {
  it('collects once the heap grew well past the live size, then not again until it grows', () => {
    const c = new IdleCollector({ growthBytes: 4 * 1024 * 1024 });
    let garbage: string[] | undefined = Array.from(
      { length: 200_000 },
      (_, i) => `garbage-${i}-${'x'.repeat(40)}`,
    );
    assert.ok(garbage.length > 0);
    garbage = undefined;
    const before = getHeapStatistics().used_heap_size;
    assert.equal(c.check(), true, 'the burst left collectable garbage behind');
    assert.equal(c.collections, 1);
    assert.ok(getHeapStatistics().used_heap_size < before, 'the collection freed it');
    assert.equal(c.check(), false, 'nothing new to collect');
    assert.equal(c.collections, 1);
  });
});
