import { decodePageToken, encodePageToken, type PageToken } from '@fleet/core';

/**
 * fleet's paging (fleet-compat §6): a page holds `limit` items; the token
 * names the next page; `nextPageToken` is present only while items remain.
 *
 * Fleet re-read the whole collection for every page, so a change between
 * two pages could skip or repeat items, and a 10,000-unit listing read etcd
 * a hundred times. Ours: the first page's read is kept as a snapshot for a
 * few seconds and later pages of the same collection are cut from it. The
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

/** Whether there are pages after `token` in a collection of `total` items. */
export function hasMorePages(total: number, token: PageToken): boolean {
  return token.page * token.limit < total;
}

/** Recent full reads of paged collections, keyed by collection and filter. */
export class PageSnapshots {
  private readonly entries = new Map<string, { at: number; items: readonly unknown[] }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 16,
    private readonly now: () => number = () => Date.now(),
  ) {}

  get<T>(key: string): readonly T[] | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (this.now() - e.at > this.ttlMs) {
      this.entries.delete(key);
      return undefined;
    }
    return e.items as readonly T[];
  }

  set<T>(key: string, items: readonly T[]): void {
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

  /** Drops every snapshot (after a write, so this fleetd's clients read their writes). */
  clear(): void {
    this.entries.clear();
  }
}
