import type { UnitOption } from '@fleet/core';
import {
  Keyspace,
  PrefixCache,
  machineInfo,
  type KeyValue,
  type MachineInfo,
  type MachinePresence,
  type PlacementRecord,
  type Registry,
  type StateRecord,
  type UnitRecord,
} from '@fleet/registry';

/** A value of the fleet keyspace, tagged by what it is. */
type Entry =
  | { readonly kind: 'unit'; readonly value: UnitRecord }
  | { readonly kind: 'body'; readonly value: readonly UnitOption[] }
  | { readonly kind: 'machine'; readonly value: MachinePresence }
  | { readonly kind: 'meta'; readonly value: Readonly<Record<string, string>> }
  | { readonly kind: 'placement'; readonly value: PlacementRecord }
  | { readonly kind: 'state'; readonly value: StateRecord }
  | { readonly kind: 'unplaced'; readonly value: string }
  | { readonly kind: 'other' };

/** What a listing needs, read from the mirror (live structures: build a response, do not keep them). */
export interface ClusterView {
  readonly units: ReadonlyMap<string, UnitRecord>;
  readonly bodies: ReadonlyMap<string, readonly UnitOption[]>;
  /** unit → machine → placement */
  readonly placements: ReadonlyMap<string, ReadonlyMap<string, PlacementRecord>>;
  /** unit → machine → reported state */
  readonly states: ReadonlyMap<string, ReadonlyMap<string, StateRecord>>;
  readonly unplaced: ReadonlyMap<string, string>;
  /** Live machines with dynamic metadata merged, sorted by ID. */
  machines(): MachineInfo[];
}

export interface ClusterMirrorOptions {
  /** Stop watching after this long without a listing. @default 60000 */
  readonly idleMs?: number;
  /** How long a listing waits for the watch to catch up with etcd's revision. @default 200 */
  readonly catchUpMs?: number;
  readonly log?: (message: string) => void;
}

/**
 * Listings served from memory. Reading 10,000 units, their bodies, placements
 * and states from etcd for every `fleetctl list-unit-files` cost 0.7–1.5 s,
 * mostly in decoding four 10,000-key ranges (target P11: 300 ms). The first
 * listing starts a watch-backed copy of the fleet keyspace; later listings
 * are built from it. Only a fleetd whose API is asked for listings watches the
 * cluster, and it stops after `idleMs` without one, so idle fleetds are not
 * woken by cluster events.
 *
 * Every listing first asks etcd for its current revision (a tiny read that
 * fails with "cannot reach etcd" during an outage, as an uncached listing
 * would) and waits until the copy has seen it, so a listing reflects every
 * write acknowledged before it began, this fleetd's own included.
 */
export class ClusterMirror {
  private cache: PrefixCache<Entry> | undefined;
  private starting: Promise<PrefixCache<Entry>> | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly units = new Map<string, UnitRecord>();
  private readonly bodies = new Map<string, readonly UnitOption[]>();
  private readonly presences = new Map<string, MachinePresence>();
  private readonly meta = new Map<string, Readonly<Record<string, string>>>();
  private readonly placements = new Map<string, Map<string, PlacementRecord>>();
  private readonly states = new Map<string, Map<string, StateRecord>>();
  private readonly unplaced = new Map<string, string>();
  private closed = false;
  /** Full reads of the keyspace so far (tests, metrics). */
  starts = 0;

  constructor(
    private readonly registry: Registry,
    private readonly options: ClusterMirrorOptions = {},
  ) {}

  get watching(): boolean {
    return this.cache !== undefined;
  }

  /** A view that reflects every write acknowledged before this call. */
  async read(): Promise<ClusterView> {
    if (this.closed) throw new Error('cluster mirror is closed');
    this.touch();
    const revision = await this.registry.kv.currentRevision();
    const cache = await this.ensureStarted();
    if (cache.revision < revision) {
      // Events of our keyspace up to `revision` arrive within milliseconds; a
      // newer revision than any we will see means a write outside it.
      await cache.waitForRevision(revision, this.options.catchUpMs ?? 200);
    }
    return {
      units: this.units,
      bodies: this.bodies,
      placements: this.placements,
      states: this.states,
      unplaced: this.unplaced,
      machines: () =>
        [...this.presences.values()]
          .map((p) => machineInfo(p, this.meta.get(p.id) ?? {}))
          .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
    };
  }

