import { decodePageToken, encodePageToken, type PageToken } from '@fleet/core';

/**
 * fleet's paging (fleet-compat §6): a page holds `limit` items; the token
 * names the next page; `nextPageToken` is present only while items remain.
 *
 * Fleet re-read the whole collection for every page, so a change between
 * two pages could skip or repeat items, and a 10,000-unit listing read etcd
 * a hundred times. Ours: the first page's read is kept as a snapshot for a
 * few seconds and later pages of the same collection are cut from it;
 * concurrent first pages share one read. The
 * token format is fleet's and has no room for a snapshot ID, so the snapshot
 * is per collection (and filter) on this fleetd: the latest first page wins,
 * and a write through this fleetd drops every snapshot.
 */

/** One page of `items`, and the token of the next page if there is one. */
export function pageOf<T>(items: readonly T[], token: PageToken): { items: T[]; nextPageToken?: string } {
  const start = (token.page - 1) * token.limit;
  const end = start + token.limit;
  const page = items.slice(start, end);
  // The token is two uint16s: a listing longer than 65,535 pages ends there.
  if (end < items.length && token.page < 0xffff) {
    return { items: page, nextPageToken: encodePageToken({ limit: token.limit, page: token.page + 1 }) };
  }
  return { items: page };
}

/** The page a request asks for: the first one at `defaultLimit`, or the one its token names. */
export function requestedPage(token: string | null, defaultLimit: number): PageToken {
  if (token === null || token === '') return { limit: defaultLimit, page: 1 };
  return decodePageToken(token);
}

/**
 * Full reads of paged collections, shared: the first page's read is kept for
 * the following pages (for `ttlMs`), and concurrent first pages of the same
 * collection share one read instead of each reading etcd.
 */
export class PageSnapshots {
  private readonly entries = new Map<string, { at: number; items: readonly unknown[] }>();
  private readonly inflight = new Map<string, Promise<readonly unknown[]>>();
  /** Bumped by every write through this fleetd: reads started before it are not reused. */
  private generation = 0;

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 16,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /**
   * The collection `key` for the page `token` names: a later page comes from
   * the snapshot if there is a fresh one; otherwise `read` runs (or a read of
   * the same collection already running since the last write is joined).
   */
  async items<T>(key: string, token: PageToken, read: () => Promise<readonly T[]>): Promise<readonly T[]> {
    if (token.page > 1) {
      const snap = this.get<T>(key);
      if (snap !== undefined) return snap;
    }
    const generation = this.generation;
    const flightKey = `${generation}\u0000${key}`;
    let flight = this.inflight.get(flightKey) as Promise<readonly T[]> | undefined;
    if (flight === undefined) {
      flight = read()
        .then((items) => {
          if (generation === this.generation) this.set(key, items);
          return items;
        })
        .finally(() => this.inflight.delete(flightKey));
      this.inflight.set(flightKey, flight);
    }
    return flight;
  }

  private get<T>(key: string): readonly T[] | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (this.now() - e.at > this.ttlMs) {
      this.entries.delete(key);
      return undefined;
    }
    return e.items as readonly T[];
  }

  private set<T>(key: string, items: readonly T[]): void {
    if (this.ttlMs <= 0) return;
    this.entries.delete(key);
    this.entries.set(key, { at: this.now(), items });
    // Filters are chosen by clients: keep only the most recent few.
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }

  /** Drops every snapshot and stops reuse of running reads (after a write, so this fleetd's clients read their writes). */
  clear(): void {
    this.entries.clear();
    this.generation++;
  }
}
