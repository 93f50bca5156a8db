import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ValidationError } from '@fleet/core';
import { loadConfig, parseArgs, parseDurationSeconds, parseMetadata, parseServerList } from '@fleet/fleetd';

const dir = mkdtempSync(join(tmpdir(), 'fleetd-config-'));
const file = (name: string, text: string): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const fail = (fn: () => unknown, message: RegExp) =>
  assert.throws(fn, (err: unknown) => err instanceof ValidationError && message.test(err.message));

describe('fleetd configuration (fleet-compat §7)', () => {
  it('defaults: fleet values, except ours (agent_ttl 5 s)', () => {
    const { config } = loadConfig({ configPath: file('empty.conf', '') });
    assert.deepEqual(config.etcd_servers, ['http://127.0.0.1:2379', 'http://127.0.0.1:4001']);
    assert.equal(config.etcd_key_prefix, '/_coreos.com/fleet/');
    assert.equal(config.etcd_request_timeout, 1);
    assert.equal(config.agent_ttl, 5);
    assert.equal(config.token_limit, 100);
    assert.equal(config.disable_engine, false);
    assert.equal(config.units_directory, '/run/fleet/units/');
    assert.equal(config.socket_path, '/var/run/fleet.sock');
    assert.deepEqual(config.metadata, {});
  });

  it('reads fleet.conf (comments, quotes) and applies flags > env > file', () => {
    const path = file(
      'fleet.conf',
      '# comment\n; another\netcd_servers="http://10.0.0.1:2379,http://10.0.0.2:2379"\nmetadata=region=us,disk=ssd\nagent_ttl=30s\npublic_ip=10.0.0.5\ndisable_engine=true\n',
    );
    const { config } = loadConfig({
      configPath: path,
      env: { FLEET_AGENT_TTL: '10s', FLEET_PUBLIC_IP: '10.0.0.6' },
      flags: { 'public-ip': '10.0.0.7' },
    });
    assert.deepEqual(config.etcd_servers, ['http://10.0.0.1:2379', 'http://10.0.0.2:2379']);
    assert.deepEqual(config.metadata, { region: 'us', disk: 'ssd' });
    assert.equal(config.agent_ttl, 10, 'env beats file');
    assert.equal(config.public_ip, '10.0.0.7', 'flag beats env');
    assert.equal(config.disable_engine, true);
  });

  it('accepts the JSON-ish server list', () => {
    assert.deepEqual(parseServerList('["http://a:1","http://b:2"]'), ['http://a:1', 'http://b:2']);
    assert.equal(parseServerList('ftp://x'), undefined);
    assert.equal(parseServerList(''), undefined);
  });

  it('parses Go durations and plain seconds', () => {
    assert.equal(parseDurationSeconds('30s'), 30);
    assert.equal(parseDurationSeconds('500ms'), 0.5);
    assert.equal(parseDurationSeconds('1m30s'), 90);
    assert.equal(parseDurationSeconds('2.5'), 2.5);
    assert.equal(parseDurationSeconds('5 s'), undefined);
    assert.equal(parseDurationSeconds('fast'), undefined);
  });

  it('parses metadata strictly', () => {
    assert.deepEqual(parseMetadata('a=1, b=2'), { a: '1', b: '2' });
    assert.equal(parseMetadata('a'), undefined);
    assert.equal(parseMetadata('a='), undefined);
    assert.equal(parseMetadata('=1'), undefined);
  });

  it('refuses invalid values naming the key and the value (fleet ignored them)', () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ agent_ttl: 'soon' }, /^invalid value for agent_ttl: "soon"/],
      [{ agent_ttl: '0s' }, /^invalid value for agent_ttl: "0s"/],
      [{ token_limit: '0' }, /^invalid value for token_limit: "0"/],
      [{ disable_engine: 'maybe' }, /^invalid value for disable_engine: "maybe"/],
      [{ etcd_servers: 'localhost:2379' }, /^invalid value for etcd_servers: "localhost:2379"/],
      [{ metadata: 'region' }, /^invalid value for metadata: "region"/],
      [{ public_ip: 'example.com' }, /^invalid value for public_ip: "example.com"/],
      [{ units_directory: 'relative/dir' }, /^invalid value for units_directory: "relative\/dir"/],
      [{ listen: '0.0.0.0' }, /^invalid value for listen: "0.0.0.0"/],
      [{ etcd_key_prefix: 'no-slash' }, /^invalid value for etcd_key_prefix: "no-slash"/],
    ];
    for (const [flags, message] of cases)
      fail(() => loadConfig({ configPath: file('e.conf', ''), flags }), message);
  });

  it('refuses unknown keys and a missing --config file', () => {
    fail(() => loadConfig({ configPath: file('u.conf', 'no_such_key=1\n') }), /unknown key "no_such_key"/);
    fail(
      () => loadConfig({ configPath: file('e2.conf', ''), flags: { bogus: '1' } }),
      /unknown flag --bogus/,
    );
    fail(() => loadConfig({ configPath: join(dir, 'missing.conf') }), /cannot read config file/);
  });
});

describe('fleetd arguments', () => {
  it('parses --k=v, --k v, -k=v, --config and --version', () => {
    const a = parseArgs([
      '--etcd_servers=http://x:1',
      '--metadata',
      'a=b',
      '-verbosity=2',
      '--config',
      '/etc/x.conf',
      '--version',
    ]);
    assert.deepEqual(a.flags, { etcd_servers: 'http://x:1', metadata: 'a=b', verbosity: '2' });
    assert.equal(a.configPath, '/etc/x.conf');
    assert.equal(a.version, true);
  });
  it('refuses a flag without a value and stray arguments', () => {
    assert.throws(() => parseArgs(['--metadata']), /needs a value/);
    assert.throws(() => parseArgs(['start']), /unexpected argument/);
  });
});
