import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InternalError } from '@fleet/core';
import { etcdArgs, etcdMembers } from '../src/etcd.js';
import { formatDescription, table } from '../src/format.js';
import { type ClusterState, parseClusterState } from '../src/state.js';

const state: ClusterState = {
  version: 1,
  name: 'demo',
  createdAt: '2026-01-01T00:00:00.000Z',
  shareNet: false,
  octet: 7,
  hostLink: 'fl-lab-7',
  hub: { pid: 100, startTime: 5 },
  cgroupRoot: '/sys/fs/cgroup',
  keepPaths: [],
  services: ['fleetd.service'],
  etcd: { members: etcdMembers(1, { kind: 'hub', octet: 7 }, '/run/fleet-lab/demo') },
  machines: [
    {
      name: 'm1',
      index: 1,
      machineID: 'a'.repeat(32),
      ip: '172.31.7.11',
      status: 'running',
      partitioned: false,
      init: { pid: 200, startTime: 9 },
      wrapper: { pid: 199, startTime: 8 },
    },
    {
      name: 'm2',
      index: 2,
      machineID: 'b'.repeat(32),
      ip: '172.31.7.12',
      status: 'stopped',
      partitioned: true,
    },
  ],
};

describe('state file', () => {
  it('round-trips', () => {
    assert.deepEqual(parseClusterState(JSON.stringify(state)), state);
  });

  it('names the bad field', () => {
    const broken = JSON.parse(JSON.stringify(state)) as { machines: Array<Record<string, unknown>> };
    const first = broken.machines[0];
    assert.ok(first);
    first.init = { pid: -1, startTime: 1 };
    assert.throws(() => parseClusterState(JSON.stringify(broken), 'f'), {
      name: 'InternalError',
      message: 'f: $.machines[0].init.pid is not a non-negative integer',
    });
    first.init = undefined;
    first.status = 'flying';
    assert.throws(() => parseClusterState(JSON.stringify(broken)), /\$\.machines\[0\]\.status is "flying"/);
  });

  it('rejects other versions, non-JSON, and a network without its subnet', () => {
    assert.throws(() => parseClusterState(JSON.stringify({ ...state, version: 2 })), /\$\.version is 2/);
    assert.throws(() => parseClusterState('{'), InternalError);
    const { octet: _octet, ...noOctet } = state;
    assert.throws(() => parseClusterState(JSON.stringify(noOctet)), /octet/);
  });
});

describe('etcd members', () => {
  it('put one or three members on the hub address with fast raft timing', () => {
    const members = etcdMembers(3, { kind: 'hub', octet: 7 }, '/s');
    assert.deepEqual(
      members.map((m) => [m.name, m.clientUrl, m.peerUrl, m.dataDir]),
      [
        ['etcd0', 'http://172.31.7.1:2379', 'http://172.31.7.1:2380', '/s/etcd/etcd0'],
        ['etcd1', 'http://172.31.7.1:12379', 'http://172.31.7.1:12380', '/s/etcd/etcd1'],
        ['etcd2', 'http://172.31.7.1:22379', 'http://172.31.7.1:22380', '/s/etcd/etcd2'],
      ],
    );
    const args = etcdArgs(members, 1, 'tok');
    assert.ok(args.includes('--name=etcd1'));
    assert.ok(args.includes('--heartbeat-interval=10') && args.includes('--election-timeout=100'));
    assert.ok(args.includes('--logger=zap') && args.includes('--log-outputs=stderr'));
    assert.ok(
      args.includes(
        '--initial-cluster=etcd0=http://172.31.7.1:2380,etcd1=http://172.31.7.1:12380,etcd2=http://172.31.7.1:22380',
      ),
    );
  });

  it('use the given loopback ports with shared networking, and refuse 2 members', () => {
    const [m] = etcdMembers(1, { kind: 'host', ports: [4001, 4002] }, '/s');
    assert.equal(m?.clientUrl, 'http://127.0.0.1:4001');
    assert.equal(m?.hostClientUrl, 'http://127.0.0.1:4001');
    assert.throws(() => etcdMembers(2, { kind: 'host', ports: [1, 2, 3, 4] }, '/s'), /1 or 3/);
  });
});

describe('CLI output', () => {
  it('aligns columns', () => {
    assert.equal(
      table([
        ['A', 'BB', 'C'],
        ['aaa', 'b', 'c'],
      ]),
      'A    BB  C\naaa  b   c',
    );
  });

  it('describes a cluster', () => {
    const text = formatDescription({
      name: 'demo',
      stateDir: '/run/fleet-lab/demo',
      shareNet: false,
      subnet: '172.31.7.0/24',
      hostAddress: '172.31.7.254',
      etcdEndpoints: ['http://172.31.7.1:2379'],
      hostEtcdEndpoints: ['http://172.31.7.1:2379'],
      etcdMembers: [{ name: 'etcd0', clientUrl: 'u', hostClientUrl: 'u', pid: null }],
      machines: [
        {
          name: 'm2',
          machineID: 'b'.repeat(32),
          hostname: 'm2',
          ip: '172.31.7.12',
          status: 'stopped',
          partitioned: true,
          pid: null,
          dbusAddress: null,
          dbusSocketPath: null,
          rootPath: null,
          cgroupPath: '/sys/fs/cgroup/fleet-lab/demo/m2',
        },
      ],
    });
    assert.match(text, /^cluster demo on 172\.31\.7\.0\/24/);
    assert.match(text, /etcd members stopped: etcd0/);
    assert.match(text, /^m2 +stopped,partitioned +b{32} +172\.31\.7\.12 +- +-$/m);
  });
});
