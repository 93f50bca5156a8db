import { listClusters, openCluster } from '../cluster.js';
import { formatDescription, table } from '../format.js';
import { type CommandIO, json } from './io.js';

/** `fleet-lab status NAME`: the cluster as recorded, checked against the processes that exist. */
export async function status(
  name: string,
  options: { readonly json?: boolean },
  io: CommandIO,
): Promise<number> {
  const cluster = await (await openCluster(name)).refresh();
  io.out(options.json === true ? json(cluster.describe()) : formatDescription(cluster.describe()));
  return 0;
}

/** `fleet-lab list`: every cluster on this host. */
export async function list(options: { readonly json?: boolean }, io: CommandIO): Promise<number> {
  const clusters = await listClusters();
  if (options.json === true) {
    io.out(
      json(
        clusters.map((c) => ({
          name: c.name,
          machines: c.description?.machines.length ?? null,
          running: c.description?.machines.filter((m) => m.status === 'running').length ?? null,
          problem: c.problem ?? null,
        })),
      ),
    );
    return 0;
  }
  if (clusters.length === 0) {
    io.out('no clusters');
    return 0;
  }
  const rows = [['CLUSTER', 'MACHINES', 'ETCD (host)']];
  for (const c of clusters) {
    if (c.description === undefined) {
      rows.push([c.name, '?', `unreadable state: ${c.problem ?? ''}`]);
      continue;
    }
    const running = c.description.machines.filter((m) => m.status === 'running').length;
    rows.push([
      c.name,
      `${running}/${c.description.machines.length} running`,
      c.description.hostEtcdEndpoints.join(','),
    ]);
  }
  io.out(table(rows));
  return 0;
}
