import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseUnitFile, serializeUnitOptions, unitHash } from '@fleet/core';
import type { Machine } from '@fleet/lab';
import { UnitDir, destroyAll, single, systemdShow, systemdState, unitFiles, unitsOn } from './acceptance.js';
import { FleetCluster, REPO, converge } from './harness.js';

/** A blocking command gives up after 30 s instead of hanging the suite. */
const WAIT = '--block-attempts=15';

/** What fleet's tabwriter(0, 8, 1, '\t', 0) makes of rows of cells: an independent oracle. */
function fleetTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.slice(0, -1).forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length + 1);
    });
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => {
          if (i === row.length - 1) return cell;
          const width = Math.ceil((widths[i] as number) / 8) * 8;
          return cell + '\t'.repeat(Math.ceil((width - cell.length) / 8));
        })
        .join(''),
    )
    .map((line) => `${line}\n`)
    .join('');
}

/** The unit file the agent wrote in a machine, or undefined. */
function unitFileIn(m: Machine, unit: string): string | undefined {
  const path = join(m.rootPath, 'run/fleet/units', unit);
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}

/**
 * Fleet's unit action tests (functional/unit_action_test.go) and fleetctl's
 * output on a real 3-machine cluster: every transition is checked through
 * fleetctl AND in the machines (systemd, /run/fleet/units).
 */
