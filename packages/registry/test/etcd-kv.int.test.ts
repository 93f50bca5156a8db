import { EtcdKv } from '@fleet/registry';
import { startEtcd } from '../../../test/support/etcd.js';
import { eventually } from '../../../test/support/eventually.js';
import { kvConformance } from './conformance.js';

kvConformance(
  'etcd',
  async () => {
    const etcd = await startEtcd();
    const kv = new EtcdKv({ endpoints: [etcd.endpoint] });
    return {
      kv: () => kv,
      // a partitioned owner: stop keeping the lease alive and wait out its TTL
      expire: async (leaseID) => {
        await kv.client.leaseClient.leaseRevoke({ ID: leaseID });
      },
      compact: async () => {
        const rev = await kv.currentRevision();
        await kv.client.kv.compact({ revision: String(rev), physical: true });
      },
      reconnect: async () => {
        await etcd.stop();
        await etcd.start();
        await eventually(async () => (await kv.currentRevision()) > 0, { timeoutMs: 10_000 });
      },
      close: async () => {
        await kv.close();
        await etcd.close();
      },
    };
  },
  { canReconnect: true },
);
