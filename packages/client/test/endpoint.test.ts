import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ValidationError } from '@fleet/core';
import { DEFAULT_ENDPOINT, parseEndpoint } from '@fleet/client';

describe('parseEndpoint', () => {
  it('reads the default unix socket', () => {
    assert.deepEqual(parseEndpoint(DEFAULT_ENDPOINT), {
      kind: 'unix',
      socketPath: '/var/run/fleet.sock',
      display: 'unix:///var/run/fleet.sock',
    });
  });
  it('takes file:// like unix:// and a bare absolute path as a socket', () => {
    assert.equal(parseEndpoint('file:///tmp/f.sock').kind, 'unix');
    assert.deepEqual(parseEndpoint('/tmp/x.sock'), {
      kind: 'unix',
      socketPath: '/tmp/x.sock',
      display: '/tmp/x.sock',
    });
  });
  it('reads http with port and path prefix', () => {
    assert.deepEqual(parseEndpoint('http://10.0.0.1:49153/prefix/'), {
      kind: 'tcp',
      tls: false,
      host: '10.0.0.1',
      port: 49153,
      pathPrefix: '/prefix',
      display: 'http://10.0.0.1:49153/prefix/',
    });
  });
  it('defaults ports and strips IPv6 brackets', () => {
    const a = parseEndpoint('https://fleet.example');
    assert.equal(a.kind === 'tcp' && a.port, 443);
    assert.equal(a.kind === 'tcp' && a.tls, true);
    const b = parseEndpoint('http://[::1]:8080');
    assert.equal(b.kind === 'tcp' && b.host, '::1');
    assert.equal(b.kind === 'tcp' && b.pathPrefix, '');
  });
  const bad: Array<[string, RegExp]> = [
    ['', /endpoint cannot be empty/],
    ['127.0.0.1:4001', /URL scheme undefined/],
    ['unix://var/run/fleet.sock', /unable to connect to host "var" with scheme "unix"/],
    ['ftp://x', /unsupported scheme "ftp"/],
  ];
  for (const [value, re] of bad) {
    it(`refuses ${JSON.stringify(value)}`, () => {
      assert.throws(
        () => parseEndpoint(value),
        (err: unknown) =>
          err instanceof ValidationError && re.test(err.message) && err.message.includes('invalid endpoint'),
      );
    });
  }
});
