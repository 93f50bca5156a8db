/**
 * Child process of {@link SimMachines}: many simulated machines, each a real
 * `Fleetd` (presence under its own lease, agent, command mailbox) with a
 * FakeUnitManager for systemd and the engine disabled — or, with
 * `agents: false`, only a presence (`PresenceKeeper`) per machine.
 */
import { FakeUnitManager } from '@fleet/agent';
import { ConfigSchema, Fleetd, IdleCollector, PresenceKeeper } from '@fleet/fleetd';
import { EtcdKv, Registry } from '@fleet/registry';
import type { SimConfig, SimReport } from './sim.js';

const config = JSON.parse(process.env['BENCH_SIM'] ?? '{}') as SimConfig;

// fleetd gives memory back after bursts with an idle collector (a full GC when
// the heap grew well past its live size). Each Fleetd has one, but here 1,000
// share one heap: each would collect it on its own, and the full GCs of a
// large heap saturated the CPU (keepalives went unanswered, leases were
// reported lost). One collector for the process, as in a real fleetd;
// the daemons are created with `idleGc: false`.
new IdleCollector().start();
const send = (m: SimReport): void => {
  process.send?.(m);
};
process.on('disconnect', () => process.exit(0));
process.on('message', (m: { type: string }) => {
  if (m.type === 'counts') {
    let units = 0;
    let active = 0;
    for (const mgr of managers) {
      for (const name of mgr.unitFiles().keys()) {
        units++;
        if (mgr.status(name)?.activeState === 'active') active++;
      }
    }
    let reconcileErrors = 0;
    for (const d of daemons) {
      const series = d.metrics.render().match(/^fleet_agent_reconcile_errors_total (\d+)/m);
      reconcileErrors += series ? Number(series[1]) : 0;
    }
    send({ type: 'counts', units, active, reconcileErrors });
  } else if (m.type === 'diagnose') {
    // Machines whose fake systemd still holds unit files, with what their agent believes.
    const machines: Array<Record<string, unknown>> = [];
    managers.forEach((mgr, i) => {
      const files = [...mgr.unitFiles().keys()];
      if (files.length === 0 || machines.length >= 5) return;
      const dump = daemons[i]?.dump() as
        { registered?: boolean; units?: Record<string, unknown> } | undefined;
      const sample = files[0] as string;
      machines.push({
        machine: config.machines[i]?.id,
        files: files.length,
        registered: dump?.registered,
        agentUnits: Object.keys(dump?.units ?? {}).length,
        sample,
        sampleStatus: mgr.status(sample),
        sampleAgent: dump?.units?.[sample],
      });
    });
    let withFiles = 0;
    for (const mgr of managers) if (mgr.unitFiles().size > 0) withFiles++;
    send({ type: 'diagnosis', machinesWithFiles: withFiles, machines });
  }
});

const managers: FakeUnitManager[] = [];
const daemons: Fleetd[] = [];

async function main(): Promise<void> {
  const started = performance.now();
  const kvs = Array.from(
    { length: Math.max(1, config.clients) },
    () => new EtcdKv({ endpoints: [...config.endpoints], requestTimeoutMs: 5000 }),
  );
  // BENCH_SIM_DEBUG=1 prints the machines' failures (the first 50).
  let printed = 0;
  const debug = process.env['BENCH_SIM_DEBUG'] === '1';
  const quiet = (m: string): void => {
    if (debug && /fail|cannot|lost|error/i.test(m) && printed++ < 50) process.stderr.write(`sim: ${m}\n`);
  };
  const tasks = config.machines.map((m, i) => async (): Promise<void> => {
    const kv = kvs[i % kvs.length] as EtcdKv;
    const metadata = Object.entries(m.metadata)
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    if (!config.agents) {
      const presence = new PresenceKeeper({
        registry: new Registry(kv),
        identity: { id: m.id, primaryIP: ip, metadata: { ...m.metadata }, version: 'sim' },
        ttlSeconds: config.ttlSeconds,
        owner: 'b'.repeat(32),
        log: quiet,
      });
      await presence.start();
      return;
    }
    const manager = new FakeUnitManager();
    managers.push(manager);
    const fleetd = new Fleetd({
      config: ConfigSchema.parse({
        etcd_servers: config.endpoints.join(','),
        agent_ttl: String(config.ttlSeconds),
        disable_engine: 'true',
        socket_path: '',
        state_dir: config.stateDir,
        public_ip: ip,
        metadata,
        verbosity: debug ? '1' : '0',
      }),
      kv,
      unitManager: manager,
      machineID: m.id,
      idleGc: false,
      log: quiet,
    });
    daemons.push(fleetd);
    await fleetd.start();
  });
  // A bounded number of registrations in flight (each is a read, a lease grant and a txn).
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < tasks.length) {
        const task = tasks[next++] as () => Promise<void>;
        await task();
      }
    }),
  );
  send({ type: 'ready', ms: performance.now() - started });
}

main().catch((err: unknown) => {
  send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exit(1);
});