  private touch(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => void this.stopWatching(), this.options.idleMs ?? 60_000);
    this.idleTimer.unref();
  }

  private ensureStarted(): Promise<PrefixCache<Entry>> {
    if (this.cache) return Promise.resolve(this.cache);
    this.starting ??= this.start().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async start(): Promise<PrefixCache<Entry>> {
    const keys = this.registry.keys;
    const cache = new PrefixCache<Entry>(this.registry.kv, keys.prefix, {
      decode: (rel, kv) => this.decode(rel, kv),
      ...(this.options.log ? { onWarning: this.options.log } : {}),
    });
    cache.onChange((changed) => {
      for (const rel of changed) this.index(rel, cache.get(rel));
    });
    try {
      await cache.start();
    } catch (err) {
      await cache.close();
      throw err;
    }
    this.starts++;
    this.cache = cache;
    return cache;
  }

  private decode(rel: string, kv: KeyValue): Entry | undefined {
    const slash = rel.indexOf('/');
    const kind = slash === -1 ? rel : rel.slice(0, slash);
    const r = this.registry;
    const tag = <K extends Entry['kind']>(k: K, value: unknown): Entry | undefined =>
      value === undefined ? undefined : ({ kind: k, value } as Entry);
    switch (kind) {
      case 'unit':
        return tag('unit', r.decodeUnit(kv.value));
      case 'body':
        return tag('body', r.decodeBody(kv.value));
      case 'machine':
        return tag('machine', r.decodePresence(kv.value));
      case 'machine-meta':
        return tag('meta', r.decodeDynamicMetadata(kv.value));
      case 'schedule':
        return tag('placement', r.decodePlacement(kv.value));
      case 'state':
        return tag('state', r.decodeState(kv.value));
      case 'unplaced':
        return tag('unplaced', r.decodeUnplaced(kv.value));
      default:
        return { kind: 'other' }; // leader key, command mailbox: not listed
    }
  }

  /** Keeps the typed indexes in step with one changed key (undefined = deleted). */
  private index(rel: string, entry: Entry | undefined): void {
    const slash = rel.indexOf('/');
    const kind = slash === -1 ? rel : rel.slice(0, slash);
    const rest = rel.slice(slash + 1);
    const nested = <V>(
      map: Map<string, Map<string, V>>,
      outer: string,
      inner: string,
      value: V | undefined,
    ): void => {
      let m = map.get(outer);
      if (value === undefined) {
        m?.delete(inner);
        if (m?.size === 0) map.delete(outer);
        return;
      }
      if (!m) map.set(outer, (m = new Map()));
      m.set(inner, value);
    };
    const flat = <V>(map: Map<string, V>, value: V | undefined): void => {
      if (value === undefined) map.delete(rest);
      else map.set(rest, value);
    };
    switch (kind) {
      case 'unit':
        flat(this.units, entry?.kind === 'unit' ? entry.value : undefined);
        break;
      case 'body':
        flat(this.bodies, entry?.kind === 'body' ? entry.value : undefined);
        break;
      case 'machine':
        flat(this.presences, entry?.kind === 'machine' ? entry.value : undefined);
        break;
      case 'machine-meta':
        flat(this.meta, entry?.kind === 'meta' ? entry.value : undefined);
        break;
      case 'schedule': {
        const pair = Keyspace.pair(rest); // machine/unit
        if (pair)
          nested(this.placements, pair[1], pair[0], entry?.kind === 'placement' ? entry.value : undefined);
        break;
      }
      case 'state': {
        const pair = Keyspace.pair(rest); // unit/machine
        if (pair) nested(this.states, pair[0], pair[1], entry?.kind === 'state' ? entry.value : undefined);
        break;
      }
      case 'unplaced':
        flat(this.unplaced, entry?.kind === 'unplaced' ? entry.value : undefined);
        break;
    }
  }

  private async stopWatching(): Promise<void> {
    const cache = this.cache;
    this.cache = undefined;
    await cache?.close();
    for (const m of [
      this.units,
      this.bodies,
      this.presences,
      this.meta,
      this.placements,
      this.states,
      this.unplaced,
    ]) {
      m.clear();
    }
  }

  /** Stops watching for good. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    await this.starting?.catch(() => undefined);
    await this.stopWatching();
  }
}