describe('unit lifecycle', { timeout: 240_000 }, () => {
  let c: FleetCluster;
  let dir: UnitDir;
  const cwd = (): { cwd: string } => ({ cwd: dir.path });
  /** fleetctl's machine cell: `abcd1234.../ip`, or the whole ID with --full. */
  const short = (id: string, full = false): string => {
    const m = c.machineByID(id);
    return `${full ? m.machineID : `${m.machineID.slice(0, 8)}...`}/${m.ip}`;
  };

  before(async () => {
    dir = new UnitDir();
    c = await FleetCluster.start({ machines: 3 });
  });
  after(async () => {
    await c?.close();
    dir?.close();
  });

  /**
   * Waits until, in every machine, systemd and /run/fleet/units show `units`
   * exactly where `where` says (with `state` = LoadState/ActiveState/SubState
   * and the canonical `text` on disk) and nowhere else.
   */
  async function inMachines(
    units: readonly string[],
    where: ReadonlyMap<string, string> | undefined,
    state: string,
    text: string,
  ): Promise<void> {
    await converge(
      c,
      async () => {
        for (const m of c.machines) {
          const shown = await systemdShow(c, m, units, ['LoadState', 'ActiveState', 'SubState']);
          for (const u of units) {
            const s = shown.get(u);
            const here = where?.get(u) === m.machineID;
            const got = `${s?.LoadState}/${s?.ActiveState}/${s?.SubState}`;
            const want = here ? state : 'not-found/inactive/dead';
            if (got !== want) throw new Error(`${u} in ${m.name}: systemd says ${got}, want ${want}`);
            const file = unitFileIn(m, u);
            if (here && file !== text)
              throw new Error(`${u} in ${m.name}: unit file ${JSON.stringify(file)}`);
            if (!here && file !== undefined) throw new Error(`${u} in ${m.name}: stray unit file`);
          }
        }
        return true;
      },
      { timeoutMs: 30_000, message: `units in systemd: ${state}` },
    );
  }

  /** list-unit-files rows of `units`: dstate, state, and the machine each is on (checked equal for all). */
  async function filesAre(
    units: readonly string[],
    dstate: string,
    state: string,
  ): Promise<Map<string, string>> {
    return converge(
      c,
      async () => {
        const files = await unitFiles(c);
        const where = new Map<string, string>();
        for (const u of units) {
          const row = files.get(u);
          if (row?.dstate !== dstate || row.state !== state) {
            throw new Error(`${u}: ${row?.dstate}/${row?.state}, want ${dstate}/${state}`);
          }
          where.set(u, row.target);
        }
        return where;
      },
      { timeoutMs: 30_000, message: `list-unit-files: ${dstate}/${state}` },
    );
  }

  it('template instances: submit, load, start, stop, unload, destroy — 9, 6 and 3 at once, twice', async () => {
    const template =
      '[Unit]\nDescription=Instance %i\n\n[Service]\nExecStart=/bin/sh -c "echo instance %i; exec sleep infinity"\n';
    dir.write('cycle@.service', template);
    const text = serializeUnitOptions(parseUnitFile(template));
    for (const round of [1, 2]) {
      // Round 1 creates instances from the local template, round 2 from the cluster's.
      if (round === 2) assert.equal(await c.ok(['submit', 'cycle@.service'], cwd()), '');
      for (const n of [9, 6, 3]) {
        const units = Array.from({ length: n }, (_, i) => `cycle@${i + 1}.service`);
        // fleetctl waits for the units together and prints each line as its unit gets there (as fleet did).
        const lines = (verb: (u: string) => string): string =>
          units
            .map((u) => `${verb(u)}\n`)
            .sort()
            .join('');
        const sorted = (out: string): string =>
          out
            .split(/(?<=\n)/)
            .sort()
            .join('');

        assert.equal(await c.ok(['submit', ...units], cwd()), '');
        const none = await filesAre(units, 'inactive', 'inactive');
        assert.ok([...none.values()].every((t) => t === '-'));
        assert.equal((await unitsOn(c)).size, 0);
        await inMachines(units, undefined, '', text);

        const loaded = await c.ok(['load', WAIT, ...units], cwd());
        const where = await filesAre(units, 'loaded', 'loaded');
        assert.equal(
          sorted(loaded),
          lines((u) => `Unit ${u} loaded on ${short(where.get(u) as string)}`),
        );
        // Least-loaded placement spreads them evenly.
        for (const m of c.machines) {
          assert.equal([...where.values()].filter((id) => id === m.machineID).length, n / 3, m.name);
        }
        await inMachines(units, where, 'loaded/inactive/dead', text);
        const listed = await c.rows(['list-units', '--fields=unit,machine,load,active,sub']);
        assert.deepEqual(
          listed,
          units.map((u) => [u, short(where.get(u) as string, true), 'loaded', 'inactive', 'dead']),
        );

        const started = await c.ok(['start', WAIT, ...units], cwd());
        assert.equal(
          sorted(started),
          lines((u) => `Unit ${u} launched on ${short(where.get(u) as string)}`),
        );
        assert.deepEqual(await filesAre(units, 'launched', 'launched'), where, 'no unit moved');
        await inMachines(units, where, 'loaded/active/running', text);

        const stopped = await c.ok(['stop', WAIT, ...units], cwd());
        assert.equal(
          sorted(stopped),
          lines((u) => `Unit ${u} loaded on ${short(where.get(u) as string)}`),
        );
        assert.deepEqual(await filesAre(units, 'loaded', 'loaded'), where);
        await inMachines(units, where, 'loaded/inactive/dead', text);

        const unloaded = await c.ok(['unload', WAIT, ...units], cwd());
        assert.equal(
          sorted(unloaded),
          lines((u) => `Unit ${u} inactive`),
        );
        await filesAre(units, 'inactive', 'inactive');
        await inMachines(units, undefined, '', text);
        await converge(c, async () => (await unitsOn(c)).size === 0, {
          timeoutMs: 20_000,
          message: 'no unit states left',
        });

        assert.equal(
          await c.ok(['destroy', ...units], cwd()),
          lines((u) => `Destroyed ${u}`),
        );
        const left = [...(await unitFiles(c)).keys()];
        assert.deepEqual(left, round === 2 ? ['cycle@.service'] : [], `round ${round}, ${n} units`);
      }
    }
    await destroyAll(c, ['cycle@.service']);
  });

  it('running units unloaded or destroyed straight away are stopped and their files removed', async () => {
    const template = '[Unit]\nDescription=direct %i\n\n[Service]\nExecStart=/bin/sleep infinity\n';
    dir.write('direct@.service', template);
    const text = serializeUnitOptions(parseUnitFile(template));
    const units = ['direct@1.service', 'direct@2.service', 'direct@3.service'];
    await c.ok(['start', WAIT, ...units], cwd());
    const where = await filesAre(units, 'launched', 'launched');
    await inMachines(units, where, 'loaded/active/running', text);

    const [unloaded, ...destroyed] = units as [string, ...string[]];
    assert.equal(await c.ok(['unload', WAIT, unloaded], cwd()), `Unit ${unloaded} inactive\n`);
    await inMachines(
      units,
      new Map([...where].filter(([u]) => u !== unloaded)),
      'loaded/active/running',
      text,
    );
    assert.equal(
      await c.ok(['destroy', ...destroyed], cwd()),
      destroyed.map((u) => `Destroyed ${u}\n`).join(''),
    );
    await inMachines(units, undefined, '', text);
    assert.deepEqual([...(await unitFiles(c)).keys()], [unloaded]);
    await converge(c, async () => (await unitsOn(c)).size === 0, {
      timeoutMs: 20_000,
      message: 'no unit states left',
    });
    await destroyAll(c, [unloaded]);
  });

  it('start --replace changes the body: cat shows the new text and systemd runs the new ExecStart', async () => {
    const v1 = '[Unit]\nDescription=replaceable\n\n[Service]\nExecStart=/bin/sleep 1001\n';
    const v2 = '[Unit]\nDescription=replaceable\n\n[Service]\nExecStart=/bin/sleep 1002\n';
    const unit = dir.write('rep.service', v1);
    await c.ok(['start', WAIT, unit], cwd());
    const machine = c.machineByID(single(await c.activeUnits(), unit) as string);
    const mainPID = async (): Promise<string> =>
      (await systemdShow(c, machine, [unit], ['MainPID'])).get(unit)?.MainPID ?? '';
    const cmdline = async (pid: string): Promise<string> =>
      (await c.lab.exec(machine, ['cat', `/proc/${pid}/cmdline`])).stdout.replace(/\0/g, ' ').trim();
    const pid1 = await mainPID();
    assert.equal(await cmdline(pid1), '/bin/sleep 1001');

    dir.write('rep.service', v2);
    const refused = await c.fleetctl(['submit', unit], cwd());
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /already exists in the cluster and differs from local unit file rep\.service/,
    );
    assert.equal(await c.ok(['cat', unit]), v1, 'nothing replaced without --replace');

    await c.ok(['start', WAIT, '--replace', unit], cwd());
    assert.equal(await c.ok(['cat', unit]), serializeUnitOptions(parseUnitFile(v2)));
    const files = await unitFiles(c);
    assert.equal(files.get(unit)?.dstate, 'launched');
    const now = await converge(
      c,
      async () => {
        const where = single(await c.activeUnits(), unit);
        if (!where) return undefined;
        const m = c.machineByID(where);
        const shown = (await systemdShow(c, m, [unit], ['ExecStart', 'MainPID', 'ActiveState'])).get(unit);
        return shown?.ActiveState === 'active' && shown.ExecStart?.includes('/bin/sleep 1002')
          ? { m, shown }
          : undefined;
      },
      { timeoutMs: 30_000, message: 'systemd runs the replaced ExecStart' },
    );
    assert.equal(now.m, machine, 'replacing the body does not move the unit');
    assert.notEqual(now.shown.MainPID, pid1, 'the unit was restarted');
    assert.equal(await cmdline(now.shown.MainPID as string), '/bin/sleep 1002');
    assert.equal(unitFileIn(machine, unit), serializeUnitOptions(parseUnitFile(v2)));
    await destroyAll(c, [unit]);
  });

  it('restart stops and starts the unit again (a new process), printing both lines', async () => {
    const unit = dir.write('hello.service', readFileSync(join(REPO, 'examples/hello.service'), 'utf8'));
    await c.ok(['start', WAIT, unit], cwd());
    const id = single(await c.activeUnits(), unit) as string;
    const machine = c.machineByID(id);
    const pid = async (): Promise<string> =>
      (await systemdShow(c, machine, [unit], ['MainPID'])).get(unit)?.MainPID ?? '';
    const before = await pid();
    assert.match(before, /^[1-9]\d*$/);
    const out = await c.ok(['restart', WAIT, unit], cwd());
    assert.equal(out, `Unit ${unit} loaded on ${short(id)}\nUnit ${unit} launched on ${short(id)}\n`);
    const after = await pid();
    assert.match(after, /^[1-9]\d*$/);
    assert.notEqual(after, before);
    assert.equal(await systemdState(c, machine, unit), 'active/running');
    // And once more: restart is repeatable.
    assert.equal(await c.ok(['restart', WAIT, unit], cwd()), out);
    assert.notEqual(await pid(), after);
    await destroyAll(c, [unit]);
  });

  it('cat prints the canonical text byte for byte; the hash and the file on the machine match it', async () => {
    const messy = [
      '# a comment before any section',
      '[Unit]',
      'Description = Messy unit ; semicolon kept',
      '  # an indented comment',
      '',
      '[Service]',
      'ExecStart=/bin/sh -c "echo messy; \\',
      '  exec sleep infinity"',
      'Environment=A=1 B=2',
      '[Unit]',
      'After=network.target',
      '; another comment',
      '[X-Fleet]',
      'Conflicts=nothing-matches-*.service',
      '',
    ].join('\n');
    const unit = dir.write('messy.service', messy);
    const canonical = serializeUnitOptions(parseUnitFile(messy));
    assert.ok(canonical.includes('[Unit]\nDescription=Messy unit ; semicolon kept\nAfter=network.target\n'));
    await c.ok(['submit', unit], cwd());
    assert.equal(await c.ok(['cat', unit]), canonical);
    assert.equal(await c.ok(['cat', 'messy']), canonical, 'the name is mangled as for any command');
    const [row] = await c.rows(['list-unit-files', '--fields=unit,hash']);
    assert.deepEqual(row, [unit, unitHash(parseUnitFile(messy))]);

    await c.ok(['start', WAIT, unit], cwd());
    const machine = c.machineByID(single(await c.activeUnits(), unit) as string);
    assert.equal(unitFileIn(machine, unit), canonical);
    assert.equal(await systemdState(c, machine, unit), 'active/running');
    const missing = await c.fleetctl(['cat', 'nope.service']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'Unit nope.service not found\n');
    await destroyAll(c, [unit]);
  });

  it('status and journal show systemd’s output for a unit on another machine than the endpoint', async () => {
    const unit = dir.write('hello.service', readFileSync(join(REPO, 'examples/hello.service'), 'utf8'));
    await c.ok(['start', WAIT, unit], cwd());
    const where = c.machineByID(single(await c.activeUnits(), unit) as string);
    const endpoint = c.machines.find((m) => m !== where) as Machine;

    const status = await c.fleetctl(['status', unit], { machine: endpoint });
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /hello\.service - MyApp/);
    assert.match(status.stdout, /Active: active \(running\)/);
    const pid = (await systemdShow(c, where, [unit], ['MainPID'])).get(unit)?.MainPID;
    assert.match(status.stdout, new RegExp(`Main PID: ${pid}\\b`), 'the status of the unit’s own machine');

    const journal = await converge(
      c,
      async () => {
        const r = await c.fleetctl(['journal', '--lines=5', unit], { machine: endpoint });
        return r.code === 0 && r.stdout.includes('Hello World') ? r.stdout : undefined;
      },
      { timeoutMs: 20_000, message: 'journal shows the unit’s echo lines' },
    );
    assert.ok(journal.split('\n').filter((l) => l.includes('Hello World')).length <= 5, journal);
    assert.match(journal, new RegExp(`\\b${where.name}\\b`), 'lines from the unit’s machine (its hostname)');

    await c.ok(['stop', WAIT, unit], cwd());
    const stopped = await c.fleetctl(['status', unit], { machine: endpoint });
    assert.equal(stopped.code, 3, 'systemctl status of a stopped unit');
    assert.match(stopped.stdout, /Active: inactive \(dead\)/);
    await destroyAll(c, [unit]);
  });

  it('list-unit-files: sorted by name, fleet’s table layout, --fields, --full, --no-legend', async () => {
    const text = (desc: string, xfleet = ''): string =>
      `[Unit]\nDescription=${desc}\n\n[Service]\nExecStart=/bin/sleep infinity\n${xfleet ? `\n[X-Fleet]\n${xfleet}\n` : ''}`;
    const bodies = new Map([
      ['zz-last.service', text('the last one')],
      ['aa-first.service', text('first')],
      ['mm-middle-with-a-long-name.service', text('middle')],
      ['gg-global.service', text('everywhere', 'Global=true')],
    ]);
    for (const [name, body] of bodies) dir.write(name, body);
    await c.ok(
      ['submit', 'zz-last.service', 'aa-first.service', 'mm-middle-with-a-long-name.service'],
      cwd(),
    );
    await c.ok(['start', WAIT, 'aa-first.service'], cwd());
    await c.ok(['start', WAIT, 'gg-global.service'], cwd());
    await converge(c, async () => (await unitsOn(c, 'active')).get('gg-global.service')?.length === 3, {
      timeoutMs: 20_000,
      message: 'the global unit runs everywhere',
    });
    const names = [...bodies.keys()].sort();
    const hash = (n: string): string => unitHash(parseUnitFile(bodies.get(n) as string));
    const firstOn = single(await c.activeUnits(), 'aa-first.service') as string;
    const row = (n: string, full: boolean): string[] => {
      const launched = n === 'aa-first.service';
      const global = n === 'gg-global.service';
      const target = global ? 'global' : launched ? short(firstOn, full) : '-';
      return [
        n,
        full ? hash(n) : hash(n).slice(0, 7),
        launched || global ? 'launched' : 'inactive',
        global ? '-' : launched ? 'launched' : 'inactive',
        target,
      ];
    };
    const header = ['UNIT', 'HASH', 'DSTATE', 'STATE', 'TARGET'];
    assert.equal(await c.ok(['list-unit-files']), fleetTable([header, ...names.map((n) => row(n, false))]));
    assert.equal(
      await c.ok(['list-unit-files', '--full']),
      fleetTable([header, ...names.map((n) => row(n, true))]),
    );
    assert.equal(await c.ok(['list-unit-files', '--no-legend']), fleetTable(names.map((n) => row(n, false))));
    assert.equal(
      await c.ok(['list-unit-files', '-l', '--no-legend']),
      fleetTable(names.map((n) => row(n, true))),
    );
    const desc = new Map([
      ['zz-last.service', 'the last one'],
      ['aa-first.service', 'first'],
      ['mm-middle-with-a-long-name.service', 'middle'],
      ['gg-global.service', 'everywhere'],
    ]);
    assert.equal(
      await c.ok(['list-unit-files', '--fields=global,desc,unit']),
      fleetTable([
        ['GLOBAL', 'DESC', 'UNIT'],
        ...names.map((n) => [String(n === 'gg-global.service'), desc.get(n) as string, n]),
      ]),
    );
    const bad = await c.fleetctl(['list-unit-files', '--fields=unit,nope']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Invalid key in output format: "nope"/);
    await destroyAll(c, names);
    assert.equal(await c.ok(['list-unit-files']), fleetTable([header]));
  });
});
