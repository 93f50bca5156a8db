import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { ValidationError } from '@fleet/core';
import { filterTmpfiles } from '../src/host-config.js';
import {
  BOOT_TARGET,
  BOOTED_UNIT,
  MASKED_UNITS,
  type SeedEntry,
  type SeedInput,
  machineSeed,
  renderEnvFile,
} from '../src/seed.js';

const base: SeedInput = {
  machine: 'm2',
  machineID: '0123456789abcdef0123456789abcdef',
  ip: '172.31.7.12',
  etcdEndpoints: ['http://172.31.7.1:2379', 'http://172.31.7.1:12379'],
  services: [{ name: 'fleetd.service', content: '[Service]\nExecStart=/bin/true\n' }],
  env: { FLEET_METADATA: 'region=x' },
  files: { '/etc/fleet/fleet.conf': 'verbosity=1\n' },
};

function byPath(entries: readonly SeedEntry[]): Map<string, SeedEntry> {
  return new Map(entries.map((e) => [e.path, e]));
}

function content(entries: readonly SeedEntry[], path: string): string {
  const e = byPath(entries).get(path);
  assert.ok(e?.kind === 'file', `${path} is a file`);
  return e.content;
}

describe('machine seed', () => {
  const seed = machineSeed(base);
  const paths = byPath(seed);

  it('carries the identity: machine ID, hostname, hosts, and D-Bus reading the same ID', () => {
    assert.equal(content(seed, 'etc/machine-id'), `${base.machineID}\n`);
    assert.equal(content(seed, 'etc/hostname'), 'm2\n');
    assert.match(content(seed, 'etc/hosts'), /^172\.31\.7\.12\tm2$/m);
    assert.deepEqual(paths.get('var/lib/dbus/machine-id'), {
      kind: 'symlink',
      path: 'var/lib/dbus/machine-id',
      target: '/etc/machine-id',
    });
    assert.match(content(seed, 'etc/fstab'), /^#/);
  });

  it('boots a minimal target that wants the services and the boot marker', () => {
    assert.match(
      content(seed, `run/systemd/system/${BOOT_TARGET}`),
      /^Requires=basic\.target dbus\.socket$/m,
    );
    assert.equal(content(seed, 'run/systemd/system/fleetd.service'), base.services[0]?.content);
    for (const unit of ['fleetd.service', BOOTED_UNIT]) {
      const link = paths.get(`run/systemd/system/${BOOT_TARGET}.wants/${unit}`);
      assert.deepEqual(link, {
        kind: 'symlink',
        path: `run/systemd/system/${BOOT_TARGET}.wants/${unit}`,
        target: `/run/systemd/system/${unit}`,
      });
    }
  });

  it('masks the units that would touch the host, including the Debian etcd.service', () => {
    for (const unit of [
      'etcd.service',
      'systemd-machine-id-commit.service',
      'systemd-sysctl.service',
      'systemd-modules-load.service',
      'systemd-binfmt.service',
      'systemd-remount-fs.service',
    ]) {
      assert.ok(unit in MASKED_UNITS, unit);
      assert.deepEqual(paths.get(`run/systemd/system/${unit}`), {
        kind: 'symlink',
        path: `run/systemd/system/${unit}`,
        target: '/dev/null',
      });
    }
    assert.match(
      content(seed, 'run/systemd/journald.conf.d/fleet-lab.conf'),
      /Storage=volatile\nReadKMsg=no/,
    );
  });

  it('gives a private /dev without kmsg', () => {
    assert.ok(paths.get('dev/null')?.kind === 'device');
    assert.equal(paths.get('dev/kmsg'), undefined);
  });

  it('writes the lab environment and the extras', () => {
    assert.equal(
      content(seed, 'run/fleet-lab/env'),
      [
        'FLEET_ETCD_SERVERS="http://172.31.7.1:2379,http://172.31.7.1:12379"',
        'FLEET_PUBLIC_IP="172.31.7.12"',
        'FLEET_MACHINE_NAME="m2"',
        'FLEET_METADATA="region=x"',
        '',
      ].join('\n'),
    );
    assert.equal(content(seed, 'etc/fleet/fleet.conf'), 'verbosity=1\n');
  });

  it('rejects what cannot work', () => {
    const bad: Array<[string, Partial<SeedInput>]> = [
      ['machine ID', { machineID: 'xyz' }],
      ['all-zero machine ID', { machineID: '0'.repeat(32) }],
      ['template service', { services: [{ name: 'a@.service', content: '' }] }],
      ['invalid unit name', { services: [{ name: 'fleetd', content: '' }] }],
      [
        'duplicate service',
        {
          services: [
            { name: 'a.service', content: '' },
            { name: 'a.service', content: '' },
          ],
        },
      ],
      ['service named like a lab unit', { services: [{ name: 'etcd.service', content: '' }] }],
      ['env overriding the lab', { env: { FLEET_PUBLIC_IP: '1.2.3.4' } }],
      ['bad env name', { env: { 'A-B': 'x' } }],
      ['env with a newline', { env: { A: 'x\ny' } }],
      ['file outside /etc and /run', { files: { '/usr/bin/x': '' } }],
      ['relative file', { files: { 'etc/x': '' } }],
      ['unnormalized file', { files: { '/etc/../usr/x': '' } }],
      ['file over a lab file', { files: { '/etc/machine-id': '' } }],
    ];
    for (const [what, change] of bad) {
      assert.throws(() => machineSeed({ ...base, ...change }), ValidationError, what);
    }
  });
});

describe('environment file', () => {
  it('reads back the same in a shell, whatever the value holds', () => {
    const value = 'a b"c$d`e\\f\'g';
    const file = renderEnvFile({ V: value });
    const r = spawnSync('sh', ['-c', `${file}printf %s "$V"`], { encoding: 'utf8' });
    assert.equal(r.stdout, value);
  });
});

describe('tmpfiles.d filtering', () => {
  it('drops rules for shared paths and keeps comments and private paths', () => {
    const text = [
      '# comment',
      'd /run/x 0755 - - -',
      'Q /home 0755 - - -',
      '',
      'd- /root 0700 - - -',
      'D /tmp',
    ].join('\n');
    assert.equal(filterTmpfiles(text), ['# comment', 'd /run/x 0755 - - -', '', 'D /tmp'].join('\n'));
  });

  it('leaves a file alone when every rule is private', () => {
    assert.equal(filterTmpfiles('d /var/lib/x\nL /etc/mtab - - - - /proc/self/mounts\n'), undefined);
  });
});
