import { openCluster } from '../cluster.js';

/** `fleet-lab exec NAME MACHINE -- CMD...`: runs a command in the machine; its exit code is ours. */
export async function exec(name: string, machine: string, argv: readonly string[]): Promise<number> {
  const cluster = await openCluster(name);
  // commander passes the `--` that separates the command through to us.
  const command = argv[0] === '--' ? argv.slice(1) : argv;
  return cluster.execInteractive(cluster.machine(machine), command);
}
