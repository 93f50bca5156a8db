import { errorMessage } from '@fleet/core';
import type { KeyValue, Kv, Watch, WatchEvent } from './kv.js';

/** Lifecycle of a {@link PrefixCache}. */
export type CacheState = 'new' | 'syncing' | 'synced' | 'closed';

export interface PrefixCacheOptions<T> {
  /** Turns a stored value into T; undefined drops the key (malformed/foreign value). */
  readonly decode: (key: string, kv: KeyValue) => T | undefined;
  /** Called with a reason when a value is dropped or the watch resets (for logs). */
  readonly onWarning?: (message: string) => void;
  /** Delay before re-reading after a watch reset, in ms. @default 200 */
  readonly resetDelayMs?: number;
}

/** Keys (relative to the cache's prefix) that changed in one batch of events. */
export type ChangeListener = (changedKeys: ReadonlySet<string>) => void;

/**
 * A local, always-up-to-date copy of every key under a prefix: one range read
 * at start, then a watch resumed from the last seen revision. A full re-read
 * happens only at start and when the watch cannot resume (compaction). Readers
 * get the map without touching etcd; listeners get the changed keys
 * (level-triggered: a change says "look at K again").
 */
export class PrefixCache<T> {
  private readonly items = new Map<string, T>();
  private readonly listeners = new Set<ChangeListener>();
  private readonly waiters: Array<{ revision: number; resolve: () => void }> = [];
  private watch: Watch | undefined;
  private resetTimer: NodeJS.Timeout | undefined;
  private revisionSeen = 0;
  private stateNow: CacheState = 'new';
  private connected = true;
  /** How many full re-reads have happened (1 after start); for tests and metrics. */
  reloads = 0;

  constructor(
    private readonly kv: Kv,
    readonly prefix: string,
    private readonly options: PrefixCacheOptions<T>,
  ) {}

  get state(): CacheState {
    return this.stateNow;
  }
  /** The store revision this cache reflects. */
  get revision(): number {
    return this.revisionSeen;
  }
  /** False while the watch stream is disconnected from etcd. */
  get isConnected(): boolean {
    return this.connected;
  }
  get size(): number {
    return this.items.size;
  }

  /** Loads the prefix and starts watching. Rejects if etcd cannot be read. */
  async start(): Promise<void> {
    if (this.stateNow !== 'new') return;
    this.stateNow = 'syncing';
    await this.load();
  }

  private async load(): Promise<void> {
    const res = await this.kv.range(this.prefix);
    if (this.stateNow === 'closed') return;
    const fresh = new Map<string, T>();
    for (const kv of res.kvs) {
      const rel = kv.key.slice(this.prefix.length);
      const value = this.options.decode(rel, kv);
      if (value === undefined) this.options.onWarning?.(`ignoring malformed value at ${kv.key}`);
      else fresh.set(rel, value);
    }
    const changed = new Set<string>();
    for (const [k, v] of fresh) if (this.items.get(k) !== v) changed.add(k);
    for (const k of this.items.keys()) if (!fresh.has(k)) changed.add(k);
    this.items.clear();
    for (const [k, v] of fresh) this.items.set(k, v);
    this.reloads++;
    this.revisionSeen = res.revision;
    this.stateNow = 'synced';
    this.watch = this.kv.watchPrefix(this.prefix, res.revision + 1, {
      onEvents: (events, revision) => this.apply(events, revision),
      onReset: (reason) => this.reset(reason),
      onConnectionChange: (up) => {
        this.connected = up;
      },
    });
    this.resolveWaiters();
    if (changed.size > 0) this.emit(changed);
  }

  private apply(events: readonly WatchEvent[], revision: number): void {
    if (this.stateNow === 'closed') return;
    const changed = new Set<string>();
    for (const ev of events) {
      const key = ev.type === 'put' ? ev.kv.key : ev.key;
      const rel = key.slice(this.prefix.length);
      if (ev.type === 'put') {
        const value = this.options.decode(rel, ev.kv);
        if (value === undefined) {
          this.options.onWarning?.(`ignoring malformed value at ${key}`);
          if (this.items.delete(rel)) changed.add(rel);
        } else {
          this.items.set(rel, value);
          changed.add(rel);
        }
      } else if (this.items.delete(rel)) changed.add(rel);
    }
    this.revisionSeen = Math.max(this.revisionSeen, revision);
    this.connected = true;
    this.resolveWaiters();
    if (changed.size > 0) this.emit(changed);
  }

  private reset(reason: string): void {
    if (this.stateNow === 'closed') return;
    this.options.onWarning?.(`watch on ${this.prefix} reset (${reason}); re-reading`);
    this.stateNow = 'syncing';
    const watch = this.watch;
    this.watch = undefined;
    void watch?.close();
    const retry = (): void => {
      this.resetTimer = undefined;
      this.load().catch((err: unknown) => {
        if (this.stateNow === 'closed') return;
        this.options.onWarning?.(`re-reading ${this.prefix} failed: ${errorMessage(err)}`);
        this.resetTimer = setTimeout(retry, this.options.resetDelayMs ?? 200);
        this.resetTimer.unref(); // re-reading must not keep a process alive on its own
      });
    };
    this.resetTimer = setTimeout(retry, this.options.resetDelayMs ?? 200);
    this.resetTimer.unref();
  }

  private emit(changed: ReadonlySet<string>): void {
    for (const l of this.listeners) l(changed);
  }

  private resolveWaiters(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i];
      if (w && w.revision <= this.revisionSeen) {
        this.waiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  /** Resolves once the cache reflects `revision` (read-your-writes after a txn). */
  waitForRevision(revision: number, timeoutMs = 2000): Promise<boolean> {
    if (revision <= this.revisionSeen) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(entry);
        if (i !== -1) this.waiters.splice(i, 1);
        resolve(false);
      }, timeoutMs);
      const entry = {
        revision,
        resolve: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      this.waiters.push(entry);
    });
  }

  get(key: string): T | undefined {
    return this.items.get(key);
  }
  has(key: string): boolean {
    return this.items.has(key);
  }
  /** The live map (do not mutate). Keys are relative to the prefix. */
  entries(): ReadonlyMap<string, T> {
    return this.items;
  }

  onChange(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.stateNow === 'closed') return;
    this.stateNow = 'closed';
    if (this.resetTimer) clearTimeout(this.resetTimer);
    for (const w of this.waiters.splice(0)) w.resolve();
    this.listeners.clear();
    await this.watch?.close();
  }
}
