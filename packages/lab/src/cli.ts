#!/usr/bin/env node
/**
 * fleet-lab: start, inspect, break and remove local multi-machine clusters.
 * A thin commander layer over the API in ./cluster.ts; each command returns
 * an exit code, and errors print as one message without a stack trace.
 */
import { Command } from 'commander';
import { errorMessage, isFleetError } from '@fleet/core';
import { down } from './commands/down.js';
import { etcd } from './commands/etcd.js';
import { exec } from './commands/exec.js';
import { stdio } from './commands/io.js';
import { add, machineAction, type MachineAction } from './commands/machine.js';
import { list, status } from './commands/status.js';
import { up, type UpOptions } from './commands/up.js';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Runs a command body, turning its result into the exit code and any error into one message. */
function action<A extends unknown[]>(body: (...args: A) => Promise<number>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      process.exitCode = await body(...args);
    } catch (err) {
      const debug = process.env.FLEET_LAB_DEBUG === '1' && err instanceof Error && !isFleetError(err);
      stdio.err(`fleet-lab: ${debug ? (err.stack ?? errorMessage(err)) : errorMessage(err)}`);
      process.exitCode = 1;
    }
  };
}

export function buildProgram(): Command {
  const program = new Command('fleet-lab')
    .description(
      'Real multi-machine fleet clusters on one host: etcd plus machines running their own systemd',
    )
    .enablePositionalOptions()
    .showHelpAfterError('(run fleet-lab help for usage)');

  program
    .command('up')
    .description('start a cluster and leave it running')
    .requiredOption('--name <name>', 'cluster name, unique on this host')
    .option('--machines <n>', 'number of machines', '3')
    .option('--etcd-members <n>', 'etcd members: 1 or 3', '1')
    .option('--share-net', 'use the host network namespace (127.0.0.1, free ports; no partitions)')
    .option('--service-file <path>', 'unit file to run in every machine at boot (repeatable)', collect, [])
    .option(
      '--env <KEY=VALUE>',
      'extra variable for /run/fleet-lab/env in every machine (repeatable)',
      collect,
      [],
    )
    .option(
      '--keep <path>',
      'host path to keep visible in machines (repeatable; default: this checkout)',
      collect,
      [],
    )
    .option('--timeout <ms>', 'boot deadline per machine', '30000')
    .option('--fleetd', "run this checkout's fleetd under systemd in every machine (needs `make build`)")
    .option('--agent-ttl <duration>', 'fleetd agent_ttl with --fleetd', '5s')
    .option('--json', 'print the cluster description as JSON')
    .action(action((options: UpOptions) => up(options, stdio)));

  program
    .command('down')
    .description('remove clusters and everything they created')
    .argument('[names...]', 'cluster names')
    .option('--all', 'every cluster on this host')
    .action(action((names: string[], options: { all?: boolean }) => down(names, options, stdio)));

  program
    .command('status')
    .description('show a cluster (recorded state checked against live processes)')
    .argument('<name>')
    .option('--json', 'print as JSON')
    .action(action((name: string, options: { json?: boolean }) => status(name, options, stdio)));

  program
    .command('list')
    .description('list the clusters on this host')
    .option('--json', 'print as JSON')
    .action(action((options: { json?: boolean }) => list(options, stdio)));

  const machineActions: Record<MachineAction, string> = {
    kill: "SIGKILL the machine's PID 1 (everything in it dies)",
    restart: 'boot the machine again with the same machine ID, hostname and IP (killing it first if running)',
    partition: 'cut the machine off the network (its bridge port goes down)',
    heal: 'reconnect a partitioned machine',
  };
  for (const [name, description] of Object.entries(machineActions) as [MachineAction, string][]) {
    program
      .command(name)
      .description(description)
      .argument('<name>', 'cluster name')
      .argument('<machine>', 'machine name, e.g. m1')
      .action(action((cluster: string, machine: string) => machineAction(name, cluster, machine, stdio)));
  }

  program
    .command('exec')
    .description('run a command inside a machine (its exit code is returned)')
    .argument('<name>', 'cluster name')
    .argument('<machine>', 'machine name, e.g. m1')
    .argument('<command...>', 'command and arguments (put -- before them)')
    .passThroughOptions()
    .action(action((cluster: string, machine: string, argv: string[]) => exec(cluster, machine, argv)));

  program
    .command('add')
    .description('boot one more machine')
    .argument('<name>', 'cluster name')
    .option('--env <KEY=VALUE>', 'extra variable for its /run/fleet-lab/env (repeatable)', collect, [])
    .option('--json', 'print the new machine as JSON')
    .action(action((name: string, options: { env: string[]; json?: boolean }) => add(name, options, stdio)));

  program
    .command('etcd')
    .description('stop or start one etcd member (0-based) or all of them')
    .argument('<action>', 'stop or start')
    .argument('<name>', 'cluster name')
    .argument('[member]', 'member index; all members when omitted')
    .option('--kill', 'stop with SIGKILL (a crash) instead of SIGTERM')
    .action(
      action((act: string, name: string, member: string | undefined, options: { kill?: boolean }) =>
        etcd(act, name, member, options, stdio),
      ),
    );

  return program;
}

await buildProgram().parseAsync(process.argv);
