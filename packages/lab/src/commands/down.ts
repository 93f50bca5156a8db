import { ValidationError } from '@fleet/core';
import { destroyCluster, listClusters } from '../cluster.js';
import type { CommandIO } from './io.js';

/** `fleet-lab down NAME... | --all`: removes clusters and everything they created. */
export async function down(
  names: readonly string[],
  options: { readonly all?: boolean },
  io: CommandIO,
): Promise<number> {
  let targets = [...names];
  if (options.all === true) {
    if (targets.length > 0) throw new ValidationError('give cluster names or --all, not both');
    targets = (await listClusters()).map((c) => c.name);
    if (targets.length === 0) io.out('no clusters');
  } else if (targets.length === 0) {
    throw new ValidationError('which cluster? give its name, or --all');
  }
  for (const name of targets) {
    await destroyCluster(name);
    io.out(`removed cluster ${name}`);
  }
  return 0;
}
