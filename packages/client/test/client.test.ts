import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseUnitFile } from '@fleet/core';
import { ApiError, EndpointUnreachableError, FakeFleetd, FleetClient, ProtocolError } from '@fleet/client';

const options = parseUnitFile('[Service]\nExecStart=/bin/sleep 100\n');
const tmp = mkdtempSync(join(tmpdir(), 'fleet-client-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

async function withFake<T>(
  fn: (fake: FakeFleetd, client: FleetClient) => Promise<T>,
  opts: { unix?: boolean; pageSize?: number; prefix?: string } = {},
): Promise<T> {
  const fake = new FakeFleetd({ pageSize: opts.pageSize, pathPrefix: opts.prefix });
  const endpoint = opts.unix
    ? await fake.listenUnix(join(tmp, `f${Math.random().toString(36).slice(2)}.sock`))
    : await fake.listenTcp();
  const client = new FleetClient({ endpoint });
  try {
    return await fn(fake, client);
  } finally {
    client.close();
    await fake.close();
  }
}

describe('FleetClient on the wire (fleet-compat §6)', () => {
  it('over a unix socket sends Host: domain-sock and ?alt=json', async () => {
    await withFake(
      async (fake, client) => {
        assert.deepEqual(await client.listUnits(), []);
        const [req] = fake.requests;
        assert.equal(req?.url, '/fleet/v1/units?alt=json');
        assert.equal(req?.headers.host, 'domain-sock');
      },
      { unix: true },
    );
  });

  it('creates with {"name","options"} and changes state with {"desiredState","name"}, names percent-encoded', async () => {
    await withFake(async (fake, client) => {
      fake.addMachine({ id: 'm1' });
      await client.createUnit('web@1.service', options);
      await client.setUnitTargetState('web@1.service', 'launched');
      const puts = fake.requestsTo('PUT', '/fleet/v1/units/');
      assert.equal(puts.length, 2);
      assert.equal(puts[0]?.url, '/fleet/v1/units/web%401.service?alt=json');
      assert.equal(
        puts[0]?.body,
        '{"name":"web@1.service","options":[{"name":"ExecStart","section":"Service","value":"/bin/sleep 100"}]}',
      );
      assert.equal(puts[0]?.headers['content-type'], 'application/json');
      assert.equal(puts[1]?.body, '{"desiredState":"launched","name":"web@1.service"}');
      const unit = await client.getUnit('web@1.service');
      assert.equal(unit?.desiredState, 'launched');
      assert.equal(unit?.currentState, 'launched');
    });
  });

  it('adds desiredState to a create only when asked, keys still alphabetical', async () => {
    await withFake(async (fake, client) => {
      await client.createUnit('a.service', options, 'loaded');
      assert.match(
        fake.requests[0]?.body ?? '',
        /^\{"desiredState":"loaded","name":"a.service","options":\[/,
      );
    });
  });

  it('follows nextPageToken until it is absent', async () => {
    await withFake(
      async (fake, client) => {
        for (const n of ['a', 'b', 'c', 'd', 'e']) fake.addUnit({ name: `${n}.service`, options });
        const units = await client.listUnits();
        assert.deepEqual(
          units.map((u) => u.name),
          ['a.service', 'b.service', 'c.service', 'd.service', 'e.service'],
        );
        assert.deepEqual(
          fake.requests.map((r) => r.url),
          [
            '/fleet/v1/units?alt=json',
            '/fleet/v1/units?alt=json&nextPageToken=AgACAA%3D%3D',
            '/fleet/v1/units?alt=json&nextPageToken=AgADAA%3D%3D',
          ],
        );
      },
      { pageSize: 2 },
    );
  });

  it('keeps the endpoint path prefix', async () => {
    await withFake(
      async (fake, client) => {
        fake.addMachine({ id: 'm1', primaryIP: '10.0.0.1' });
        assert.deepEqual(await client.listMachines(), [{ id: 'm1', primaryIP: '10.0.0.1' }]);
        assert.equal(fake.requests[0]?.url, '/prefix/fleet/v1/machines?alt=json');
      },
      { prefix: '/prefix' },
    );
  });

  it('maps 404 on GET units/{n} and state/{n} to undefined', async () => {
    await withFake(async (_fake, client) => {
      assert.equal(await client.getUnit('nope.service'), undefined);
      assert.equal(await client.getUnitState('nope.service'), undefined);
    });
  });

  it('filters states and reads one state', async () => {
    await withFake(async (fake, client) => {
      fake.addMachine({ id: 'm1' });
      await client.createUnit('a.service', options, 'launched');
      await client.createUnit('b.service', options, 'loaded');
      assert.deepEqual(
        (await client.listUnitStates({ unitName: 'b.service' })).map((s) => s.name),
        ['b.service'],
      );
      assert.match(fake.requests.at(-1)?.url ?? '', /\?alt=json&unitName=b.service$/);
      assert.equal((await client.getUnitState('a.service'))?.systemdActiveState, 'active');
    });
  });

  it('patches machine metadata and destroys units', async () => {
    await withFake(async (fake, client) => {
      fake.addMachine({ id: 'm1' });
      await client.patchMachineMetadata([{ op: 'add', path: '/m1/metadata/role', value: { value: 'web' } }]);
      assert.deepEqual(fake.machines.get('m1')?.metadata, { role: 'web' });
      assert.equal(
        fake.requests[0]?.body,
        '[{"op":"add","path":"/m1/metadata/role","value":{"value":"web"}}]',
      );
      await client.createUnit('a.service', options);
      await client.destroyUnit('a.service');
      assert.equal(fake.units.size, 0);
    });
  });

  it('calls the unit-command routes', async () => {
    await withFake(async (fake, client) => {
      fake.addUnit({ name: 'a.service', options });
      fake.unitCommand = (unit, command, query) => ({
        exitCode: command === 'status' ? 3 : 0,
        output: `${command} ${unit.name} ${query.toString()}`,
      });
      assert.deepEqual(await client.unitStatus('a.service'), {
        exitCode: 3,
        output: 'status a.service alt=json',
      });
      assert.deepEqual(await client.unitJournal('a.service', { lines: 5, output: 'cat' }), {
        exitCode: 0,
        output: 'journal a.service alt=json&lines=5&output=cat',
      });
      assert.equal(fake.requests[0]?.url, '/fleet/v1/x-unit-commands/a.service/status?alt=json');
    });
  });
});

describe('FleetClient errors', () => {
  it('non-2xx → ApiError with fleet text', async () => {
    await withFake(async (_fake, client) => {
      await assert.rejects(client.destroyUnit('nope.service'), (err: unknown) => {
        assert.ok(err instanceof ApiError);
        assert.equal(err.status, 404);
        assert.equal(err.kind, 'not-found');
        assert.equal(err.message, 'googleapi: Error 404: unit does not exist');
        return true;
      });
      await assert.rejects(
        client.setUnitTargetState('nope.service', 'loaded'),
        /googleapi: Error 409: unit does not exist and options field empty/,
      );
    });
  });

  it('503 says fleetd cannot reach etcd and is retryable', async () => {
    await withFake(async (fake, client) => {
      fake.failure = { status: 503, message: 'service unavailable' };
      await assert.rejects(client.listMachines(), (err: unknown) => {
        assert.ok(err instanceof ApiError);
        assert.equal(err.message, 'googleapi: Error 503: service unavailable (fleetd cannot reach etcd)');
        assert.equal(err.retryable, true);
        return true;
      });
      fake.failure = { status: 503, message: 'cannot reach etcd: timeout' };
      await assert.rejects(client.listMachines(), {
        message: 'googleapi: Error 503: cannot reach etcd: timeout',
      });
    });
  });

  it('a missing socket is unreachable, naming the endpoint', async () => {
    const sock = join(tmp, 'missing.sock');
    const client = new FleetClient({ endpoint: `unix://${sock}` });
    await assert.rejects(client.listUnits(), (err: unknown) => {
      assert.ok(err instanceof EndpointUnreachableError);
      assert.equal(
        err.message,
        `cannot reach fleetd at unix://${sock}: ${sock} does not exist (is fleetd running?)`,
      );
      return true;
    });
    client.close();
  });

  it('a refused TCP port is unreachable', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const client = new FleetClient({ endpoint: `http://127.0.0.1:${port}` });
    await assert.rejects(client.listUnits(), {
      name: 'EndpointUnreachableError',
      message: `cannot reach fleetd at http://127.0.0.1:${port}: connection refused (is fleetd running?)`,
    });
    client.close();
  });

  it('a silent server times out after requestTimeoutMs', async () => {
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    const client = new FleetClient({ endpoint: `http://127.0.0.1:${port}`, requestTimeoutMs: 150 });
    const started = Date.now();
    await assert.rejects(client.listUnits(), {
      name: 'EndpointUnreachableError',
      message: `cannot reach fleetd at http://127.0.0.1:${port}: no answer within 0.15s (--request-timeout)`,
    });
    assert.ok(Date.now() - started < 2000);
    client.close();
    silent.close();
  });

  it('a 200 that is not API v1 is a ProtocolError', async () => {
    const junk = http.createServer((_req, res) => res.writeHead(200).end('{"units":"nope"}'));
    await new Promise<void>((r) => junk.listen(0, '127.0.0.1', r));
    const port = (junk.address() as { port: number }).port;
    const client = new FleetClient({ endpoint: `http://127.0.0.1:${port}` });
    await assert.rejects(client.listUnits(), (err: unknown) => {
      assert.ok(err instanceof ProtocolError);
      assert.match(err.message, /^unexpected response from fleetd at http:\/\/127\.0\.0\.1:\d+ for units: /);
      assert.ok(!err.message.includes('\n'));
      return true;
    });
    client.close();
    junk.closeAllConnections();
    junk.close();
  });

  it('reports each request to onRequest', async () => {
    const fake = new FakeFleetd();
    const endpoint = await fake.listenTcp();
    const events: string[] = [];
    const client = new FleetClient({
      endpoint,
      onRequest: (e) => events.push(`${e.method} ${e.path} ${e.status}`),
    });
    await client.getUnit('x.service');
    assert.deepEqual(events, ['GET /fleet/v1/units/x.service?alt=json 404']);
    client.close();
    await fake.close();
  });
});
