import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, retry } from 'cockatiel';
import { Etcd3, isRecoverableError, type IOptions } from 'etcd3';
import { FleetError, InternalError, UnavailableError, errorMessage } from '@fleet/core';
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

/** Connection options for {@link EtcdKv}. */
export interface EtcdKvOptions {
  /** etcd client URLs, e.g. `http://127.0.0.1:2379`. */
  readonly endpoints: readonly string[];
  /** Deadline of each unary request, in ms. @default 1000 (fleet's etcd_request_timeout) */
  readonly requestTimeoutMs?: number;
  /** Deadline for establishing a connection, in ms. @default 3000 */
  readonly dialTimeoutMs?: number;
  readonly username?: string;
  readonly password?: string;
  /** PEM contents for TLS to etcd. */
  readonly caCert?: Buffer;
  readonly clientCert?: Buffer;
  readonly clientKey?: Buffer;
}

/**
 * Keys per range request (see {@link EtcdKv.range}). Large on purpose: etcd
 * 3.4 walks the rest of the range for every limited page (to count it), so
 * small pages make a 100,000-key read several times slower.
 */
export const RANGE_PAGE_KEYS = 10_000;

/**
 * Largest response the client accepts (gRPC's default is 4 MiB, about 25,000
 * unit records). With pages of {@link RANGE_PAGE_KEYS} keys this allows
 * values of 25 KiB on average.
 */
const MAX_RECEIVE_BYTES = 256 * 1024 * 1024;
/** How long closing a watch waits for etcd to confirm its cancellation. */
const WATCH_CANCEL_WAIT_MS = 1000;

function toBuffer(s: string): Buffer {
  return Buffer.from(s, 'utf8');
}

/** The key just past every key that starts with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): Buffer {
  const buf = Buffer.from(prefix, 'utf8');
  for (let i = buf.length - 1; i >= 0; i--) {
    if ((buf[i] as number) < 0xff) {
      const end = Buffer.from(buf.subarray(0, i + 1));
      end[i] = (end[i] as number) + 1;
      return end;
    }
  }
  return Buffer.from([0]);
}

/** A few words for why a request did not reach etcd, from gRPC's long text. */
export function shortReason(message: string): string {
  if (/ECONNREFUSED|connection refused/i.test(message)) return 'connection refused';
  if (/EHOSTUNREACH|ENETUNREACH|no route/i.test(message)) return 'host unreachable';
  if (/deadline|timed? ?out|ETIMEDOUT/i.test(message)) return 'timed out';
  if (/breaker|circuit|broken/i.test(message)) return 'not answering, retrying shortly';
  if (/closed/i.test(message)) return 'connection closed';
  return 'unavailable';
}

interface RawKv {
  key: Buffer;
  value: Buffer;
  create_revision: string;
  mod_revision: string;
  version: string;
  lease: string;
}

function fromRaw(kv: RawKv): KeyValue {
  return {
    key: kv.key.toString('utf8'),
    value: kv.value.toString('utf8'),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
    lease: String(kv.lease ?? '0'),
  };
}

const compareResult = { '==': 'Equal', '!=': 'NotEqual', '<': 'Less', '>': 'Greater' } as const;

function toRawCompare(c: Compare): Record<string, unknown> {
  const base = { key: toBuffer(c.key), result: compareResult[c.op] };
  switch (c.target) {
    case 'value':
      return { ...base, target: 'Value', value: toBuffer(c.value) };
    case 'lease':
      return { ...base, target: 'Lease', lease: c.value };
    case 'createRevision':
      return { ...base, target: 'Create', create_revision: String(c.value) };
    case 'modRevision':
      return { ...base, target: 'Mod', mod_revision: String(c.value) };
    case 'version':
      return { ...base, target: 'Version', version: String(c.value) };
  }
}

function toRawOp(op: Op): Record<string, unknown> {
  switch (op.type) {
    case 'put':
      return {
        request_put: { key: toBuffer(op.key), value: toBuffer(op.value), lease: op.lease ?? '0' },
      };
    case 'delete':
      return { request_delete_range: { key: toBuffer(op.key) } };
    case 'deletePrefix':
      return { request_delete_range: { key: toBuffer(op.prefix), range_end: prefixEnd(op.prefix) } };
  }
}

/**
 * {@link Kv} on a real etcd v3 through the etcd3 client. Every raw error is
 * translated here, once: connection problems become a retryable
 * UnavailableError ("cannot reach etcd"), anything else an InternalError.
 */
