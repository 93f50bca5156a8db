import { UnavailableError } from '@fleet/core';
import type {
  Compare,
  KeyValue,
  Kv,
  Lease,
  Op,
  RangeResult,
  TxnResult,
  Watch,
  WatchEvent,
  WatchHandlers,
} from './kv.js';
import { MAX_TXN_OPS } from './kv.js';

interface LeaseState {
  readonly id: string;
  readonly ttlSeconds: number;
  readonly keys: Set<string>;
  timer: NodeJS.Timeout | undefined;
  lost: Array<(reason: string) => void>;
}

interface WatchState {
  readonly prefix: string;
  readonly handlers: WatchHandlers;
  nextRevision: number;
  closed: boolean;
}

/**
 * An in-process model of etcd's KV, leases, transactions and watches, with
 * the same revision semantics: every write transaction bumps the revision by
 * one; keys carry create/mod revisions and versions; deleting a lease deletes
 * its keys; watches replay history from a start revision until it is
 * compacted. For fast unit tests of code above the {@link Kv} interface.
 *
 * Leases expire on real timers only when `autoExpire` is set; tests usually
 * call {@link MemoryKv.expireLease} to make time pass deterministically.
 */
export class MemoryKv implements Kv {
  private readonly data = new Map<string, KeyValue>();
  private readonly leases = new Map<string, LeaseState>();
  private readonly watches = new Set<WatchState>();
  private readonly history: Array<{ revision: number; events: WatchEvent[] }> = [];
  private revision = 1;
  private compactedTo = 0;
  private nextLease = 1000;
  private closed = false;
  /** When true, every operation fails as if etcd were unreachable. */
  unavailable = false;
  /** When true, watch events are held back (a slow watcher) until set false and a write happens. */
  holdWatchEvents = false;
  /** Count of write transactions that changed something (like etcd's proposals). */
  writes = 0;

  constructor(private readonly options: { autoExpire?: boolean } = {}) {}

  private check(): void {
    if (this.closed) throw new UnavailableError('etcd client is closed');
    if (this.unavailable) throw new UnavailableError('cannot reach etcd (simulated)');
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.check();
    return this.data.get(key);
  }

  async range(prefix: string): Promise<RangeResult> {
    this.check();
    const kvs = [...this.data.values()]
      .filter((kv) => kv.key.startsWith(prefix))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { kvs, revision: this.revision };
  }

  async currentRevision(): Promise<number> {
    this.check();
    return this.revision;
  }

  private holds(c: Compare): boolean {
    const kv = this.data.get(c.key);
    let actual: number | string;
    switch (c.target) {
      case 'value':
        if (kv === undefined) return false; // etcd: a value compare on a missing key fails
        actual = kv.value;
        break;
      case 'lease':
        actual = kv?.lease ?? '0';
        break;
      default:
        actual = kv?.[c.target] ?? 0;
    }
    switch (c.op) {
      case '==':
        return actual === c.value;
      case '!=':
        return actual !== c.value;
      case '<':
        return Number(actual) < Number(c.value);
      case '>':
        return Number(actual) > Number(c.value);
    }
  }

  async txn(
    compares: readonly Compare[],
    success: readonly Op[],
    failure: readonly Op[] = [],
  ): Promise<TxnResult> {
    this.check();
    // etcd limits each list of a transaction separately (--max-txn-ops).
    if (compares.length > MAX_TXN_OPS || success.length > MAX_TXN_OPS || failure.length > MAX_TXN_OPS) {
      throw new Error(`etcdserver: too many operations in txn request`);
    }
    const succeeded = compares.every((c) => this.holds(c));
    const ops = succeeded ? success : failure;
    for (const op of ops) {
      if (op.type === 'put' && op.lease !== undefined && op.lease !== '0' && !this.leases.has(op.lease)) {
        throw new Error('etcdserver: requested lease not found');
      }
    }
    const events = this.apply(ops);
    return { succeeded, revision: events.length > 0 ? this.revision : this.revision };
  }

