import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ValidationError } from '@fleet/core';
import {
  MAX_MACHINES,
  candidateOctets,
  clusterNameProblem,
  clusterPaths,
  hostLinkName,
  hubEtcdPorts,
  machineAddress,
  machineIndex,
  machineName,
  machinePaths,
  overlaps,
  parseRoutes,
  pathsToKeep,
  preferredOctet,
} from '../src/layout.js';
import { bridgeMac } from '../src/network.js';

describe('cluster names', () => {
  const cases: Array<[string, boolean]> = [
    ['t', true],
    ['demo', true],
    ['t-1a2b', true],
    ['a'.repeat(24), true],
    ['a'.repeat(25), false],
    ['', false],
    ['-a', false],
    ['a-', false],
    ['Demo', false],
    ['a_b', false],
    ['a/b', false],
    ['..', false],
  ];
  for (const [name, ok] of cases) {
    it(`${JSON.stringify(name)} is ${ok ? 'valid' : 'rejected'}`, () => {
      assert.equal(clusterNameProblem(name) === undefined, ok);
    });
  }
});

describe('names derived from a cluster', () => {
  it('keeps every network interface name within 15 characters', () => {
    for (let octet = 0; octet < 256; octet++) assert.ok(hostLinkName(octet).length <= 15);
    const longest = machinePaths('a'.repeat(24), machineName(MAX_MACHINES)).hubLink;
    assert.ok(longest.length <= 15, longest);
  });

  it('puts every cluster in its own state directory and cgroup', () => {
    const a = clusterPaths('a');
    const b = clusterPaths('b');
    assert.notEqual(a.stateDir, b.stateDir);
    assert.notEqual(a.cgroup, b.cgroup);
    assert.equal(machinePaths('a', 'm1').cgroup, `${a.cgroup}/m1`);
    assert.ok(machinePaths('a', 'm1').dir.startsWith(`${a.stateDir}/`));
  });

  it('numbers machines m1, m2 … and parses them back', () => {
    assert.equal(machineName(1), 'm1');
    assert.equal(machineIndex('m12'), 12);
    for (const bad of ['m0', 'm01', 'x1', 'm', `m${MAX_MACHINES + 1}`])
      assert.equal(machineIndex(bad), undefined);
  });

  it('addresses machines from .11 upward below the host address', () => {
    assert.equal(machineAddress(7, 1), '172.31.7.11');
    assert.equal(machineAddress(7, MAX_MACHINES), '172.31.7.253');
  });

  it('gives each bridge a fixed, locally administered unicast MAC address', () => {
    assert.equal(bridgeMac(7), '02:00:ac:1f:07:01');
    assert.equal(bridgeMac(255), '02:00:ac:1f:ff:01');
    const first = parseInt(bridgeMac(0).slice(0, 2), 16);
    assert.equal(first & 0b11, 0b10, 'locally administered, not multicast');
  });

  it('gives etcd members distinct ports on the hub address', () => {
    const ports = [0, 1, 2].flatMap((i) => Object.values(hubEtcdPorts(i)));
    assert.deepEqual(ports, [2379, 2380, 12379, 12380, 22379, 22380]);
  });
});

describe('subnet allocation', () => {
  it('prefers an octet derived from the name, stably', () => {
    assert.equal(preferredOctet('demo'), preferredOctet('demo'));
    assert.equal(candidateOctets('demo', new Set(), [])[0], preferredOctet('demo'));
  });

  it('skips reserved octets and wraps around', () => {
    const start = preferredOctet('x');
    const reserved = new Set([start, (start + 1) % 256]);
    const candidates = candidateOctets('x', reserved, []);
    assert.equal(candidates[0], (start + 2) % 256);
    assert.equal(candidates.length, 254);
    assert.ok(!candidates.some((o) => reserved.has(o)));
  });

  it('skips octets overlapping a host route, and none at all under a covering route', () => {
    const routes = parseRoutes(
      [
        'default via 192.0.2.1 dev eth0',
        '172.31.5.0/24 dev eth1 proto kernel scope link src 172.31.5.9',
        'local 172.31.9.4 dev eth2 table local proto kernel scope host src 172.31.9.4',
        'broadcast 127.255.255.255 dev lo table local',
        'fd00::/64 dev eth0',
      ].join('\n'),
    );
    assert.deepEqual(routes, [
      { network: '172.31.5.0', prefixLength: 24 },
      { network: '172.31.9.4', prefixLength: 32 },
      { network: '127.255.255.255', prefixLength: 32 },
    ]);
    const candidates = candidateOctets('x', new Set(), routes);
    assert.equal(candidates.length, 254);
    assert.ok(!candidates.includes(5) && !candidates.includes(9));
    assert.deepEqual(candidateOctets('x', new Set(), [{ network: '172.16.0.0', prefixLength: 12 }]), []);
  });

  it('knows what overlaps a /24', () => {
    assert.equal(overlaps(3, { network: '172.31.0.0', prefixLength: 16 }), true);
    assert.equal(overlaps(3, { network: '172.31.3.128', prefixLength: 25 }), true);
    assert.equal(overlaps(3, { network: '172.31.4.0', prefixLength: 24 }), false);
    assert.equal(overlaps(3, { network: '10.0.0.0', prefixLength: 8 }), false);
  });
});

describe('paths kept visible inside machines', () => {
  it('keeps only paths that a private mount would hide', () => {
    assert.deepEqual(pathsToKeep(['/work/main', '/tmp/ci/checkout/', '/var/lib/ci', '/tmp/ci/checkout']), [
      '/tmp/ci/checkout',
      '/var/lib/ci',
    ]);
  });

  it('refuses paths that would expose what machines must not share', () => {
    for (const path of ['/tmp', '/var/tmp', '/', '/run', '/etc', '/run/fleet-lab/x', 'relative/path']) {
      assert.throws(() => pathsToKeep([path]), ValidationError, path);
    }
  });
});
