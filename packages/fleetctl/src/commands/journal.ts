import { errorMessage } from '@fleet/core';
import type { CommandSpec } from '../command.js';
import { SSH_PORT_FLAG } from '../common-flags.js';
import { CommandError, EXIT_FAILURE, EXIT_OK, UsageError } from '../errors.js';
import { parseCount } from '../flags.js';
import { FOLLOW_WINDOW, newJournalLines, outputLines } from '../journal-follow.js';
import { JOURNAL_REFUSALS, machineAddress, placedUnit, remoteCommand, writeOutput } from '../remote.js';
import { runSsh, sshArgs } from '../ssh.js';
import { unitArg } from '../unit-args.js';

/** Follow polls per second: 4 poll intervals (1 s at the default 250 ms). */
const FOLLOW_INTERVAL_POLLS = 4;

export const journalCommand: CommandSpec = {
  name: 'journal',
  summary: 'Print the journal of a unit in the cluster to stdout',
  usage: '[-l|--lines=N] [--ssh-port=N] [-f|--follow] [--output=STRING] [--sudo] UNIT',
  description: `Outputs the journal of a unit: "journalctl --unit UNIT --no-pager -n N" on the machine the unit occupies.

By default fleetd runs journalctl on the unit's machine; --follow then asks for new lines every second until interrupted. With --tunnel, --ssh-port or --sudo, fleetctl runs journalctl over SSH as fleet did (and --follow uses "journalctl -f").

Read the last 10 lines:
	fleetctl journal foo.service

Read the last 100 lines:
	fleetctl journal --lines 100 foo.service

This command does not work with global units.`,
  flags: [
    {
      flags: '-l, --lines <N>',
      defaultValue: 10,
      parse: parseCount,
      description: 'Number of recent log lines to return',
    },
    {
      flags: '-f, --follow',
      description: 'Continuously print new entries as they are appended to the journal.',
    },
    {
      flags: '--output <mode>',
      defaultValue: 'short',
      description: 'Output mode, passed unaltered to journalctl (short, cat, json, …).',
    },
    { flags: '--sudo', description: 'Execute journal command with sudo (implies SSH)' },
    SSH_PORT_FLAG,
  ],
  async run(session, args, flags) {
    if (args.length !== 1) throw new UsageError('One unit file must be provided');
    const { name } = unitArg(args[0] as string, session.io.cwd);
    const lines = flags.lines as number;
    const output = flags.output as string;
    const follow = flags.follow === true;
    const sudo = flags.sudo === true;
    const sshPort = flags.sshPort as number | undefined;
    const client = await session.client();
    const unit = await placedUnit(session, client, name, JOURNAL_REFUSALS);

    if (session.globals.tunnel !== '' || sshPort !== undefined || sudo) {
      const words = ['journalctl', '--unit', name, '--no-pager', '-n', String(lines), '--output', output];
      if (sudo) words.unshift('sudo');
      if (follow) words.push('-f');
      const settings = session.ssh(sshPort ?? 22);
      const host = await machineAddress(session, unit.machineID as string);
      return runSsh(session.io, settings, sshArgs(settings, host, remoteCommand(words)));
    }

    const fetch = async (n: number) => {
      try {
        return await client.unitJournal(name, { lines: n, output });
      } catch (err) {
        throw new CommandError(`Error reading journal of ${name}: ${errorMessage(err)}`);
      }
    };
    if (!follow) {
      const result = await fetch(lines);
      writeOutput(session, result.output);
      return result.exitCode;
    }
    const first = await fetch(Math.max(lines, FOLLOW_WINDOW));
    if (first.exitCode !== EXIT_OK) {
      writeOutput(session, first.output);
      return first.exitCode;
    }
    let window = outputLines(first.output);
    for (const line of lines === 0 ? [] : window.slice(-lines)) session.out(line);
    while (await session.sleep(FOLLOW_INTERVAL_POLLS * session.pollIntervalMs)) {
      const next = await fetch(FOLLOW_WINDOW);
      if (next.exitCode !== EXIT_OK) {
        session.err(`Error reading journal of ${name}: journalctl exited with status ${next.exitCode}`);
        return EXIT_FAILURE;
      }
      const nextWindow = outputLines(next.output);
      for (const line of newJournalLines(window, nextWindow)) session.out(line);
      window = nextWindow;
    }
    return EXIT_OK;
  },
};
