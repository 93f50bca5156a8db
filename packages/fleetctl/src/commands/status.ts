import { errorMessage } from '@fleet/core';
import type { CommandSpec } from '../command.js';
import { SSH_PORT_FLAG } from '../common-flags.js';
import { CommandError, EXIT_OK } from '../errors.js';
import { STATUS_REFUSALS, machineAddress, placedUnit, remoteCommand, writeOutput } from '../remote.js';
import { runSsh, sshArgs } from '../ssh.js';
import { unitArgs } from '../unit-args.js';

export const statusCommand: CommandSpec = {
  name: 'status',
  summary: 'Output the status of one or more units in the cluster',
  usage: '[--ssh-port=N] UNIT...',
  description: `Output the status of one or more units currently running in the cluster: "systemctl status -l UNIT" on the unit's machine. fleetctl exits with systemctl's exit status (0 = active, 3 = not running, …).

By default fleetd runs the command on the unit's machine and returns its output. With --tunnel or --ssh-port, fleetctl runs it over SSH as fleet did.

Show status of a single unit:
	fleetctl status foo.service

Show status of an entire directory with glob matching:
	fleetctl status myservice/*

This command does not work with global units.`,
  flags: [SSH_PORT_FLAG],
  async run(session, args, flags) {
    const names = unitArgs(args, session.io.cwd).map((u) => u.name);
    const client = await session.client();
    const units = [];
    for (const name of names) units.push(await placedUnit(session, client, name, STATUS_REFUSALS));
    const sshPort = flags.sshPort as number | undefined;
    const viaSsh = session.globals.tunnel !== '' || sshPort !== undefined;
    for (const [i, unit] of units.entries()) {
      // An empty line between units, as systemctl status prints them.
      if (i > 0) session.io.stdout.write('\n');
      let exit: number;
      if (viaSsh) {
        const settings = session.ssh(sshPort ?? 22);
        const host = await machineAddress(session, unit.machineID as string);
        exit = await runSsh(
          session.io,
          settings,
          sshArgs(settings, host, remoteCommand(['systemctl', 'status', '-l', unit.name])),
        );
      } else {
        let result;
        try {
          result = await client.unitStatus(unit.name);
        } catch (err) {
          throw new CommandError(`Error running status of ${unit.name}: ${errorMessage(err)}`);
        }
        writeOutput(session, result.output);
        exit = result.exitCode;
      }
      if (exit !== EXIT_OK) return exit;
    }
    return EXIT_OK;
  },
};
