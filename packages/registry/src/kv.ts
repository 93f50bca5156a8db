/**
 * The small slice of etcd v3 the registry needs, as an interface with two
 * implementations: {@link EtcdKv} (the real thing, via etcd3) and
 * {@link MemoryKv} (an in-process model with the same revision, lease, txn
 * and watch semantics, for fast engine/agent/API unit tests).
 *
 * Revisions are plain numbers (etcd's int64 revisions stay far below 2^53).
 */

export interface KeyValue {
  readonly key: string;
  readonly value: string;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
  /** Lease ID as a decimal string; '0' when the key has no lease. */
  readonly lease: string;
}

export type CompareOp = '==' | '!=' | '<' | '>';

/** One condition of a transaction, as etcd's Compare. A missing key has revisions/version 0. */
export type Compare =
  | {
      readonly key: string;
      readonly target: 'createRevision' | 'modRevision' | 'version';
      readonly op: CompareOp;
      readonly value: number;
    }
  | { readonly key: string; readonly target: 'value'; readonly op: '==' | '!='; readonly value: string }
  | { readonly key: string; readonly target: 'lease'; readonly op: '==' | '!='; readonly value: string };

export type Op =
  | { readonly type: 'put'; readonly key: string; readonly value: string; readonly lease?: string }
  | { readonly type: 'delete'; readonly key: string }
  | { readonly type: 'deletePrefix'; readonly prefix: string };

export interface TxnResult {
  readonly succeeded: boolean;
  /** The store's revision after the transaction. */
  readonly revision: number;
}

export interface RangeResult {
  readonly kvs: readonly KeyValue[];
  /** The store revision the range was read at. */
  readonly revision: number;
}

export type WatchEvent =
  | { readonly type: 'put'; readonly kv: KeyValue }
  | { readonly type: 'delete'; readonly key: string; readonly modRevision: number };

export interface WatchHandlers {
  /** Events of one or more revisions, in order; `revision` is the newest revision they cover. */
  onEvents(events: readonly WatchEvent[], revision: number): void;
  /**
   * The watch cannot continue from where it was (the start revision was
   * compacted, or the stream was cancelled): the owner must re-read and
   * watch again.
   */
  onReset(reason: string): void;
  /** Connection lost / regained, for health reporting; the watch resumes by itself. */
  onConnectionChange?(connected: boolean): void;
}

export interface Watch {
  close(): Promise<void>;
}

export interface Lease {
  /** Decimal lease ID. */
  readonly id: string;
  readonly ttlSeconds: number;
  /** Called once if the lease is known to be gone (expired or revoked elsewhere). */
  onLost(handler: (reason: string) => void): void;
  /** Revokes the lease now: every key attached to it is deleted. */
  revoke(): Promise<void>;
  /** Stops keeping the lease alive; it expires after its TTL. */
  release(): void;
}

export interface Kv {
  get(key: string): Promise<KeyValue | undefined>;
  /** Every key under `prefix`, sorted by key. */
  range(prefix: string): Promise<RangeResult>;
  /** Atomically: if every compare holds, apply `success`, else `failure`. */
  txn(compares: readonly Compare[], success: readonly Op[], failure?: readonly Op[]): Promise<TxnResult>;
  /** Watch keys under `prefix` for changes at revisions ≥ `startRevision`. */
  watchPrefix(prefix: string, startRevision: number, handlers: WatchHandlers): Watch;
  /** Grants a lease and keeps it alive until revoked, released or lost. */
  grantLease(ttlSeconds: number): Promise<Lease>;
  /** The revision the store is at now. */
  currentRevision(): Promise<number>;
  close(): Promise<void>;
}

/** etcd allows at most 128 operations in one transaction (its --max-txn-ops default). */
export const MAX_TXN_OPS = 128;
