import { ValidationError } from '@fleet/core';
import { openCluster } from '../cluster.js';
import type { CommandIO } from './io.js';
import { parseCount } from './up.js';

/** `fleet-lab etcd stop|start NAME [MEMBER]`: stops or starts one etcd member (0-based) or all. */
export async function etcd(
  action: string,
  name: string,
  member: string | undefined,
  options: { readonly kill?: boolean },
  io: CommandIO,
): Promise<number> {
  if (action !== 'stop' && action !== 'start') {
    throw new ValidationError(`etcd ${JSON.stringify(action)}: expected stop or start`);
  }
  const cluster = await openCluster(name);
  const index = member === undefined ? undefined : parseCount('MEMBER', member);
  const stopOptions = { signal: options.kill === true ? 'SIGKILL' : 'SIGTERM' } as const;
  if (action === 'stop') {
    if (index === undefined) await cluster.stopEtcd(stopOptions);
    else await cluster.stopEtcdMember(index, stopOptions);
  } else if (index === undefined) {
    await cluster.startEtcd();
  } else {
    await cluster.startEtcdMember(index);
  }
  io.out(
    `etcd ${index === undefined ? 'members' : `member ${index}`} of cluster ${name}: ${action === 'stop' ? 'stopped' : 'started'}`,
  );
  return 0;
}
