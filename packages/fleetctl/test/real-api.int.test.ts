// fleetctl against the real API server (packages/api) over a real registry
// (MemoryKv, and etcd for the outage case), with a stand-in engine+agent that
// places units on the first machine and reports systemd states. This proves
// that what fleetctl sends is what fleetd accepts, and that it reads what
// fleetd answers — FakeFleetd is only our reading of the contract.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { createApiHandler } from '@fleet/api';
import { EtcdKv, MemoryKv, Registry, type Kv, type MachineSession } from '@fleet/registry';
import { startEtcd } from '../../../test/support/etcd.js';
import { HELLO, MACHINE_A, MACHINE_B, runFleetctl, type RunResult } from './harness.js';

interface RealCluster {
  readonly registry: Registry;
  readonly endpoint: string;
  readonly dir: string;
  /** Units the stand-in engine refuses to place, with the reason it records. */
  readonly unplaceable: Map<string, string>;
  run(args: string[]): Promise<RunResult>;
  close(): Promise<void>;
}

async function startRealCluster(kv: Kv): Promise<RealCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetctl-real-'));
  const registry = new Registry(kv, { prefix: '/fleetctl-test/' });
  const sessions: MachineSession[] = [];
  for (const [id, ip] of [
    [MACHINE_A, '192.168.2.52'],
    [MACHINE_B, '192.168.2.53'],
  ] as const) {
    sessions.push(await registry.registerMachine({ id, primaryIP: ip }, 60, `owner-${id}`));
  }
  const handler = createApiHandler({ registry, version: '9.9.9', log: () => undefined });
  const server: Server = createServer(handler);
  const socketPath = join(dir, 'fleet.sock');
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  const unplaceable = new Map<string, string>();

  // Stand-in for engine and agent: place on machine A, report what systemd would.
  const put = (key: string, value: unknown) =>
    kv.txn([], [{ type: 'put', key, value: JSON.stringify(value) }]);
  const del = (key: string) => kv.txn([], [{ type: 'delete', key }]);
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        const { units } = await registry.listUnits();
        for (const u of units) {
          const placement = registry.keys.placement(MACHINE_A, u.name);
          const state = registry.keys.state(u.name, MACHINE_A);
          const reason = unplaceable.get(u.name);
          if (u.desiredState === 'inactive' || reason !== undefined) {
            await del(placement);
            await del(state);
            if (reason !== undefined) await put(registry.keys.unplaced(u.name), { reason });
            continue;
          }
          const launched = u.desiredState === 'launched';
          await put(placement, { hash: u.hash, desiredState: u.desiredState });
          await put(state, {
            hash: u.hash,
            loadState: 'loaded',
            activeState: launched ? 'active' : 'inactive',
            subState: launched ? 'running' : 'dead',
          });
        }
      } catch {
        // etcd may be down on purpose; try again.
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  })();

  return {
    registry,
    endpoint: `unix://${socketPath}`,
    dir,
    unplaceable,
    run: (args) =>
      runFleetctl(args, {
        cwd: dir,
        env: { FLEETCTL_ENDPOINT: `unix://${socketPath}`, FLEETCTL_REQUEST_TIMEOUT: '1' },
      }),
    close: async () => {
      running = false;
      await loop;
      // Stop the leases' keep-alives, or they hold the process open.
      for (const s of sessions) s.lease.release();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await handler.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('fleetctl against the real API (MemoryKv)', () => {
  let kv: MemoryKv;
  let c: RealCluster;
  beforeEach(async () => {
    kv = new MemoryKv();
    c = await startRealCluster(kv);
    writeFileSync(join(c.dir, 'hello.service'), HELLO);
  });
  afterEach(async () => {
    await c.close();
    await kv.close();
  });

  it('plays the walkthrough: submit, list-unit-files, start, list-units, cat, stop, destroy', async () => {
    assert.deepEqual(await c.run(['submit', 'hello.service']), { code: 0, stdout: '', stderr: '' });
    const files = await c.run(['list-unit-files', '--fields=unit,dstate,state,target,desc']);
    assert.equal(
      files.stdout,
      'UNIT\t\tDSTATE\t\tSTATE\t\tTARGET\tDESC\nhello.service\tinactive\tinactive\t-\tMyApp\n',
    );

    assert.deepEqual(await c.run(['start', 'hello.service']), {
      code: 0,
      stdout: 'Unit hello.service launched on 960a9f62.../192.168.2.52\n',
      stderr: '',
    });
    const units = await c.run(['list-units', '--fields=unit,load,active,sub,machine']);
    assert.equal(
      units.stdout,
      'UNIT\t\tLOAD\tACTIVE\tSUB\tMACHINE\nhello.service\tloaded\tactive\trunning\t960a9f62.../192.168.2.52\n',
    );
    const cat = await c.run(['cat', 'hello.service']);
    assert.equal(
      cat.stdout,
      '[Unit]\nDescription=MyApp\nAfter=docker.service\nRequires=docker.service\n\n[Service]\n' +
        'ExecStart=/usr/bin/docker run busybox /bin/sh -c "while true; do echo Hello World; sleep 1; done"\n',
    );
    assert.deepEqual(await c.run(['stop', 'hello.service']), {
      code: 0,
      stdout: 'Unit hello.service loaded on 960a9f62.../192.168.2.52\n',
      stderr: '',
    });
    assert.deepEqual(await c.run(['unload', 'hello.service']), {
      code: 0,
      stdout: 'Unit hello.service inactive\n',
      stderr: '',
    });
    assert.deepEqual(await c.run(['destroy', 'hello.service']), {
      code: 0,
      stdout: 'Destroyed hello.service\n',
      stderr: '',
    });
    assert.equal((await c.run(['list-unit-files', '--no-legend'])).stdout, '');
  });

  it("shows the engine's reason while a unit waits, and gives up after --block-attempts", async () => {
    c.unplaceable.set('hello.service', 'no machine satisfies MachineMetadata=region=eu');
    const r = await c.run(['start', '--block-attempts=1', 'hello.service']);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^Unit hello.service waiting for a machine: no machine satisfies MachineMetadata=region=eu\n/,
    );
    assert.match(r.stderr, /timed out waiting for unit hello.service to report state launched/);
  });

  it("prints the server's refusals in fleet's shape", async () => {
    assert.equal((await c.run(['start', 'hello.service'])).code, 0);
    // This fleetd was built without unit commands: the route answers 501.
    const r = await c.run(['status', 'hello.service']);
    assert.deepEqual(r, {
      code: 1,
      stdout: '',
      stderr:
        'Error running status of hello.service: googleapi: Error 501: ' +
        'unit commands (status, journal) are not available on this fleetd\n',
    });
    const missing = await c.run(['stop', 'ghost.service']);
    assert.deepEqual(missing, { code: 1, stdout: '', stderr: 'Unit ghost.service does not exist.\n' });
  });
});

describe('fleetctl against the real API when etcd is down', () => {
  it('every command fails with one clear line saying fleetd cannot reach etcd', async () => {
    const etcd = await startEtcd();
    const kv = new EtcdKv({ endpoints: [etcd.endpoint] });
    const c = await startRealCluster(kv);
    try {
      assert.equal((await c.run(['list-machines', '--no-legend'])).code, 0);
      await etcd.stop();
      const r = await c.run(['list-unit-files']);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^Error retrieving list of units from repository: /);
      // Either fleetd answered 503 (it says etcd), or fleetctl gave up waiting for it.
      assert.match(r.stderr, /etcd|no answer within/);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    } finally {
      await c.close();
      await kv.close();
      await etcd.close();
    }
  });
});
