import assert from 'node:assert/strict';
import { lstatSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Metrics } from '@fleet/core';
import { ApiServer, createApiHandler, type ApiHandler } from '@fleet/api';
import { EtcdKv, Registry } from '@fleet/registry';
import { startEtcd, type TestEtcd } from '../../../test/support/etcd.js';
import { eventually, uniqueId } from '../../../test/support/eventually.js';
import { errorOf, jsonBody, options, request, simpleUnit, type Target } from './support.js';

/**
 * The API contract over a real etcd and real listeners: a unix socket (as
 * fleet's fleetctl reaches fleetd) and loopback TCP.
 */
describe('API over etcd, unix socket and TCP', () => {
  let etcd: TestEtcd;
  let kv: EtcdKv;
  let registry: Registry;
  let server: ApiServer;
  let handler: ApiHandler;
  let dir: string;
  let unix: Target;
  let tcp: Target;
  const metrics = new Metrics();

  before(async () => {
    etcd = await startEtcd();
    kv = new EtcdKv({ endpoints: [etcd.endpoint], requestTimeoutMs: 500, dialTimeoutMs: 500 });
    registry = new Registry(kv, { prefix: `/${uniqueId('api')}/` });
    dir = mkdtempSync(join(tmpdir(), 'fleet-api-int-'));
    const socketPath = join(dir, 'fleet.sock');
    handler = createApiHandler({
      registry,
      version: '0.0.1-int',
      metrics,
      tokenLimit: 100,
      log: () => undefined,
    });
    server = new ApiServer(handler, {
      unix: { path: socketPath },
      tcp: { host: '127.0.0.1', port: 0, allowPlaintextLoopback: true },
    });
    await server.start();
    unix = { socketPath };
    tcp = { port: server.tcpPort as number };
  });

  after(async () => {
    await server.close();
    await handler.close();
    await kv.close();
    await etcd.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const fleetctl = { 'User-Agent': 'google-api-go-client/0.5', Host: 'domain-sock' };

  it('serves on a 0660 unix socket', () => {
    const st = lstatSync((unix as { socketPath: string }).socketPath);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);
  });

  it('runs the fleetctl submit → start → list → destroy conversation over the unix socket', async () => {
    const created = await request(unix, 'PUT', '/fleet/v1/units/hello%401.service?alt=json', {
      headers: { ...fleetctl, 'Content-Type': 'application/json' },
      body: JSON.stringify({
        name: 'hello@1.service',
        options: options('[Unit]\nDescription=MyApp\n\n[Service]\nExecStart=/bin/sleep 1000\n'),
      }),
    });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.headers['server'], 'fleetd/0.0.1-int');

    const started = await request(unix, 'PUT', '/fleet/v1/units/hello%401.service?alt=json', {
      headers: { ...fleetctl, 'Content-Type': 'application/json' },
      body: '{"desiredState":"launched","name":"hello@1.service"}',
    });
    assert.equal(started.status, 204);

    // The engine places it and the agent reports it (written here as they would).
    await kv.txn(
      [],
      [
        {
          type: 'put',
          key: registry.keys.placement('m1', 'hello@1.service'),
          value: JSON.stringify({ hash: 'h', desiredState: 'launched' }),
        },
        {
          type: 'put',
          key: registry.keys.state('hello@1.service', 'm1'),
          value: JSON.stringify({
            hash: 'h',
            loadState: 'loaded',
            activeState: 'active',
            subState: 'running',
          }),
        },
      ],
    );
    const unit = await request(unix, 'GET', '/fleet/v1/units/hello%401.service?alt=json', {
      headers: fleetctl,
    });
    assert.equal(unit.status, 200);
    assert.equal(
      unit.text,
      '{"currentState":"launched","desiredState":"launched","machineID":"m1","name":"hello@1.service","options":[' +
        '{"name":"Description","section":"Unit","value":"MyApp"},' +
        '{"name":"ExecStart","section":"Service","value":"/bin/sleep 1000"}]}\n',
    );
    const state = await request(unix, 'GET', '/fleet/v1/state/hello%401.service?alt=json', {
      headers: fleetctl,
    });
    assert.equal(state.status, 200);
    assert.equal(
      state.text,
      '{"hash":"h","machineID":"m1","name":"hello@1.service","systemdActiveState":"active",' +
        '"systemdLoadState":"loaded","systemdSubState":"running"}\n',
    );
    const states = await request(unix, 'GET', '/fleet/v1/state?alt=json', { headers: fleetctl });
    assert.equal((JSON.parse(states.text) as { states: unknown[] }).states.length, 1);

    const gone = await request(unix, 'DELETE', '/fleet/v1/units/hello%401.service?alt=json', {
      headers: fleetctl,
    });
    assert.equal(gone.status, 204);
    const missing = await request(unix, 'GET', '/fleet/v1/units/hello%401.service?alt=json', {
      headers: fleetctl,
    });
    assert.equal(missing.status, 404);
    assert.deepEqual(errorOf(missing), { code: 404, message: 'unit does not exist' });
  });

  it('pages 250 units as fleet does (tokens ZAACAA==, ZAADAA==) over TCP', async () => {
    const names = Array.from({ length: 250 }, (_, i) => `page-${String(i).padStart(3, '0')}.service`);
    for (let i = 0; i < names.length; i += 50) {
      await Promise.all(names.slice(i, i + 50).map((n) => registry.createUnit(n, simpleUnit(n), 'inactive')));
    }
    const seen: string[] = [];
    const tokens: string[] = [];
    let token: string | undefined;
    do {
      const a = await request(
        tcp,
        'GET',
        `/fleet/v1/units?alt=json${token ? `&nextPageToken=${token}` : ''}`,
      );
      assert.equal(a.status, 200, a.text);
      const page = JSON.parse(a.text) as { units?: Array<{ name: string }>; nextPageToken?: string };
      seen.push(...(page.units ?? []).map((u) => u.name));
      token = page.nextPageToken;
      if (token) tokens.push(token);
    } while (token);
    assert.deepEqual(tokens, ['ZAACAA==', 'ZAADAA==']);
    assert.deepEqual(seen, names);
    const bad = await request(tcp, 'GET', '/fleet/v1/units?nextPageToken=nope');
    assert.equal(bad.status, 400);
  });

  it('refuses bad input with fleet’s texts, through the real registry', async () => {
    const put = (name: string, body: unknown) =>
      request(tcp, 'PUT', `/fleet/v1/units/${name}`, jsonBody(body));
    assert.deepEqual(errorOf(await put('x.service', { desiredState: 'launched' })), {
      code: 409,
      message: 'unit does not exist and options field empty',
    });
    assert.deepEqual(
      errorOf(await put('t%40.service', { desiredState: 'launched', options: simpleUnit() })),
      {
        code: 400,
        message: 'cannot activate template "t@.service"',
      },
    );
    assert.equal(
      errorOf(await put('w%C3%A9b.service', { options: simpleUnit() })).message,
      'invalid character "é" in unit name',
    );
    assert.equal(
      (
        await request(tcp, 'PUT', '/fleet/v1/units/x.service', {
          headers: { 'Content-Type': 'text/plain' },
          body: '{}',
        })
      ).status,
      415,
    );
  });

  it('lists machines and patches their metadata', async () => {
    const session = await registry.registerMachine(
      { id: 'int-m1', primaryIP: '10.1.1.1', metadata: { a: '1' } },
      10,
      'o',
    );
    try {
      const patch = await request(
        unix,
        'PATCH',
        '/fleet/v1/machines?alt=json',
        jsonBody([{ op: 'add', path: '/int-m1/metadata/role', value: { value: 'web' } }]),
      );
      assert.equal(patch.status, 204, patch.text);
      const a = await request(unix, 'GET', '/fleet/v1/machines?alt=json');
      assert.equal(
        a.text,
        '{"machines":[{"id":"int-m1","metadata":{"a":"1","role":"web"},"primaryIP":"10.1.1.1"}]}\n',
      );
      assert.equal(
        errorOf(await request(unix, 'PATCH', '/fleet/v1/machines', jsonBody([{ op: 'bad', path: '/x' }])))
          .message,
        'invalid op: expect add, remove, or replace',
      );
    } finally {
      await session.revoke();
    }
  });

  it('counts requests in /metrics', async () => {
    const a = await request(tcp, 'GET', '/metrics');
    assert.equal(a.status, 200);
    assert.match(a.text, /^fleet_api_requests_total\{route="units",method="GET",code="200"\} \d+$/m);
  });

  it('answers 503 "cannot reach etcd" while etcd is down, and recovers without a restart', async () => {
    await etcd.stop();
    try {
      const a = await request(tcp, 'GET', '/fleet/v1/units?alt=json');
      assert.equal(a.status, 503, a.text);
      assert.match(errorOf(a).message, /^cannot reach etcd/);
      const b = await request(
        unix,
        'PUT',
        '/fleet/v1/units/down.service',
        jsonBody({ options: simpleUnit() }),
      );
      assert.equal(b.status, 503);
    } finally {
      await etcd.start();
    }
    await eventually(
      async () => (await request(tcp, 'GET', '/fleet/v1/units/page-000.service')).status === 200,
      {
        timeoutMs: 15_000,
      },
    );
  });
});
