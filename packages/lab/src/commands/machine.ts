/** The commands acting on one machine: kill, restart, partition, heal, add. */
import { openCluster } from '../cluster.js';
import { formatDescription } from '../format.js';
import { type CommandIO, json } from './io.js';
import { parseEnvFlags } from './up.js';

export type MachineAction = 'kill' | 'restart' | 'partition' | 'heal';

const DONE: Record<MachineAction, string> = {
  kill: 'killed',
  restart: 'restarted',
  partition: 'partitioned',
  heal: 'healed',
};

/** `fleet-lab kill|restart|partition|heal NAME MACHINE`. */
export async function machineAction(
  action: MachineAction,
  name: string,
  machine: string,
  io: CommandIO,
): Promise<number> {
  const cluster = await openCluster(name);
  const m = cluster.machine(machine);
  await cluster[action](m);
  io.out(`${DONE[action]} ${m.name} of cluster ${name}${m.running ? ` (pid ${m.pid})` : ''}`);
  return 0;
}

/** `fleet-lab add NAME`: boots one more machine. */
export async function add(
  name: string,
  options: { readonly env: readonly string[]; readonly json?: boolean },
  io: CommandIO,
): Promise<number> {
  const cluster = await openCluster(name);
  const m = await cluster.add({ env: parseEnvFlags(options.env) });
  const d = cluster.describe();
  if (options.json === true) io.out(json(d.machines.find((x) => x.name === m.name)));
  else io.out(formatDescription(d));
  return 0;
}
