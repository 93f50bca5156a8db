import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { parseUnitFile, serializeUnitOptions, unitHash, type JobState } from '@fleet/core';
import { Agent, FakeUnitManager } from '@fleet/agent';
import { MemoryKv, Registry, type MachineSession } from '@fleet/registry';
import { eventually } from '../../../test/support/eventually.js';

const ME = 'aaaaaaaa11111111aaaaaaaa11111111';
const body = (cmd = '/bin/sleep 1000') =>
  parseUnitFile(`[Unit]\nDescription=x\n\n[Service]\nExecStart=${cmd}\n`);

describe('agent reconcile loop (in-memory registry, fake systemd)', () => {
  let kv: MemoryKv;
  let registry: Registry;
  let manager: FakeUnitManager;
  let session: MachineSession;
  let agents: Agent[];

  /** What the engine would write: the unit, its body, and a placement on `machine`. */
  const place = async (unit: string, desiredState: JobState, cmd?: string, machine = ME) => {
    const options = body(cmd);
    const hash = unitHash(options);
    await kv.txn(
      [],
      [
        { type: 'put', key: registry.keys.body(hash), value: JSON.stringify({ options }) },
        {
          type: 'put',
          key: registry.keys.placement(machine, unit),
          value: JSON.stringify({ hash, desiredState }),
        },
      ],
    );
    return hash;
  };
  const unplace = (unit: string) => kv.txn([], [{ type: 'delete', key: registry.keys.placement(ME, unit) }]);
  const startAgent = async (leaseID: () => string | undefined = () => session.lease.id) => {
    // systemd outlives fleetd: a stopped agent disconnects, the fake "systemd" keeps its units.
    const agent = new Agent({ registry, machineID: ME, manager, leaseID, retryDelayMs: 20 });
    agents.push(agent);
    await agent.start();
    return agent;
  };
  const reported = async () =>
    new Map(
      (await registry.listStates({ machineID: ME })).map((s) => [s.unit, `${s.activeState}/${s.subState}`]),
    );

  beforeEach(async () => {
    kv = new MemoryKv();
    registry = new Registry(kv, { prefix: '/a/' });
    manager = new FakeUnitManager();
    session = await registry.registerMachine({ id: ME }, 5, 'owner');
    agents = [];
  });
  afterEach(async () => {
    for (const a of agents) await a.stop();
    await kv.close();
  });

  it('runs a unit placed here and reports systemd state promptly', async () => {
    await startAgent();
    await place('hello.service', 'launched');
    await eventually(async () => (await reported()).get('hello.service') === 'active/running');
    assert.equal(manager.status('hello.service').activeState, 'active');
    const [state] = await registry.listStates({ unitName: 'hello.service' });
    assert.equal(state?.hash, unitHash(body()));
    assert.equal(manager.loadedText('hello.service'), serializeUnitOptions(body()));
  });

  it('links a burst of new units in one call; systemd loads them on first use, so no reload', async () => {
    const agent = await startAgent();
    await agent.nextReconcile().catch(() => undefined);
    manager.resetCounters();
    // Bodies are read several at a time, not one round trip after another.
    const getBody = registry.getBody.bind(registry);
    let inFlight = 0;
    let maxInFlight = 0;
    let bodyReads = 0;
    registry.getBody = async (hash) => {
      bodyReads++;
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      try {
        await new Promise((r) => setTimeout(r, 2));
        return await getBody(hash);
      } finally {
        inFlight--;
      }
    };
    const ops = [];
    for (let i = 0; i < 50; i++) {
      const options = body(`/bin/sleep ${1000 + i}`);
      const hash = unitHash(options);
      ops.push({ type: 'put' as const, key: registry.keys.body(hash), value: JSON.stringify({ options }) });
      ops.push({
        type: 'put' as const,
        key: registry.keys.placement(ME, `u${i}.service`),
        value: JSON.stringify({ hash, desiredState: 'launched' }),
      });
    }
    await kv.txn([], ops.slice(0, 100));
    await eventually(
      async () => [...(await reported()).values()].filter((s) => s === 'active/running').length === 50,
    );
    assert.equal(manager.calls.writeAndLink, 1);
    assert.equal(manager.calls.linkedFiles, 50);
    assert.equal(manager.calls.reload, 0);
    assert.equal(manager.calls.startUnit, 50);
    assert.deepEqual(manager.staleStarts, []);
    assert.equal(bodyReads, 50);
    assert.equal(maxInFlight, 16);
  });

  it('reloads once when systemd already knows a unit (changed bodies, unloads)', async () => {
    await startAgent();
    await place('k1.service', 'launched', '/bin/sleep 1');
    await place('k2.service', 'launched', '/bin/sleep 2');
    await eventually(() => manager.status('k2.service').activeState === 'active');
    manager.resetCounters();
    const ops = [];
    for (const [unit, cmd] of [
      ['k1.service', '/bin/sleep 11'],
      ['k2.service', '/bin/sleep 22'],
    ] as const) {
      const options = body(cmd);
      const hash = unitHash(options);
      ops.push({ type: 'put' as const, key: registry.keys.body(hash), value: JSON.stringify({ options }) });
      ops.push({
        type: 'put' as const,
        key: registry.keys.placement(ME, unit),
        value: JSON.stringify({ hash, desiredState: 'launched' }),
      });
    }
    await kv.txn([], ops);
    await eventually(
      () =>
        /sleep 22/.test(manager.loadedText('k2.service') ?? '') &&
        manager.status('k2.service').activeState === 'active',
    );
    assert.equal(manager.calls.reload, 1);
    assert.deepEqual(manager.staleStarts, [], 'never started from an old definition');
  });

  it('stops on loaded, unloads when no longer placed here, and withdraws the state', async () => {
    await startAgent();
    await place('a.service', 'launched');
    await eventually(async () => (await reported()).get('a.service') === 'active/running');
    await place('a.service', 'loaded');
    await eventually(async () => (await reported()).get('a.service') === 'inactive/dead');
    await unplace('a.service');
    await eventually(async () => !(await reported()).has('a.service'));
    assert.equal(manager.unitFiles().has('a.service'), false);
  });

  it('a changed unit body is unloaded, loaded and started again', async () => {
    await startAgent();
    await place('c.service', 'launched', '/bin/sleep 1');
    await eventually(() => manager.status('c.service').activeState === 'active');
    const h2 = await place('c.service', 'launched', '/bin/sleep 2');
    await eventually(async () => (await registry.listStates({ unitName: 'c.service' }))[0]?.hash === h2);
    assert.match(manager.loadedText('c.service') ?? '', /sleep 2/);
    assert.equal(manager.status('c.service').activeState, 'active');
  });

  it('ignores placements for other machines', async () => {
    await startAgent();
    await place('other.service', 'launched', undefined, 'bbbbbbbb');
    await place('mine.service', 'launched');
    await eventually(() => manager.status('mine.service').activeState === 'active');
    assert.equal(manager.unitFiles().has('other.service'), false);
  });

  it('restart: adopts running units without restarting them (R4)', async () => {
    const first = await startAgent();
    await place('keep.service', 'launched');
    await eventually(() => manager.status('keep.service').activeState === 'active');
    await first.stop();
    manager.resetCounters();
    await startAgent();
    await eventually(async () => (await reported()).get('keep.service') === 'active/running');
    await new Promise((r) => setImmediate(r));
    assert.equal(manager.calls.startUnit, 0);
    assert.equal(manager.calls.stopUnit, 0);
    assert.equal(manager.calls.unload, 0);
  });

  it('etcd unreachable at start: nothing is stopped; reconciling begins when etcd answers (R3)', async () => {
    const first = await startAgent();
    await place('run.service', 'launched');
    await eventually(() => manager.status('run.service').activeState === 'active');
    await first.stop();
    manager.resetCounters();
    kv.unavailable = true;
    const second = await startAgent();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(second.state, 'starting', 'placements not readable yet');
    assert.equal(manager.calls.stopUnit + manager.calls.unload, 0);
    kv.unavailable = false;
    await eventually(() => second.state === 'running', { timeoutMs: 3000 });
    await unplace('run.service');
    await eventually(() => !manager.unitFiles().has('run.service'));
  });

  it("systemd's bus restarts: the agent reconnects on its own and reports what changed meanwhile", async () => {
    // fleetd wires SystemdManager's onDisconnect to the agent the same way.
    const wired: { agent?: Agent } = {};
    manager = new FakeUnitManager({ onDisconnect: (err) => wired.agent?.unitManagerLost(err) });
    wired.agent = await startAgent();
    await place('watched.service', 'launched');
    await eventually(async () => (await reported()).get('watched.service') === 'active/running');
    await manager.settled();
    manager.disconnect();
    // A change behind fleet's back while nobody listens (an admin, a crash); the agent is idle.
    manager.setUnitState('watched.service', { activeState: 'failed', subState: 'failed', mainPID: 0 });
    await eventually(async () => (await reported()).get('watched.service') === 'failed/failed', {
      timeoutMs: 3000,
      message: 'the state published after the bus came back',
    });
    assert.equal(manager.isDisconnected, false);
  });

  describe('rejoining after the machine was away (its lease lost, e.g. cut off from etcd)', () => {
    const placeBody = async (unit: string, text: string) => {
      const options = parseUnitFile(text);
      const hash = unitHash(options);
      await kv.txn(
        [],
        [
          { type: 'put', key: registry.keys.body(hash), value: JSON.stringify({ options }) },
          {
            type: 'put',
            key: registry.keys.placement(ME, unit),
            value: JSON.stringify({ hash, desiredState: 'launched' }),
          },
        ],
      );
    };
    const GLOBAL = '[Service]\nExecStart=/bin/sleep 1000\n\n[X-Fleet]\nGlobal=true\n';
    const PINNED = `[Service]\nExecStart=/bin/sleep 1001\n\n[X-Fleet]\nMachineID=${ME.slice(0, 8)}\n`;
    const MOVABLE = '[Service]\nExecStart=/bin/sleep 1002\n';

    /** An agent whose machine is registered (lease L) until `away()`; `back()` registers it again. */
    const rejoiningAgent = async (rejoinGraceMs: number) => {
      let lease: string | undefined = session.lease.id;
      const agent = new Agent({
        registry,
        machineID: ME,
        manager,
        leaseID: () => lease,
        retryDelayMs: 20,
        rejoinGraceMs,
      });
      agents.push(agent);
      await agent.start();
      agent.machineRegistered();
      await placeBody('g.service', GLOBAL);
      await placeBody('pinned.service', PINNED);
      await placeBody('movable.service', MOVABLE);
      await eventually(() =>
        ['g.service', 'pinned.service', 'movable.service'].every(
          (u) => manager.status(u).activeState === 'active',
        ),
      );
      return {
        agent,
        away: () => (lease = undefined),
        back: () => {
          lease = session.lease.id;
          agent.machineRegistered();
        },
      };
    };

    it('units that can run only here keep running while the engine re-places them; moved units stop at once', async () => {
      const { back, away } = await rejoiningAgent(10_000);
      manager.resetCounters();
      away();
      // The engine saw the machine gone: it removed every placement (and moved movable.service).
      for (const u of ['g.service', 'pinned.service', 'movable.service']) await unplace(u);
      await eventually(() => !manager.unitFiles().has('movable.service'), { message: 'moved unit unloaded' });
      back();
      // The engine sees the machine again and places what can run only here.
      await placeBody('g.service', GLOBAL);
      await placeBody('pinned.service', PINNED);
      await eventually(async () => (await reported()).get('pinned.service') === 'active/running');
      await manager.settled();
      assert.equal(manager.status('g.service').activeState, 'active');
      assert.equal(manager.status('pinned.service').activeState, 'active');
      const ops = manager.operations.map((o) => `${o.op} ${o.units.join(',')}`);
      assert.ok(ops.includes('unload movable.service'), ops.join('; '));
      assert.deepEqual(
        ops.filter((o) => /g\.service|pinned\.service/.test(o)),
        [],
        'the units that can run only here were not touched',
      );
    });

    it('a kept unit the engine does not place again is unloaded when the grace period ends', async () => {
      const { back, away } = await rejoiningAgent(300);
      away();
      await unplace('g.service');
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(manager.status('g.service').activeState, 'active', 'kept while away');
      back();
      await eventually(() => !manager.unitFiles().has('g.service'), {
        timeoutMs: 3000,
        message: 'unloaded after the grace period',
      });
    });

    it('while registered and settled, a global unit no longer placed here is unloaded at once', async () => {
      await rejoiningAgent(0);
      await unplace('g.service');
      await eventually(() => !manager.unitFiles().has('g.service'));
    });
  });

  it('does not act on placements before the machine has registered: its ID may be another live machine’s', async () => {
    let lease: string | undefined = undefined;
    const agent = await startAgent(() => lease);
    await place('p.service', 'launched');
    await eventually(() => agent.state === 'running');
    agent.trigger();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(agent.reconcileCount, 0);
    assert.equal(manager.unitFiles().has('p.service'), false);
    assert.equal(manager.calls.startUnit, 0);
    // fleetd registered the machine (a duplicate ID never gets here).
    lease = session.lease.id;
    agent.machineRegistered();
    await eventually(async () => (await reported()).get('p.service') === 'active/running');
  });

  it('holds state reports while unregistered and publishes them under the new lease', async () => {
    let lease: string | undefined = session.lease.id;
    const agent = await startAgent(() => lease);
    await eventually(() => agent.state === 'running');
    lease = undefined; // the lease was lost (a partition): the agent goes on acting on what it sees
    await place('p.service', 'launched');
    await eventually(() => manager.status('p.service').activeState === 'active');
    assert.equal((await reported()).size, 0);
    lease = session.lease.id;
    agent.republishStates();
    await eventually(async () => (await reported()).get('p.service') === 'active/running');
  });

  it('a unit unloaded and loaded again while the withdrawal is being published gets its state back', async () => {
    const agent = await startAgent();
    await place('u.service', 'loaded');
    await eventually(async () => (await reported()).get('u.service') === 'inactive/dead');
    // Hold state writes: the withdrawal of the unloaded unit stays in flight.
    const putStates = registry.putStates.bind(registry);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    let writes = 0;
    registry.putStates = async (...args: Parameters<Registry['putStates']>) => {
      writes++;
      await gate;
      return putStates(...args);
    };
    try {
      await unplace('u.service');
      await eventually(() => writes === 1, { message: 'the withdrawal is being written' });
      await place('u.service', 'loaded'); // the same body, the same systemd state as before
      await eventually(() => manager.unitFiles().has('u.service'));
      await manager.settled();
    } finally {
      release();
    }
    assert.ok(await agent.flushed(), 'the held writes went through');
    await eventually(async () => (await reported()).get('u.service') === 'inactive/dead', {
      timeoutMs: 3000,
      message: 'the state of the loaded unit is published again',
    });
  });

  it('a status reply older than a change already heard does not overwrite it', async () => {
    await startAgent();
    // systemd answers ListUnitsByNames, then the unit changes and the signal is dispatched before
    // the agent resumes from the reply (dbus-next dispatches every message of a read at once).
    const statuses = manager.statuses.bind(manager);
    manager.statuses = async (names) => {
      const reply = await statuses(names);
      await manager.settled();
      return reply;
    };
    await place('late.service', 'launched');
    await eventually(() => manager.status('late.service').activeState === 'active');
    await eventually(async () => (await reported()).get('late.service') === 'active/running', {
      timeoutMs: 3000,
      message: 'the published state is the latest one',
    });
  });

  it('purge unloads everything (a machine leaving the cluster)', async () => {
    const agent = await startAgent();
    await place('x.service', 'launched');
    await place('y.service', 'loaded');
    await eventually(() => manager.unitFiles().size === 2);
    await agent.purge();
    assert.equal(manager.unitFiles().size, 0);
  });

  it('a start that settles quickly costs one state write; a slow one publishes activating after a short wait', async () => {
    const writes: string[] = [];
    const w = kv.watchPrefix(registry.keys.statesPrefix, (await kv.currentRevision()) + 1, {
      onEvents: (evs) => {
        for (const e of evs)
          if (e.type === 'put')
            writes.push(`${e.kv.key.split('/').at(-2)}:${JSON.parse(e.kv.value).activeState}`);
      },
      onReset: () => undefined,
    });
    await startAgent();
    await place('quick.service', 'launched');
    await eventually(async () => (await reported()).get('quick.service') === 'active/running');
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(
      writes.filter((x) => x.startsWith('quick.service')),
      ['quick.service:active'],
    );

    const slow = new FakeUnitManager({ transitionDelayMs: 600 });
    for (const a of agents) await a.stop();
    manager = slow;
    await startAgent();
    await place('slow.service', 'launched');
    await eventually(async () => (await reported()).get('slow.service') === 'activating/start', {
      timeoutMs: 2000,
    });
    await eventually(async () => (await reported()).get('slow.service') === 'active/running', {
      timeoutMs: 3000,
    });
    assert.deepEqual(
      writes.filter((x) => x.startsWith('slow.service')),
      ['slow.service:activating', 'slow.service:active'],
    );
    await w.close();
  });
});
