import { ConflictError, errorMessage } from '@fleet/core';
import type { MachineIdentity, MachineSession, Registry } from '@fleet/registry';

export interface PresenceOptions {
  readonly registry: Registry;
  readonly identity: MachineIdentity;
  readonly ttlSeconds: number;
  readonly owner: string;
  /** Called after every (re-)registration, with the new lease. */
  readonly onRegistered?: (session: MachineSession) => void;
  readonly log?: (message: string) => void;
  /** Delay between attempts while etcd is unreachable or the ID is taken, in ms. @default 500 */
  readonly retryDelayMs?: number;
}

/**
 * Keeps this machine present in the cluster: registers under a lease kept
 * alive by keepalives (no writes), and registers again whenever the lease is
 * lost (e.g. after a partition longer than the TTL). While another live
 * machine holds the same ID it refuses to serve and keeps trying, as fleet did.
 */
export class PresenceKeeper {
  private session: MachineSession | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private identityNow: MachineIdentity;

  constructor(private readonly options: PresenceOptions) {
    this.identityNow = options.identity;
  }

  /** The current lease ID, or undefined while not registered. */
  leaseID(): string | undefined {
    return this.session?.lease.id;
  }

  get registered(): boolean {
    return this.session !== undefined;
  }

  /** Registers (retrying until it works or stop() is called). Resolves after the first success. */
  start(): Promise<void> {
    let first: () => void = () => undefined;
    const registeredOnce = new Promise<void>((r) => (first = r));
    this.loop = this.run(() => first());
    return Promise.race([registeredOnce, this.loop]);
  }

  /** Changes the announced identity (metadata after SIGHUP) at the next registration. */
  async updateIdentity(identity: MachineIdentity): Promise<void> {
    this.identityNow = identity;
    const s = this.session;
    if (!s) return;
    // Re-register with the same owner: the presence key is replaced in place.
    await this.registerOnce();
    await s.lease.revoke().catch(() => undefined);
  }

  private async registerOnce(): Promise<MachineSession> {
    const { registry, ttlSeconds, owner } = this.options;
    const session = await registry.registerMachine(this.identityNow, ttlSeconds, owner);
    this.session = session;
    session.lease.onLost((reason) => {
      if (this.session !== session || this.stopped) return;
      this.options.log?.(`machine lease lost (${reason}); registering again`);
      this.session = undefined;
      this.wake?.();
    });
    this.options.onRegistered?.(session);
    return session;
  }

  private async run(onFirst: () => void): Promise<void> {
    const delay = this.options.retryDelayMs ?? 500;
    let lastError = '';
    while (!this.stopped) {
      if (this.session === undefined) {
        try {
          const session = await this.registerOnce();
          this.options.log?.(`registered machine ${this.identityNow.id} (lease ${session.lease.id})`);
          lastError = '';
          onFirst();
        } catch (err) {
          const msg = errorMessage(err);
          if (msg !== lastError) {
            this.options.log?.(
              err instanceof ConflictError
                ? `refusing to serve: ${msg}; will retry`
                : `cannot register yet: ${msg}`,
            );
            lastError = msg;
          }
          await new Promise((r) => setTimeout(r, delay));
          continue;
        }
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  /** Leaves the cluster now: revokes the lease so the engine moves this machine's units at once. */
  async revoke(): Promise<void> {
    this.stopped = true;
    const s = this.session;
    this.session = undefined;
    this.wake?.();
    await s?.revoke().catch(() => undefined);
    await this.loop;
  }

  /**
   * Restart hand-over: moves the presence to a fresh lease of `ttlSeconds`
   * that nobody keeps alive, and stops. The next fleetd (same owner token)
   * takes it over; until then the machine stays present for `ttlSeconds`
   * instead of one agent_ttl, which a restart under load can outlast (the
   * engine would then move every unit away). The hand-over lease is the
   * current {@link leaseID} afterwards, so reported states can be moved to it.
   *
   * @returns false when the presence could not be moved (etcd unreachable):
   *   it is then left on its old lease, which expires after agent_ttl.
   */
  async handOver(ttlSeconds: number): Promise<boolean> {
    this.stopped = true;
    const old = this.session;
    this.wake?.();
    await this.loop;
    if (old === undefined) return false;
    try {
      const { registry, owner } = this.options;
      const session = await registry.registerMachine(this.identityNow, ttlSeconds, owner);
      session.lease.release();
      this.session = session;
      this.options.onRegistered?.(session);
      this.options.log?.(
        `presence handed over: lease ${session.lease.id} lasts ${ttlSeconds} s for the next fleetd`,
      );
      return true;
    } catch (err) {
      this.options.log?.(`cannot hand the presence over: ${errorMessage(err)}`);
      this.session = undefined;
      return false;
    } finally {
      old.lease.release();
    }
  }
}
