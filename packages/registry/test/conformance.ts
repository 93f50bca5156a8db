import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ConflictError, NotFoundError, ValidationError, parseUnitFile, unitHash } from '@fleet/core';
import {
  CommandMailbox,
  PrefixCache,
  Registry,
  campaign,
  fencedCommit,
  type Kv,
  type WatchEvent,
} from '@fleet/registry';
import { eventually, uniqueId } from '../../../test/support/eventually.js';

export interface KvHarness {
  kv(): Kv;
  /** Makes the lease's TTL run out (memory: at once; etcd: waits). */
  expire(leaseID: string, ttlSeconds: number): Promise<void>;
  compact(): Promise<void>;
  /** Drops and re-establishes the client's connection (etcd restart); undefined if not supported. */
  reconnect?: () => Promise<void>;
  close(): Promise<void>;
}

const body = (cmd: string) => parseUnitFile(`[Service]\nExecStart=${cmd}\n`);

/** The same behavioural suite for every Kv implementation. */
export function kvConformance(
  name: string,
  makeHarness: () => Promise<KvHarness>,
  options: { canReconnect: boolean },
): void {
  describe(`${name}: Kv and Registry`, () => {
    let h: KvHarness;
    let kv: Kv;
    const prefix = () => `/${uniqueId('p')}/`;
    before(async () => {
      h = await makeHarness();
      kv = h.kv();
    });
    after(async () => {
      await h.close();
    });

    it('txn compares create/mod revision and value; revisions advance per txn', async () => {
      const p = prefix();
      const r1 = await kv.txn(
        [{ key: `${p}a`, target: 'createRevision', op: '==', value: 0 }],
        [
          { type: 'put', key: `${p}a`, value: '1' },
          { type: 'put', key: `${p}b`, value: '2' },
        ],
      );
      assert.equal(r1.succeeded, true);
      const a = await kv.get(`${p}a`);
      assert.equal(a?.value, '1');
      assert.equal(a?.createRevision, r1.revision);
      assert.equal((await kv.get(`${p}b`))?.modRevision, r1.revision, 'one revision for the whole txn');
      const again = await kv.txn(
        [{ key: `${p}a`, target: 'createRevision', op: '==', value: 0 }],
        [{ type: 'put', key: `${p}a`, value: 'x' }],
      );
      assert.equal(again.succeeded, false);
      assert.equal((await kv.get(`${p}a`))?.value, '1');
      const byValue = await kv.txn(
        [{ key: `${p}a`, target: 'value', op: '==', value: '1' }],
        [{ type: 'put', key: `${p}a`, value: '3' }],
      );
      assert.equal(byValue.succeeded, true);
      const a3 = await kv.get(`${p}a`);
      assert.equal(a3?.version, 2);
      assert.equal(a3?.createRevision, r1.revision);
      const range = await kv.range(p);
      assert.deepEqual(
        range.kvs.map((k) => k.key),
        [`${p}a`, `${p}b`],
      );
      await kv.txn([], [{ type: 'deletePrefix', prefix: p }]);
      assert.equal((await kv.range(p)).kvs.length, 0);
    });

    it('a revoked lease deletes its keys', async () => {
      const p = prefix();
      const lease = await kv.grantLease(5);
      await kv.txn([], [{ type: 'put', key: `${p}x`, value: 'v', lease: lease.id }]);
      assert.equal((await kv.get(`${p}x`))?.lease, lease.id);
      await lease.revoke();
      assert.equal(await kv.get(`${p}x`), undefined);
    });

    it('watch delivers puts and deletes from a start revision, in order', async () => {
      const p = prefix();
      const start = (await kv.currentRevision()) + 1;
      await kv.txn([], [{ type: 'put', key: `${p}1`, value: 'a' }]);
      const seen: WatchEvent[] = [];
      const w = kv.watchPrefix(p, start, { onEvents: (evs) => seen.push(...evs), onReset: () => undefined });
      await kv.txn([], [{ type: 'put', key: `${p}2`, value: 'b' }]);
      await kv.txn([], [{ type: 'delete', key: `${p}1` }]);
      await eventually(() => seen.length === 3, { timeoutMs: 5000 });
      assert.deepEqual(
        seen.map((e) => (e.type === 'put' ? `put ${e.kv.key}` : `delete ${e.key}`)),
        [`put ${p}1`, `put ${p}2`, `delete ${p}1`],
      );
      await w.close();
    });

    it('units: create, duplicate, replace, desired state, destroy', async () => {
      const reg = new Registry(kv, { prefix: prefix() });
      const opts = body('/bin/sleep 100');
      await reg.createUnit('hello.service', opts, 'inactive');
      await assert.rejects(reg.createUnit('hello.service', opts, 'inactive'), ConflictError);
      const u = await reg.getUnit('hello.service');
      assert.equal(u?.hash, unitHash(opts));
      assert.deepEqual(u?.options, opts);
      assert.equal(u?.desiredState, 'inactive');
      await reg.setDesiredState('hello.service', 'launched');
      assert.equal((await reg.getUnitRecord('hello.service'))?.desiredState, 'launched');
      const opts2 = body('/bin/sleep 200');
      const cur = await reg.getUnitRecord('hello.service');
      await reg.replaceUnit('hello.service', opts2, 'launched', cur?.modRevision ?? 0);
      await assert.rejects(
        reg.replaceUnit('hello.service', opts, 'launched', cur?.modRevision ?? 0),
        ConflictError,
      );
      const listed = await reg.listUnits();
      assert.deepEqual(
        listed.units.map((x) => [x.name, x.hash]),
        [['hello.service', unitHash(opts2)]],
      );
      await reg.destroyUnit('hello.service');
      assert.equal(await reg.getUnit('hello.service'), undefined);
      await assert.rejects(reg.destroyUnit('hello.service'), NotFoundError);
      await assert.rejects(reg.setDesiredState('hello.service', 'loaded'), NotFoundError);
    });

    it('machines: presence under a lease, duplicate ID refused, same owner takes over', async () => {
      const reg = new Registry(kv, { prefix: prefix() });
      const s1 = await reg.registerMachine(
        { id: 'm1', primaryIP: '10.0.0.1', metadata: { region: 'us' } },
        5,
        'ownerA',
      );
      await assert.rejects(
        reg.registerMachine({ id: 'm1', primaryIP: '10.0.0.9' }, 5, 'ownerB'),
        (err: unknown) =>
          err instanceof ConflictError &&
          /already in use by another live machine \(10\.0\.0\.1\)/.test(err.message),
      );
      const s2 = await reg.registerMachine(
        { id: 'm1', primaryIP: '10.0.0.1', metadata: { region: 'us' } },
        5,
        'ownerA',
      );
      assert.notEqual(s2.lease.id, s1.lease.id);
      await s1.lease.revoke(); // the old lease no longer holds the presence
      const machines = await reg.listMachines();
      assert.deepEqual(
        machines.map((m) => [m.id, m.primaryIP, m.metadata]),
        [['m1', '10.0.0.1', { region: 'us' }]],
      );
      await s2.revoke();
      assert.deepEqual(await reg.listMachines(), []);
    });

    it('dynamic metadata: merged over configured, fleet error texts, all-or-nothing', async () => {
      const reg = new Registry(kv, { prefix: prefix() });
      const s = await reg.registerMachine({ id: 'm1', metadata: { region: 'us', disk: 'hdd' } }, 5, 'o');
      await reg.patchMachineMetadata([
        { op: 'add', path: '/m1/metadata/disk', value: { value: 'ssd' } },
        { op: 'add', path: '/m1/metadata/rack', value: { value: 'r1' } },
      ]);
      assert.deepEqual((await reg.listMachines())[0]?.metadata, { region: 'us', disk: 'ssd', rack: 'r1' });
      const bad: Array<[unknown, string]> = [
        [
          { op: 'move', path: '/m1/metadata/a', value: { value: 'b' } },
          'invalid op: expect add, remove, or replace',
        ],
        [{ op: 'add', path: '/m1/meta/a', value: { value: 'b' } }, 'machine metadata path invalid'],
        [{ op: 'add', path: '/m1/metadata/a b', value: { value: 'b' } }, 'machine metadata path invalid'],
        [{ op: 'replace', path: '/m1/metadata/a' }, 'invalid value: add and replace require a value'],
      ];
      for (const [op, message] of bad) {
        await assert.rejects(
          reg.patchMachineMetadata([{ op: 'remove', path: '/m1/metadata/rack' }, op as never]),
          (err: unknown) => err instanceof ValidationError && err.message === message,
        );
      }
      assert.equal((await reg.listMachines())[0]?.metadata['rack'], 'r1', 'a rejected patch changes nothing');
      await reg.patchMachineMetadata([{ op: 'remove', path: '/m1/metadata/rack' }]);
      assert.deepEqual((await reg.listMachines())[0]?.dynamicMetadata, { disk: 'ssd' });
      await s.revoke();
    });

    it('states: attached to the machine lease, listed and filtered, vanish with it', async () => {
      const reg = new Registry(kv, { prefix: prefix() });
      const s = await reg.registerMachine({ id: 'm1' }, 5, 'o');
      await reg.putStates(
        'm1',
        s.lease.id,
        new Map([
          ['a.service', { hash: 'h', loadState: 'loaded', activeState: 'active', subState: 'running' }],
          ['b.service', { hash: 'h', loadState: 'loaded', activeState: 'inactive', subState: 'dead' }],
        ]),
      );
      assert.deepEqual(
        (await reg.listStates()).map((x) => `${x.unit}@${x.machineID}:${x.activeState}`),
        ['a.service@m1:active', 'b.service@m1:inactive'],
      );
      assert.equal((await reg.listStates({ unitName: 'b.service' })).length, 1);
      assert.equal((await reg.listStates({ machineID: 'other' })).length, 0);
      await reg.putStates('m1', s.lease.id, new Map([['b.service', undefined]]));
      assert.equal((await reg.listStates()).length, 1);
      await s.revoke();
      assert.equal((await reg.listStates()).length, 0);
    });

    it('cache: loads, follows changes, read-your-writes, re-reads after compaction', async () => {
      const reg = new Registry(kv, { prefix: prefix() });
      await reg.createUnit('a.service', body('/bin/true'), 'inactive');
      const cache = new PrefixCache(kv, reg.keys.unitsPrefix, {
        decode: (_k, v) => reg.decodeUnit(v.value),
        resetDelayMs: 20,
      });
      const changes: string[] = [];
      cache.onChange((keys) => changes.push(...keys));
      await cache.start();
      assert.equal(cache.get('a.service')?.desiredState, 'inactive');
      const rev = await reg.setDesiredState('a.service', 'launched');
      assert.equal(await cache.waitForRevision(rev), true);
      assert.equal(cache.get('a.service')?.desiredState, 'launched');
      await reg.destroyUnit('a.service');
      await eventually(() => !cache.has('a.service'));
      assert.ok(changes.includes('a.service'));
      assert.equal(cache.reloads, 1, 'no re-read while the watch keeps up');
      await cache.close();
      await cache.close(); // idempotent
    });

    it('a watch from a compacted revision asks its owner to re-read', async () => {
      const p = prefix();
      await kv.txn([], [{ type: 'put', key: `${p}a`, value: '1' }]);
      const old = await kv.currentRevision();
      await kv.txn([], [{ type: 'put', key: `${p}a`, value: '2' }]);
      await h.compact();
      let reset = '';
      const w = kv.watchPrefix(p, old, { onEvents: () => undefined, onReset: (why) => (reset = why) });
      await eventually(() => reset !== '', { timeoutMs: 5000 });
      assert.match(reset, /compacted/);
      await w.close();
    });

    it('command mailbox: a request reaches only its machine and leaves nothing behind', async () => {
      const reg = new Registry(kv, { prefix: prefix() });
      const mailbox = new CommandMailbox(reg);
      const seenBy: string[] = [];
      const s1 = mailbox.serve('m1', async (req) => {
        seenBy.push(`m1:${req.kind}:${req.unit}`);
        return { exitCode: 3, output: `status of ${req.unit}` };
      });
      const s2 = mailbox.serve('m2', async (req) => {
        seenBy.push(`m2:${req.kind}:${req.unit}`);
        return { exitCode: 0, output: '' };
      });
      const res = await eventually(() => mailbox.request('m1', { kind: 'status', unit: 'a.service' }, 2000), {
        timeoutMs: 8000,
      });
      assert.deepEqual(res, { exitCode: 3, output: 'status of a.service' });
      assert.deepEqual(seenBy, ['m1:status:a.service']);
      await assert.rejects(
        mailbox.request('nobody', { kind: 'journal', unit: 'a.service', lines: 5 }, 300),
        /did not answer/,
      );
      await eventually(async () => (await kv.range(reg.keys.prefix)).kvs.length === 0, { timeoutMs: 5000 });
      await s1.close();
      await s2.close();
    });

    it('election: one leader at a time; a deposed leader cannot write', async () => {
      const reg = new Registry(kv, { prefix: prefix() });
      const key = reg.keys.leader;
      const a = await campaign({ kv, key, candidateID: 'a', ttlSeconds: 2 });
      const abortB = new AbortController();
      let bWon = false;
      const bPromise = campaign({ kv, key, candidateID: 'b', ttlSeconds: 2, signal: abortB.signal }).then(
        (l) => {
          bWon = true;
          return l;
        },
      );
      await fencedCommit(kv, a.fence, [{ type: 'put', key: `${reg.keys.prefix}x`, value: 'from-a' }]);
      assert.equal(bWon, false);
      // a loses its lease (partition past the TTL); b takes over
      await h.expire(a.lease.id, 2);
      const b = await bPromise;
      await eventually(() => a.signal.aborted, { timeoutMs: 5000 });
      await assert.rejects(
        fencedCommit(kv, a.fence, [{ type: 'put', key: `${reg.keys.prefix}x`, value: 'stale-a' }]),
        ConflictError,
      );
      await fencedCommit(kv, b.fence, [{ type: 'put', key: `${reg.keys.prefix}x`, value: 'from-b' }]);
      assert.equal((await kv.get(`${reg.keys.prefix}x`))?.value, 'from-b');
      // large batches are split to fit etcd's 128-op limit, all fenced
      const many = Array.from({ length: 300 }, (_, i) => ({
        type: 'put' as const,
        key: `${reg.keys.prefix}m/${i}`,
        value: 'v',
      }));
      await fencedCommit(kv, b.fence, many);
      assert.equal((await kv.range(`${reg.keys.prefix}m/`)).kvs.length, 300);
      await b.resign();
      assert.equal(b.signal.aborted, true);
      assert.equal(await kv.get(key), undefined);
    });

    if (options.canReconnect) {
      it('cache resumes its watch after the connection drops', async () => {
        assert.ok(h.reconnect);
        const reg = new Registry(kv, { prefix: prefix() });
        const cache = new PrefixCache(kv, reg.keys.unitsPrefix, {
          decode: (_k, v) => reg.decodeUnit(v.value),
        });
        await cache.start();
        await h.reconnect();
        await eventually(
          async () => {
            await reg.createUnit(`u${Date.now()}.service`, body('/bin/true'), 'inactive');
            return true;
          },
          { timeoutMs: 10_000 },
        );
        await eventually(() => cache.size === 1, { timeoutMs: 10_000 });
        assert.equal(cache.reloads, 1, 'resumed from the last revision, no full re-read');
        await cache.close();
      });
    }
  });
}
