import { parseUnitFile, type JobState } from '@fleet/core';
import { Engine } from '@fleet/engine';
import { Registry, type Kv, type MachineSession } from '@fleet/registry';
import { eventually, uniqueId } from '../../../test/support/eventually.js';

/** A unit body with optional [X-Fleet] lines. */
export function unitText(xfleet = '', cmd = '/bin/sleep 1000'): string {
  return `[Unit]\nDescription=test\n\n[Service]\nExecStart=${cmd}\n${xfleet ? `\n[X-Fleet]\n${xfleet}\n` : ''}`;
}

export class EngineHarness {
  readonly registry: Registry;
  readonly engines: Engine[] = [];
  readonly sessions = new Map<string, MachineSession>();

  constructor(
    readonly kv: Kv,
    prefix = `/${uniqueId('e')}/`,
  ) {
    this.registry = new Registry(kv, { prefix });
  }

  startEngine(id: string, ttl = 2): Engine {
    const engine = new Engine({
      registry: this.registry,
      machineID: id,
      leaderTtlSeconds: ttl,
      resyncIntervalMs: 60_000,
    });
    engine.start();
    this.engines.push(engine);
    return engine;
  }

  async machine(id: string, metadata: Record<string, string> = {}, ttl = 5): Promise<MachineSession> {
    const s = await this.registry.registerMachine(
      { id, primaryIP: `10.0.0.${this.sessions.size + 1}`, metadata },
      ttl,
      `owner-${id}`,
    );
    this.sessions.set(id, s);
    return s;
  }

  async submit(name: string, xfleet = '', state: JobState = 'launched'): Promise<void> {
    await this.registry.createUnit(name, parseUnitFile(unitText(xfleet)), state);
  }

  /** unit → machine IDs, from etcd. */
  async placements(): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const p of await this.registry.listPlacements()) {
      out.set(p.unit, [...(out.get(p.unit) ?? []), p.machineID].sort());
    }
    return out;
  }

  async waitPlaced(unit: string, timeoutMs = 5000): Promise<string> {
    return eventually(
      async () => {
        const m = (await this.placements()).get(unit);
        if (m?.length !== 1) throw new Error(`${unit} placed on ${JSON.stringify(m)}`);
        return m[0] as string;
      },
      { timeoutMs, message: `${unit} placed` },
    );
  }

  async close(): Promise<void> {
    await Promise.all(this.engines.map((e) => e.stop()));
    for (const s of this.sessions.values()) await s.revoke().catch(() => undefined);
  }
}
