import { readFileSync } from 'node:fs';
import { Metrics, VERSION, errorMessage } from '@fleet/core';
import { Agent, SystemdManager, type UnitManager } from '@fleet/agent';
import { createApiHandler, localUnitCommands, type ApiHandler, type UnitCommands } from '@fleet/api';
import { Engine } from '@fleet/engine';
import { CommandMailbox, EtcdKv, Registry, type Kv, type Watch } from '@fleet/registry';
import type { Config } from './config.js';
import { detectPublicIP, ownerToken, readMachineID } from './identity.js';
import { IdleCollector } from './idle-gc.js';
import { Listeners, socketActivationFds } from './listeners.js';
import { PresenceKeeper } from './presence.js';

export type FleetdState = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

/**
 * How long a machine stays present after its fleetd exited for a restart
 * (SIGUSR2) without the next one having taken over: long enough for a slow
 * start, short enough that a machine that dies meanwhile is noticed.
 */
export const HANDOVER_TTL_SECONDS = 30;

export interface FleetdOptions {
  readonly config: Config;
  /** Overrides for tests: a Kv (e.g. MemoryKv) and a UnitManager (e.g. FakeUnitManager). */
  readonly kv?: Kv;
  readonly unitManager?: UnitManager;
  /** Machine ID override (tests); otherwise read from config.machine_id_file. */
  readonly machineID?: string;
  readonly log?: (message: string) => void;
  /**
   * Run the idle collector (a full GC after a burst, see idle-gc.ts). Off
   * where many Fleetd instances share one process and one heap, which
   * should have one collector, not one each. @default true
   */
  readonly idleGc?: boolean;
}

/**
 * The daemon: this machine's identity and presence, its agent, its engine
 * candidate and the API. Explicit lifecycle: start(), then one of
 * stop('leave') (SIGTERM: give units up so they move at once), or
 * stop('handover') (restart/upgrade: leave units running and the presence
 * alive for the next fleetd to adopt).
 */
export class Fleetd {
  private stateNow: FleetdState = 'new';
  readonly metrics = new Metrics();
  readonly machineID: string;
  private config: Config;
  private kv: Kv | undefined;
  private registry: Registry | undefined;
  private presence: PresenceKeeper | undefined;
  private agent: Agent | undefined;
  private engine: Engine | undefined;
  private listeners: Listeners | undefined;
  private apiHandler: ApiHandler | undefined;
  private readonly idleGc = new IdleCollector();
  private mailboxServer: Watch | undefined;

  constructor(private readonly options: FleetdOptions) {
    this.config = options.config;
    this.machineID = options.machineID ?? readMachineID(options.config.machine_id_file);
  }

  get state(): FleetdState {
    return this.stateNow;
  }

  log(message: string): void {
    (this.options.log ?? ((m: string) => process.stderr.write(`${m}\n`)))(message);
  }

  private debug(message: string): void {
    if (this.config.verbosity > 0) this.log(message);
  }

  private makeKv(): Kv {
    const c = this.config;
    const read = (p: string): Buffer | undefined => (p ? readFileSync(p) : undefined);
    const caCert = read(c.etcd_cafile);
    const clientCert = read(c.etcd_certfile);
    const clientKey = read(c.etcd_keyfile);
    return new EtcdKv({
      endpoints: c.etcd_servers,
      requestTimeoutMs: c.etcd_request_timeout * 1000,
      ...(c.etcd_username ? { username: c.etcd_username, password: c.etcd_password } : {}),
      ...(caCert ? { caCert } : {}),
      ...(clientCert ? { clientCert } : {}),
      ...(clientKey ? { clientKey } : {}),
    });
  }

  private identity(): { id: string; primaryIP?: string; metadata: Record<string, string>; version: string } {
    const ip = this.config.public_ip || detectPublicIP();
    return {
      id: this.machineID,
      ...(ip ? { primaryIP: ip } : {}),
      metadata: this.config.metadata,
      version: VERSION,
    };
  }