  /** Applies ops as one revision; returns the events it produced. */
  private apply(ops: readonly Op[]): WatchEvent[] {
    const events: WatchEvent[] = [];
    const rev = this.revision + 1;
    const deleteKey = (key: string): void => {
      const old = this.data.get(key);
      if (old === undefined) return;
      this.data.delete(key);
      this.leases.get(old.lease)?.keys.delete(key);
      events.push({ type: 'delete', key, modRevision: rev });
    };
    for (const op of ops) {
      if (op.type === 'put') {
        const old = this.data.get(op.key);
        const lease = op.lease ?? '0';
        if (old && old.lease !== lease) this.leases.get(old.lease)?.keys.delete(op.key);
        const kv: KeyValue = {
          key: op.key,
          value: op.value,
          createRevision: old?.createRevision ?? rev,
          modRevision: rev,
          version: (old?.version ?? 0) + 1,
          lease,
        };
        this.data.set(op.key, kv);
        if (lease !== '0') this.leases.get(lease)?.keys.add(op.key);
        events.push({ type: 'put', kv });
      } else if (op.type === 'delete') {
        deleteKey(op.key);
      } else {
        for (const key of [...this.data.keys()]) if (key.startsWith(op.prefix)) deleteKey(key);
      }
    }
    if (events.length > 0) {
      this.revision = rev;
      this.writes++;
      this.history.push({ revision: rev, events });
      if (this.history.length > 10_000) this.history.splice(0, this.history.length - 10_000);
      this.deliverSoon();
    }
    return events;
  }

  private deliverScheduled = false;
  private deliverSoon(): void {
    if (this.deliverScheduled) return;
    this.deliverScheduled = true;
    queueMicrotask(() => {
      this.deliverScheduled = false;
      if (this.holdWatchEvents) return;
      for (const w of this.watches) this.deliver(w);
    });
  }

  private deliver(w: WatchState): void {
    if (w.closed) return;
    if (w.nextRevision <= this.compactedTo) {
      w.closed = true;
      this.watches.delete(w);
      w.handlers.onReset(`required revision ${w.nextRevision} has been compacted`);
      return;
    }
    const out: WatchEvent[] = [];
    let last = 0;
    for (const entry of this.history) {
      if (entry.revision < w.nextRevision) continue;
      for (const ev of entry.events) {
        const key = ev.type === 'put' ? ev.kv.key : ev.key;
        if (key.startsWith(w.prefix)) out.push(ev);
      }
      last = entry.revision;
    }
    if (last === 0) return;
    w.nextRevision = last + 1;
    if (out.length > 0) w.handlers.onEvents(out, last);
  }

  watchPrefix(prefix: string, startRevision: number, handlers: WatchHandlers): Watch {
    this.check();
    const w: WatchState = { prefix, handlers, nextRevision: Math.max(startRevision, 1), closed: false };
    this.watches.add(w);
    queueMicrotask(() => this.deliver(w));
    return {
      close: async () => {
        w.closed = true;
        this.watches.delete(w);
      },
    };
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    this.check();
    const id = String(this.nextLease++);
    const state: LeaseState = { id, ttlSeconds, keys: new Set(), timer: undefined, lost: [] };
    this.leases.set(id, state);
    if (this.options.autoExpire) {
      state.timer = setTimeout(() => this.expireLease(id), ttlSeconds * 1000);
      state.timer.unref();
    }
    return {
      id,
      ttlSeconds,
      onLost: (handler) => {
        state.lost.push(handler);
      },
      revoke: async () => {
        this.check();
        this.dropLease(id);
      },
      release: () => {
        if (state.timer) clearTimeout(state.timer);
        state.timer = setTimeout(() => this.expireLease(id), ttlSeconds * 1000);
        state.timer.unref();
      },
    };
  }

  /** Test helper: the lease's TTL ran out (its keys are deleted and its owner told). */
  expireLease(id: string): void {
    const state = this.leases.get(id);
    if (!state) return;
    this.dropLease(id);
    for (const handler of state.lost) handler('lease expired');
  }

  private dropLease(id: string): void {
    const state = this.leases.get(id);
    if (!state) return;
    if (state.timer) clearTimeout(state.timer);
    this.leases.delete(id);
    this.apply([...state.keys].map((key) => ({ type: 'delete' as const, key })));
  }

  /** Test helper: live lease IDs. */
  leaseIDs(): string[] {
    return [...this.leases.keys()];
  }

  /** Test helper: forget history up to `revision`; watches behind it are reset. */
  compact(revision = this.revision): void {
    this.compactedTo = revision;
    const keep = this.history.findIndex((h) => h.revision > revision);
    this.history.splice(0, keep === -1 ? this.history.length : keep);
    if (!this.holdWatchEvents) for (const w of this.watches) if (w.nextRevision <= revision) this.deliver(w);
  }

  /** Test helper: release held watch events (see {@link MemoryKv.holdWatchEvents}). */
  releaseWatchEvents(): void {
    this.holdWatchEvents = false;
    for (const w of [...this.watches]) this.deliver(w);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const l of this.leases.values()) if (l.timer) clearTimeout(l.timer);
    this.watches.clear();
  }
}
