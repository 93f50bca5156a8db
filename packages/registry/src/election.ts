import { ConflictError, UnavailableError, errorMessage } from '@fleet/core';
import type { Compare, Kv, Lease, Op } from './kv.js';
import { MAX_TXN_OPS } from './kv.js';
import { LeaderRecordSchema, decode, type LeaderRecord } from './records.js';

/**
 * Proof of leadership carried by every leader-only write: the leader key must
 * still exist with the create revision it had when this candidate won. A
 * deposed leader (lease expired, key deleted and re-created by someone else)
 * fails the compare, so its write is rejected by etcd itself — trusting our
 * own belief is not enough (a partitioned leader believed it led for ~2.8 s).
 */
export interface Fence {
  readonly key: string;
  readonly createRevision: number;
}

export interface Leadership {
  readonly candidateID: string;
  readonly fence: Fence;
  readonly lease: Lease;
  /** Aborted when leadership is known to be lost (lease lost, key gone, resigned). */
  readonly signal: AbortSignal;
  /** Gives leadership up now: revokes the lease so another candidate wins at once. */
  resign(): Promise<void>;
}

export interface CampaignOptions {
  readonly kv: Kv;
  readonly key: string;
  readonly candidateID: string;
  /** Leader lease TTL in seconds (etcd3's default of 60 s is far too long). */
  readonly ttlSeconds: number;
  /** Aborting stops campaigning (the promise rejects with the abort reason). */
  readonly signal?: AbortSignal;
  /** Retry delay after etcd errors, in ms. @default 250 */
  readonly retryDelayMs?: number;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Campaigns for leadership until won (or `signal` aborts): a transaction puts
 * the leader key under our lease only if the key does not exist; when it does,
 * we wait for it to be deleted (watch) and try again.
 */
export async function campaign(options: CampaignOptions): Promise<Leadership> {
  const { kv, key, candidateID, ttlSeconds, signal } = options;
  const retryDelay = options.retryDelayMs ?? 250;
  for (;;) {
    signal?.throwIfAborted();
    let lease: Lease | undefined;
    try {
      lease = await kv.grantLease(ttlSeconds);
      const record: LeaderRecord = { id: candidateID, since: new Date().toISOString() };
      const res = await kv.txn(
        [{ key, target: 'createRevision', op: '==', value: 0 }],
        [{ type: 'put', key, value: JSON.stringify(record), lease: lease.id }],
      );
      if (res.succeeded) {
        return watchLeadership(kv, key, candidateID, { key, createRevision: res.revision }, lease);
      }
      lease.release();
      await lease.revoke().catch(() => undefined);
      lease = undefined;
      await waitForVacancy(kv, key, signal);
    } catch {
      if (lease) await lease.revoke().catch(() => undefined);
      if (signal?.aborted) throw signal.reason;
      await sleep(retryDelay, signal);
    }
  }
}

/** Resolves when the leader key is absent (now or after a delete event). */
async function waitForVacancy(kv: Kv, key: string, signal?: AbortSignal): Promise<void> {
  const current = await kv.get(key);
  if (current === undefined) return;
  const startRevision = current.modRevision + 1;
  await new Promise<void>((resolve, reject) => {
    const done = (fn: () => void): void => {
      signal?.removeEventListener('abort', onAbort);
      void watch.close();
      fn();
    };
    const onAbort = (): void => done(() => reject(signal?.reason));
    const watch = kv.watchPrefix(key, startRevision, {
      onEvents: (events) => {
        if (events.some((e) => e.type === 'delete')) done(resolve);
      },
      onReset: () => done(resolve), // re-check from scratch
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function watchLeadership(kv: Kv, key: string, candidateID: string, fence: Fence, lease: Lease): Leadership {
  const controller = new AbortController();
  const lose = (reason: string): void => {
    if (!controller.signal.aborted) controller.abort(new ConflictError(`lost engine leadership: ${reason}`));
    void watch.close();
  };
  lease.onLost((reason) => lose(`lease lost (${reason})`));
  const watch = kv.watchPrefix(key, fence.createRevision + 1, {
    onEvents: (events) => {
      for (const e of events) {
        if (e.type === 'delete') lose('leader key deleted');
        else if (e.kv.createRevision !== fence.createRevision) lose('leader key replaced');
      }
    },
    onReset: (reason) => {
      // Cannot tell what happened: verify directly.
      kv.get(key)
        .then((kvNow) => {
          if (kvNow?.createRevision !== fence.createRevision) lose(`leader key changed (${reason})`);
        })
        .catch(() => undefined);
    },
  });
  return {
    candidateID,
    fence,
    lease,
    signal: controller.signal,
    resign: async () => {
      lose('resigned');
      await lease.revoke().catch(() => undefined);
    },
  };
}

/** The current leader, if any. */
export async function currentLeader(kv: Kv, key: string): Promise<LeaderRecord | undefined> {
  const kvNow = await kv.get(key);
  return kvNow ? decode(LeaderRecordSchema, kvNow.value) : undefined;
}

/** Fenced transactions an engine keeps in flight at once. */
export const FENCED_COMMIT_CONCURRENCY = 4;

/**
 * Commits ops as the leader: in chunks that fit etcd's transaction limit
 * (128 operations), a few in flight at once, each guarded by the fence.
 * Throws ConflictError if leadership was lost (chunks that went through stay
 * committed; callers re-read and reconcile, which is safe because their
 * writes are idempotent).
 *
 * @returns the highest revision of the committed chunks (0 when no ops).
 */
export async function fencedCommit(
  kv: Kv,
  fence: Fence,
  ops: readonly Op[],
  extraCompares: readonly Compare[] = [],
  concurrency = FENCED_COMMIT_CONCURRENCY,
): Promise<number> {
  const compares: Compare[] = [
    { key: fence.key, target: 'createRevision', op: '==', value: fence.createRevision },
    ...extraCompares,
  ];
  const chunks: Op[][] = [];
  for (let i = 0; i < ops.length; i += MAX_TXN_OPS) chunks.push(ops.slice(i, i + MAX_TXN_OPS));
  let revision = 0;
  let failure: unknown;
  let next = 0;
  // Chunks touch distinct keys, so their order does not matter: keep a few in
  // flight instead of paying one round trip per 128 operations (target P6).
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < chunks.length) {
      const chunk = chunks[next++] as Op[];
      let res;
      try {
        res = await kv.txn(compares, chunk);
      } catch (err) {
        failure ??=
          err instanceof UnavailableError
            ? err
            : new UnavailableError(`engine commit failed: ${errorMessage(err)}`, { cause: err });
        return;
      }
      if (!res.succeeded) {
        failure ??= new ConflictError(
          extraCompares.length > 0
            ? 'engine write rejected: leadership lost or a precondition changed'
            : 'engine write rejected: this engine no longer holds leadership',
          { fields: { fence } },
        );
        return;
      }
      revision = Math.max(revision, res.revision);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, chunks.length) }, () => worker()));
  if (failure !== undefined) throw failure;
  return revision;
}
