import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConflictError, ValidationError } from '@fleet/core';
import { ApiServer, createApiHandler, isLoopbackHost } from '@fleet/api';
import { MemoryKv, Registry } from '@fleet/registry';
import { request } from './support.js';

const handler = createApiHandler({
  registry: new Registry(new MemoryKv()),
  version: '9.9.9',
  log: () => undefined,
});

describe('ApiServer: unix socket', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'fleet-api-sock-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves on a socket that is not world-accessible (0660), and removes it on close (twice is fine)', async () => {
    const path = join(dir, 'fleet.sock');
    const server = new ApiServer(handler, { unix: { path }, version: '9.9.9' });
    await server.start();
    assert.equal(server.state, 'listening');
    const st = lstatSync(path);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);
    const a = await request({ socketPath: path }, 'GET', '/fleet/v1/units?alt=json', {
      headers: { Host: 'domain-sock', 'User-Agent': 'google-api-go-client/0.5' },
    });
    assert.equal(a.status, 200);
    assert.equal(a.headers['server'], 'fleetd/9.9.9');
    await server.close();
    await server.close();
    assert.equal(server.state, 'closed');
    assert.equal(existsSync(path), false);
  });

  it('honours a stricter mode and refuses a world-writable one', async () => {
    const path = join(dir, 'strict.sock');
    const server = new ApiServer(handler, { unix: { path, mode: 0o600 } });
    await server.start();
    assert.equal(lstatSync(path).mode & 0o777, 0o600);
    await server.close();
    assert.throws(() => new ApiServer(handler, { unix: { path, mode: 0o666 } }), /world-writable/);
  });

  it('replaces a stale socket but refuses a live one or a regular file', async () => {
    // What a crashed fleetd leaves: a socket file nobody listens on.
    const stale = join(dir, 'stale.sock');
    execFileSync(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.exit(0))`,
    ]);
    assert.ok(lstatSync(stale).isSocket());
    const fresh = new ApiServer(handler, { unix: { path: stale } });
    await fresh.start();
    assert.equal((await request({ socketPath: stale }, 'GET', '/fleet/v1/machines')).status, 200);
    await fresh.close();

    // Another process serving there: refused, and its socket left alone.
    const busy = join(dir, 'busy.sock');
    const holder: Server = createServer((c) => c.destroy());
    await new Promise<void>((r) => holder.listen(busy, () => r()));
    try {
      const second = new ApiServer(handler, { unix: { path: busy } });
      await assert.rejects(second.start(), (err: unknown) => err instanceof ConflictError);
      assert.equal(second.state, 'closed');
      assert.ok(lstatSync(busy).isSocket());
    } finally {
      await new Promise<void>((r) => holder.close(() => r()));
    }

    const file = join(dir, 'not-a-socket');
    writeFileSync(file, 'keep me');
    await assert.rejects(new ApiServer(handler, { unix: { path: file } }).start(), ValidationError);
    assert.equal(readFileSync(file, 'utf8'), 'keep me');
  });

  it('answers malformed HTTP with a JSON 400 instead of dropping it', async () => {
    const path = join(dir, 'raw.sock');
    const server = new ApiServer(handler, { unix: { path }, version: '9.9.9' });
    await server.start();
    try {
      const reply = await new Promise<string>((resolve) => {
        const s = connect(path, () => s.write('NOT HTTP AT ALL\r\n\r\n'));
        let text = '';
        s.on('data', (d: Buffer) => (text += d.toString()));
        s.on('close', () => resolve(text));
      });
      assert.match(reply, /^HTTP\/1\.1 400 Bad Request\r\n/);
      assert.match(reply, /Server: fleetd\/9\.9\.9\r\n/);
      assert.match(reply, /\{"error":\{"code":400,"message":"malformed HTTP request: bad request"\}\}/);
    } finally {
      await server.close();
    }
  });
});

describe('ApiServer: TCP', () => {
  it('knows loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) {
      assert.equal(isLoopbackHost(h), true, h);
    }
    for (const h of ['0.0.0.0', '10.0.0.1', '::', 'example.com', '128.0.0.1']) {
      assert.equal(isLoopbackHost(h), false, h);
    }
  });

  it('refuses plain HTTP unless asked for, and on any non-loopback address', () => {
    assert.throws(
      () => new ApiServer(handler, { tcp: { host: '127.0.0.1', port: 0 } }),
      /needs TLS with client certificates/,
    );
    assert.throws(
      () => new ApiServer(handler, { tcp: { host: '0.0.0.0', port: 0, allowPlaintextLoopback: true } }),
      /non-loopback address 0\.0\.0\.0/,
    );
    assert.throws(() => new ApiServer(handler, {}), /needs a unix socket path or a TCP address/);
  });

  it('serves plain HTTP on loopback when explicitly asked', async () => {
    const server = new ApiServer(handler, {
      tcp: { host: '127.0.0.1', port: 0, allowPlaintextLoopback: true },
    });
    await server.start();
    try {
      const port = server.tcpPort;
      assert.ok(port !== undefined && port > 0);
      assert.equal((await request({ port }, 'GET', '/fleet/v1/units')).status, 200);
    } finally {
      await server.close();
    }
  });

  it('with TLS, requires a client certificate from the configured CA', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleet-api-tls-'));
    try {
      const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
      ssl(
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        'ca.key',
        '-out',
        'ca.crt',
        '-days',
        '1',
        '-subj',
        '/CN=test-ca',
      );
      for (const who of ['server', 'client']) {
        ssl(
          'req',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-keyout',
          `${who}.key`,
          '-out',
          `${who}.csr`,
          '-subj',
          `/CN=${who}`,
        );
        writeFileSync(
          join(dir, `${who}.ext`),
          who === 'server' ? 'subjectAltName=IP:127.0.0.1\n' : 'extendedKeyUsage=clientAuth\n',
        );
        ssl(
          'x509',
          '-req',
          '-in',
          `${who}.csr`,
          '-CA',
          'ca.crt',
          '-CAkey',
          'ca.key',
          '-CAcreateserial',
          '-out',
          `${who}.crt`,
          '-days',
          '1',
          '-extfile',
          `${who}.ext`,
        );
      }
      const read = (f: string) => readFileSync(join(dir, f));
      const server = new ApiServer(handler, {
        tcp: {
          host: '127.0.0.1',
          port: 0,
          tls: { cert: read('server.crt'), key: read('server.key'), ca: read('ca.crt') },
        },
      });
      await server.start();
      try {
        const get = (withCert: boolean) =>
          new Promise<number>((resolve, reject) => {
            const req = httpsRequest(
              {
                host: '127.0.0.1',
                port: server.tcpPort,
                path: '/fleet/v1/units?alt=json',
                ca: read('ca.crt'),
                ...(withCert ? { cert: read('client.crt'), key: read('client.key') } : {}),
                agent: false,
              },
              (res) => {
                res.resume();
                resolve(res.statusCode ?? 0);
              },
            );
            req.on('error', reject);
            req.end();
          });
        assert.equal(await get(true), 200);
        await assert.rejects(get(false));
      } finally {
        await server.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