  async start(): Promise<void> {
    if (this.stateNow !== 'new') return;
    this.stateNow = 'starting';
    const c = this.config;
    if (c.disable_watches)
      this.log('disable_watches is set: ignored, watches are how this fleetd stays fast');
    const kv = this.options.kv ?? this.makeKv();
    this.kv = kv;
    const registry = new Registry(kv, { prefix: c.etcd_key_prefix });
    this.registry = registry;

    const manager =
      this.options.unitManager ??
      new SystemdManager({
        unitsDirectory: c.units_directory,
        userManager: c.systemd_user,
        startConcurrency: c.agent_start_concurrency,
        log: (m) => this.debug(m),
        // The agent reconnects at once: an idle agent makes no call that would.
        onDisconnect: (err) => this.agent?.unitManagerLost(err),
      });
    const presence = new PresenceKeeper({
      registry,
      identity: this.identity(),
      ttlSeconds: c.agent_ttl,
      owner: ownerToken(c.state_dir),
      log: (m) => this.log(m),
      onRegistered: () => this.agent?.machineRegistered(),
    });
    this.presence = presence;
    const agent = new Agent({
      registry,
      machineID: this.machineID,
      manager,
      leaseID: () => presence.leaseID(),
      log: (m) => this.debug(m),
      metrics: this.metrics,
    });
    this.agent = agent;

    // The API first: fleetctl gets answers (or clear errors) even while etcd is away.
    const commands = this.unitCommands(registry);
    const handler = (this.apiHandler = createApiHandler({
      registry,
      version: VERSION,
      tokenLimit: c.token_limit,
      metrics: this.metrics,
      unitCommands: commands,
      log: (m: string) => this.debug(m),
    }));
    const tls =
      c.api_certfile && c.api_keyfile && c.api_cafile
        ? { cert: c.api_certfile, key: c.api_keyfile, ca: c.api_cafile }
        : undefined;
    this.listeners = await Listeners.open(
      {
        inheritedFds: socketActivationFds(),
        ...(c.socket_path ? { socketPath: c.socket_path } : {}),
        tcp: c.listen,
        ...(tls ? { tls } : {}),
        version: VERSION,
      },
      handler,
    );

    // Adopt what runs here before anything else can change it (R4).
    await agent.start();
    await presence.start();
    this.mailboxServer = new CommandMailbox(registry).serve(this.machineID, (req) =>
      req.kind === 'status'
        ? localUnitCommands().status(req.unit, this.machineID)
        : localUnitCommands().journal(req.unit, this.machineID, {
            lines: req.lines ?? 10,
            ...(req.output ? { output: req.output } : {}),
          }),
    );
    if (!c.disable_engine) {
      const engine = new Engine({
        registry,
        machineID: this.machineID,
        leaderTtlSeconds: c.agent_ttl,
        resyncIntervalMs: c.engine_reconcile_interval * 1000,
        log: (m) => this.log(m),
        metrics: this.metrics,
      });
      this.engine = engine;
      engine.start();
    }
    if (this.options.idleGc !== false) this.idleGc.start();
    this.stateNow = 'running';
    this.log(
      `fleetd ${VERSION} running: machine ${this.machineID}${this.identity().primaryIP ? ` (${this.identity().primaryIP})` : ''}, etcd ${c.etcd_servers.join(',')}, engine ${c.disable_engine ? 'disabled' : 'candidate'}`,
    );
  }

  /** status/journal: run here for our units, ask the unit's machine through etcd otherwise. */
  private unitCommands(registry: Registry): UnitCommands {
    const local = localUnitCommands();
    const mailbox = new CommandMailbox(registry);
    return {
      status: (unit, machineID) =>
        machineID === this.machineID
          ? local.status(unit, machineID)
          : mailbox.request(machineID, { kind: 'status', unit }),
      journal: (unit, machineID, opts) =>
        machineID === this.machineID
          ? local.journal(unit, machineID, opts)
          : mailbox.request(machineID, {
              kind: 'journal',
              unit,
              lines: opts.lines,
              ...(opts.output ? { output: opts.output } : {}),
            }),
    };
  }

  /** SIGHUP: re-read the config; metadata and verbosity apply at once, other keys need a restart. */
  async reload(next: Config): Promise<void> {
    const before = this.config;
    this.config = next;
    const changed = (Object.keys(next) as Array<keyof Config>).filter(
      (k) => JSON.stringify(next[k]) !== JSON.stringify(before[k]),
    );
    const live = new Set<string>(['metadata', 'verbosity', 'public_ip']);
    const needRestart = changed.filter((k) => !live.has(k));
    if (changed.some((k) => live.has(k) && k !== 'verbosity'))
      await this.presence?.updateIdentity(this.identity());
    this.log(
      `configuration reloaded${changed.length ? `: ${changed.join(', ')} changed` : ' (no changes)'}` +
        (needRestart.length ? `; restart fleetd to apply ${needRestart.join(', ')}` : ''),
    );
  }

  /** SIGUSR1: what this fleetd knows, as JSON. */
  dump(): Record<string, unknown> {
    const { etcd_password: _pw, ...config } = this.config;
    return {
      version: VERSION,
      state: this.stateNow,
      machineID: this.machineID,
      registered: this.presence?.registered ?? false,
      engine: this.engine ? { state: this.engine.state, reconciles: this.engine.reconcileCount } : 'disabled',
      memory: process.memoryUsage(),
      units: this.agent?.dump() ?? {},
      config,
    };
  }

  /**
   * Stops. `leave` (SIGTERM/SIGINT): resign leadership, revoke the machine's
   * lease so the engine moves its units within a second (P4), and unload the
   * units here (fleet's agent purged on shutdown). `handover`: keep units
   * running, and move the presence and the reported states to a lease of
   * {@link HANDOVER_TTL_SECONDS} that the restarted fleetd takes over (R4).
   */
  async stop(mode: 'leave' | 'handover' = 'leave'): Promise<void> {
    if (this.stateNow === 'stopped' || this.stateNow === 'stopping') return;
    this.stateNow = 'stopping';
    this.idleGc.stop();
    try {
      await this.engine?.stop();
      await this.mailboxServer?.close();
      if (mode === 'leave') {
        await this.presence?.revoke();
        await this.agent
          ?.purge()
          .catch((err: unknown) => this.log(`unloading units failed: ${errorMessage(err)}`));
      } else if (await this.presence?.handOver(HANDOVER_TTL_SECONDS)) {
        // The agent re-publishes its states under the hand-over lease (onRegistered).
        await this.agent?.flushed(2000);
      }
      await this.agent?.stop();
      await this.listeners?.close();
      await this.apiHandler?.close();
      await this.kv?.close();
    } finally {
      this.stateNow = 'stopped';
    }
  }
}
