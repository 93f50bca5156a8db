/**
 * `make demo`: boots a local 3-machine fleet-lab cluster with fleetd running
 * under systemd in every machine, then plays the walkthrough
 * (../shared/spec/story.md) with our fleetctl, printing each command and its
 * real output. The cluster is left running for the user to explore.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '@fleet/core';
import {
  REPO_ROOT,
  destroyCluster,
  fleetdServiceText,
  listClusters,
  startCluster,
  type Cluster,
  type Machine,
} from '@fleet/lab';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';

const NAME = process.env['DEMO_NAME'] ?? 'demo';
const FLEETCTL = join(REPO_ROOT, 'packages/fleetctl/dist/cli.js');
const EXAMPLES = join(REPO_ROOT, 'examples');
const bold = (s: string): string => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const say = (s: string): void => void process.stdout.write(`\n${bold(`# ${s}`)}\n`);

let endpoint = '';

/** Runs our fleetctl binary like a user would and prints the command and its output. */
function fleetctl(args: string[], options: { quiet?: boolean } = {}): { code: number; stdout: string } {
  const r = spawnSync(process.execPath, [FLEETCTL, ...args], {
    cwd: EXAMPLES,
    env: { ...process.env, FLEETCTL_ENDPOINT: endpoint },
    encoding: 'utf8',
  });
  if (!options.quiet) {
    process.stdout.write(`$ fleetctl ${args.join(' ')}\n${r.stdout}${r.stderr}`);
  }
  return { code: r.status ?? 1, stdout: r.stdout };
}

function show(file: string): void {
  process.stdout.write(`$ cat ${file}\n${readFileSync(join(EXAMPLES, file), 'utf8')}`);
}

/** Polls fleetctl list-units until `check` holds (deadline), returning the elapsed ms. */
async function until(check: (rows: string[][]) => boolean, timeoutMs = 30_000): Promise<number> {
  const start = Date.now();
  for (;;) {
    const out = fleetctl(['list-units', '--no-legend', '--full', '--fields=unit,machine,active'], {
      quiet: true,
    });
    const rows = out.stdout
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => l.trim().split(/\s+/));
    if (check(rows)) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error('the cluster did not converge in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

const activeOn = (rows: string[][], unit: string): string | undefined =>
  rows.find((r) => r[0] === unit && r[2] === 'active')?.[1]?.split('/')[0];

async function main(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error('the demo boots machines with namespaces and cgroups: run it as root');
  if ((await listClusters()).some((c) => c.name === NAME)) {
    say(`removing the previous ${NAME} cluster`);
    await destroyCluster(NAME);
  }
  say(`booting a 3-machine cluster "${NAME}": etcd, and in each machine its own systemd running fleetd`);
  const dir = mkdtempSync(join(tmpdir(), 'fleet-demo-'));
  const service = join(dir, 'fleetd.service');
  writeFileSync(service, fleetdServiceText());
  const started = Date.now();
  const cluster: Cluster = await startCluster({ name: NAME, machines: 3, serviceFiles: [service] });
  const first = cluster.machines[0] as Machine;
  endpoint = `unix://${first.rootPath}/run/fleet.sock`;
  for (let i = 0; ; i++) {
    const r = fleetctl(['list-machines', '--no-legend'], { quiet: true });
    if (r.code === 0 && r.stdout.trim().split('\n').length === 3) break;
    if (i > 200) throw new Error('fleetd did not come up in every machine');
    await new Promise((res) => setTimeout(res, 100));
  }
  process.stdout.write(
    `(up in ${((Date.now() - started) / 1000).toFixed(1)} s; fleetctl talks to ${endpoint})\n`,
  );

  say('1. The cluster is there');
  fleetctl(['list-machines']);

  say('2. One service, placed anywhere');
  show('hello.service');
  fleetctl(['submit', 'hello.service']);
  fleetctl(['list-unit-files']);
  fleetctl(['start', 'hello.service']);
  await until((rows) => activeOn(rows, 'hello.service') !== undefined);
  fleetctl(['list-units']);
  fleetctl(['stop', 'hello.service']);
  fleetctl(['list-units']);

  say('3. Replicas that never share a machine (X-Conflicts=apache.*.service)');
  show('apache.1.service');
  fleetctl(['submit', 'apache.1.service', 'apache.2.service']);
  fleetctl(['start', 'apache.1.service', 'apache.2.service']);
  fleetctl(['list-units']);
  say('a third replica takes the third machine; a fourth has nowhere to go, and says why');
  fleetctl(['start', 'apache.3.service']);
  fleetctl(['start', '--block-attempts=2', 'apache.4.service']);
  fleetctl(['list-unit-files']);
  say('a machine joins: the waiting replica is placed on it');
  process.stdout.write(`$ fleet-lab add ${NAME}\n`);
  const added = await cluster.add();
  process.stdout.write(`booted ${added.name} (${added.machineID.slice(0, 8)}..., ${added.ip})\n`);
  await until((rows) => activeOn(rows, 'apache.4.service') !== undefined, 60_000);
  fleetctl(['list-units']);

  say('4. Failover: a machine dies, its units come up elsewhere; units on healthy machines stay');
  fleetctl(['start', 'hello.service']);
  const rows = fleetctl(['list-units', '--no-legend', '--full', '--fields=unit,machine,active'], {
    quiet: true,
  })
    .stdout.split('\n')
    .filter(Boolean)
    .map((l) => l.trim().split(/\s+/));
  const helloID = activeOn(rows, 'hello.service') ?? '';
  const victim = cluster.machines.find((m) => m.machineID === helloID);
  if (!victim) throw new Error('hello.service is not running');
  // fleetctl must keep talking to a surviving machine
  const survivor = cluster.machines.find((m) => m !== victim && m.running) as Machine;
  endpoint = `unix://${survivor.rootPath}/run/fleet.sock`;
  process.stdout.write(
    `$ fleet-lab kill ${NAME} ${victim.name}    # SIGKILL its systemd: every process in it dies\n`,
  );
  await cluster.kill(victim);
  const took = await until((r) => {
    const m = activeOn(r, 'hello.service');
    return m !== undefined && m !== helloID;
  });
  fleetctl(['list-units']);
  fleetctl(['list-machines']);
  process.stdout.write(
    `hello.service was running again on another machine ${(took / 1000).toFixed(1)} s after ${victim.name} died ` +
      `(machine TTL 5 s). The apache replica that ran there waits: every other machine already runs one.\n`,
  );

  say('Keep exploring');
  process.stdout.write(
    [
      `The cluster "${NAME}" is still running. From this shell:`,
      `  export FLEETCTL_ENDPOINT=${endpoint}`,
      `  bin/fleetctl list-units          # or list-machines, list-unit-files, status hello.service, journal hello.service`,
      `  bin/fleetctl start examples/web@1.service examples/monitor.service`,
      `  bin/fleet-lab status ${NAME}     # machines, PIDs, addresses`,
      `  bin/fleet-lab restart ${NAME} ${victim.name}`,
      `  bin/fleet-lab down ${NAME}       # removes everything the demo created`,
      '',
    ].join('\n'),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`demo: ${errorMessage(err)}\n`);
  process.exit(1);
});