export class EtcdKv implements Kv {
  readonly client: Etcd3;
  private readonly endpoints: readonly string[];
  private readonly requestTimeoutMs: number;

  constructor(options: EtcdKvOptions) {
    this.endpoints = options.endpoints;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 1000;
    const timeout = this.requestTimeoutMs;
    const etcdOptions: IOptions = {
      hosts: [...options.endpoints],
      dialTimeout: options.dialTimeoutMs ?? 3000,
      grpcOptions: { 'grpc.max_receive_message_length': MAX_RECEIVE_BYTES },
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      faultHandling: {
        // One failing member must not fail a request while others are up: retry
        // on the next host (target R2). Recover quickly once etcd is back (R3).
        host: () =>
          circuitBreaker(handleWhen(isRecoverableError), {
            halfOpenAfter: 500,
            breaker: new ConsecutiveBreaker(3),
          }),
        global: retry(handleWhen(isRecoverableError), { maxAttempts: Math.max(2, options.endpoints.length) }),
        // etcd3 calls .next() on this value (a factory), though its typings say IBackoff.
        watchBackoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }) as never,
      },
    };
    if (options.username !== undefined && options.username !== '') {
      etcdOptions.auth = { username: options.username, password: options.password ?? '' };
    }
    if (options.caCert !== undefined) {
      etcdOptions.credentials = {
        rootCertificate: options.caCert,
        ...(options.clientKey ? { privateKey: options.clientKey } : {}),
        ...(options.clientCert ? { certChain: options.clientCert } : {}),
      };
    }
    this.client = new Etcd3(etcdOptions);
  }

  /** Translates a raw etcd3/gRPC error into the project's error types. */
  translate(err: unknown, what: string): FleetError {
    if (err instanceof FleetError) return err;
    const msg = errorMessage(err);
    if (
      isRecoverableError(err as Error) ||
      /unavailable|deadline|ECONNREFUSED|EHOSTUNREACH|ETIMEDOUT|No connection established|broken|circuit|closed|connect/i.test(
        msg,
      )
    ) {
      // One short reason for people; gRPC's raw text stays in `cause` and `fields`.
      return new UnavailableError(`cannot reach etcd at ${this.endpoints.join(',')} (${shortReason(msg)})`, {
        fields: { operation: what, detail: msg },
        cause: err,
      });
    }
    return new InternalError(`etcd ${what} failed: ${msg}`, { fields: { operation: what }, cause: err });
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.translate(err, what);
    }
  }

  async get(key: string): Promise<KeyValue | undefined> {
    return this.call('get', async () => {
      const res = await this.client.kv.range({ key: toBuffer(key) });
      const kv = res.kvs[0];
      return kv ? fromRaw(kv as RawKv) : undefined;
    });
  }

  /**
   * Every key under `prefix`, read in pages of {@link RANGE_PAGE_KEYS} keys,
   * all at the revision of the first page (one consistent snapshot). A single
   * response for a large prefix (tens of thousands of units) would exceed
   * gRPC's default 4 MiB message limit and fail.
   */
  async range(prefix: string): Promise<RangeResult> {
    return this.call('range', async () => {
      const end = prefixEnd(prefix);
      const kvs: KeyValue[] = [];
      let key = toBuffer(prefix);
      let revision: string | undefined;
      for (;;) {
        const res = await this.client.kv.range({
          key,
          range_end: end,
          limit: RANGE_PAGE_KEYS,
          ...(revision !== undefined ? { revision } : {}),
        });
        revision ??= res.header.revision;
        for (const kv of res.kvs) kvs.push(fromRaw(kv as RawKv));
        const last = res.kvs[res.kvs.length - 1];
        if (!res.more || last === undefined) break;
        // The next page starts just after the last key read.
        key = Buffer.concat([last.key, Buffer.from([0])]);
      }
      return { kvs, revision: Number(revision) };
    });
  }

  async currentRevision(): Promise<number> {
    return this.call('range', async () => {
      const res = await this.client.kv.range({ key: toBuffer('\0'), count_only: true });
      return Number(res.header.revision);
    });
  }

  async txn(
    compares: readonly Compare[],
    success: readonly Op[],
    failure: readonly Op[] = [],
  ): Promise<TxnResult> {
    return this.call('txn', async () => {
      const res = await this.client.kv.txn({
        compare: compares.map(toRawCompare),
        success: success.map(toRawOp),
        failure: failure.map(toRawOp),
      });
      return { succeeded: res.succeeded, revision: Number(res.header.revision) };
    });
  }

  watchPrefix(prefix: string, startRevision: number, handlers: WatchHandlers): Watch {
    let closed = false;
    // The Watcher exists from here on (etcd3's create() would hand it over only
    // once etcd confirmed it), so a close can always detach it: a watcher left
    // attached keeps etcd3 reconnecting forever, even after the client closed.
    const watcher = this.client.watch().prefix(prefix).startRevision(String(startRevision)).watcher();
    watcher.on('data', (res) => {
      if (closed || res.events.length === 0) return;
      const events: WatchEvent[] = res.events.map((ev) =>
        ev.type === 'Put'
          ? { type: 'put' as const, kv: fromRaw(ev.kv as RawKv) }
          : {
              type: 'delete' as const,
              key: ev.kv.key.toString('utf8'),
              modRevision: Number(ev.kv.mod_revision),
            },
      );
      handlers.onEvents(events, Number(res.header.revision));
    });
    watcher.on('disconnected', () => {
      if (!closed) handlers.onConnectionChange?.(false);
    });
    watcher.on('connected', () => {
      if (!closed) handlers.onConnectionChange?.(true);
    });
    watcher.on('error', (err) => {
      if (closed) return;
      closed = true;
      // etcd cancels a watch whose start revision was compacted with an empty
      // reason (the compact revision is only in the raw response).
      const msg = errorMessage(err).replace(/^Watcher canceled:\s*$/, '');
      handlers.onReset(msg === '' ? 'start revision has been compacted' : msg);
      watcher.cancel().catch(() => undefined);
    });
    let cancelled: Promise<void> | undefined;
    return {
      close: async () => {
        closed = true;
        cancelled ??= watcher.cancel().catch(() => undefined);
        // etcd3 resolves a cancel once etcd confirms it; with etcd gone and the
        // stream not yet known broken, that never comes. Closing the client
        // ends the stream anyway; a close must not hang on it.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          cancelled,
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, WATCH_CANCEL_WAIT_MS);
            timer.unref();
          }),
        ]);
        clearTimeout(timer);
      },
    };
  }

  /**
   * Grants a lease kept alive by etcd3's keepalive stream. Its loss is
   * reported as soon as no keepalive has been answered for a whole TTL: etcd
   * has expired it by then. etcd3 itself reports it only when a keepalive
   * attempt starts more than 2 × TTL after the last answer, or when etcd
   * answers that the lease is gone — after a partition that healed in
   * between, later than the watch events caused by the expiry (an agent
   * would act on them believing its machine still registered).
   */
  async grantLease(ttlSeconds: number): Promise<Lease> {
    return this.call('lease grant', async () => {
      const lease = this.client.lease(ttlSeconds, { autoKeepAlive: true });
      const lostHandlers: Array<(reason: string) => void> = [];
      let lostReason: string | undefined;
      let deadline: NodeJS.Timeout | undefined;
      const lost = (reason: string): void => {
        clearTimeout(deadline);
        if (lostReason !== undefined) return;
        lostReason = reason;
        for (const h of lostHandlers) h(reason);
      };
      // Re-armed by every answered keepalive: it fires a TTL after the last one.
      const arm = (): void => {
        clearTimeout(deadline);
        deadline = setTimeout(() => {
          lease.release();
          lost(`no keepalive answered for ${ttlSeconds} s: the lease has expired`);
        }, ttlSeconds * 1000);
        deadline.unref();
      };
      lease.on('lost', (err) => lost(errorMessage(err)));
      lease.on('keepaliveSucceeded', arm);
      let id: string;
      try {
        id = await lease.grant();
      } catch (err) {
        clearTimeout(deadline);
        lease.release();
        throw err;
      }
      arm();
      return {
        id,
        ttlSeconds,
        onLost: (handler) => {
          if (lostReason !== undefined) handler(lostReason);
          else lostHandlers.push(handler);
        },
        revoke: () => {
          clearTimeout(deadline);
          return this.call('lease revoke', () => lease.revoke());
        },
        release: () => {
          clearTimeout(deadline);
          lease.release();
        },
      };
    });
  }

  async close(): Promise<void> {
    this.client.close();
  }
}
