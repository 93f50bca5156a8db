import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type JobState,
  type Requirements,
  findReplacesCycle,
  parseRequirements,
  parseUnitFile,
  validateRequirements,
} from '@fleet/core';
import { REASONS, type SchedulerSnapshot, type SchedulerUnit, decide } from '@fleet/engine';
import { applyTasks, assertInvariants, shuffled } from './decide-support.js';

// Two IDs share their first 8 characters, so `MachineID=a1b2c3d4` names both.
const MACHINE_IDS = [
  'a1b2c3d4e5f6',
  'a1b2c3d4ffff',
  'b7c8d9e0a1b2',
  'c0ffee00beef',
  'd00dd00dd00d',
  'e1e1e1e1e1e1',
];
const DEAD = 'f0f0f0f0dead';
const NAMES = [
  'a.1.service',
  'a.2.service',
  'a.3.service',
  'b.1.service',
  'b.2.service',
  'c.service',
  'd.service',
  'e.service',
  'g.service',
  'h.service',
  'a.4.socket', // matches the prefix of a.*.service but not its suffix
];

/** Mostly nothing, sometimes a few of `items`. */
const some = <T>(items: readonly T[], maxLength: number): fc.Arbitrary<T[]> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constant<T[]>([]) },
    { weight: 2, arbitrary: fc.subarray([...items], { maxLength }) },
  );

const xfleet = fc.record({
  conflicts: some(['a.*.service', 'b.?.service', 'c.service', '[cd].service', 'g.service', '*.service'], 2),
  machineOf: fc.oneof(
    { weight: 2, arbitrary: fc.constant([]) },
    { weight: 1, arbitrary: fc.subarray(NAMES, { minLength: 1, maxLength: 2 }) },
  ),
  metadata: fc.constantFrom(
    undefined,
    undefined,
    'region=eu',
    '"region=eu" "region=us"',
    'disk=ssd',
    '"region=us" "disk=ssd"',
  ),
  global: fc.integer({ min: 0, max: 6 }).map((n) => n === 0),
  machineID: fc.oneof(
    { weight: 6, arbitrary: fc.constant(undefined) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(MACHINE_IDS[0]!, MACHINE_IDS[2]!, 'a1b2c3d4', 'c0ffee00', 'zzzzzzzz'),
    },
  ),
  replaces: some([...NAMES, 'a.*.service'], 2),
});
type XFleet = typeof xfleet extends fc.Arbitrary<infer T> ? T : never;

function body(x: XFleet, drop: ReadonlySet<string>): string {
  const lines: string[] = [];
  if (x.conflicts.length > 0) lines.push(`Conflicts=${x.conflicts.join(' ')}`);
  if (x.machineOf.length > 0 && !drop.has('machineOf')) lines.push(`MachineOf=${x.machineOf.join(' ')}`);
  if (x.metadata !== undefined) lines.push(`MachineMetadata=${x.metadata}`);
  if (x.global && !drop.has('global')) lines.push('Global=true');
  if (x.machineID !== undefined && !drop.has('machineID')) lines.push(`MachineID=${x.machineID}`);
  if (x.replaces.length > 0 && !drop.has('replaces')) lines.push(`Replaces=${x.replaces.join(' ')}`);
  return lines.join('\n');
}

/**
 * Requirements as submit would accept them: fields are dropped until the
 * combination is valid (fleet-compat §3), the way a user would fix the file.
 */
function acceptedRequirements(name: string, x: XFleet): Requirements {
  const drop = new Set<string>();
  for (const field of ['', 'machineID', 'replaces', 'global', 'machineOf']) {
    if (field !== '') drop.add(field);
    const options = parseUnitFile(`[Service]\nExecStart=/bin/true\n[X-Fleet]\n${body(x, drop)}\n`);
    const req = parseRequirements(options, name);
    try {
      validateRequirements(req, name);
      return req;
    } catch {
      continue;
    }
  }
  return parseRequirements([], name);
}

/**
 * Random clusters. `validated`: requirements and Replaces as submit accepts
 * them; otherwise anything the parser reads, invalid combinations and
 * Replaces cycles included.
 */
const clusterOf = (validated: boolean): fc.Arbitrary<SchedulerSnapshot> =>
  fc
    .record({
      units: fc.uniqueArray(
        fc.record({
          name: fc.constantFrom(...NAMES),
          state: fc.constantFrom<JobState>('launched', 'launched', 'loaded', 'inactive'),
          x: xfleet,
        }),
        { selector: (u) => u.name, maxLength: NAMES.length },
      ),
      machines: fc.tuple(
        ...MACHINE_IDS.map((id) =>
          fc.record({
            id: fc.constant(id),
            live: fc.integer({ min: 0, max: 3 }).map((n) => n > 0),
            region: fc.constantFrom(undefined, 'eu', 'us'),
            disk: fc.constantFrom(undefined, 'ssd'),
          }),
        ),
      ),
      placements: fc.array(
        fc.tuple(fc.constantFrom(...NAMES), fc.subarray([...MACHINE_IDS, DEAD], { maxLength: 3 })),
        {
          maxLength: 8,
        },
      ),
    })
    .chain((c) => {
      const live = c.machines.filter((m) => m.live);
      // Machines in a random order: decide must not care.
      return fc.tuple(fc.constant(c), fc.shuffledSubarray(live, { minLength: live.length }));
    })
    .map(([c, machineOrder]) => {
      const units = new Map<string, SchedulerUnit>();
      for (const u of c.units) {
        units.set(u.name, {
          name: u.name,
          desiredState: u.state,
          requirements: validated ? acceptedRequirements(u.name, u.x) : rawRequirements(u.name, u.x),
        });
      }
      // Circular Replaces is refused at submit: break any cycle the generator made.
      for (
        // (no-op when not validating)

        let cycle = validated ? findReplacesCycle(replacesOf(units)) : undefined;
        cycle;
        cycle = findReplacesCycle(replacesOf(units))
      ) {
        const unit = units.get(cycle[0]!)!;
        units.set(unit.name, { ...unit, requirements: { ...unit.requirements, replaces: [] } });
      }
      const machines = new Map(
        machineOrder.map((m) => {
          const metadata: Record<string, string> = {};
          if (m.region !== undefined) metadata['region'] = m.region;
          if (m.disk !== undefined) metadata['disk'] = m.disk;
          return [m.id, { id: m.id, metadata }];
        }),
      );
      const placements = new Map<string, Set<string>>();
      for (const [name, ids] of c.placements) placements.set(name, new Set(ids));
      return { units, machines, placements };
    });

const cluster = clusterOf(true);

function rawRequirements(name: string, x: XFleet): Requirements {
  return parseRequirements(
    parseUnitFile(`[Service]\nExecStart=/bin/true\n[X-Fleet]\n${body(x, new Set())}\n`),
    name,
  );
}

function replacesOf(units: ReadonlyMap<string, SchedulerUnit>): Map<string, Pick<Requirements, 'replaces'>> {
  return new Map([...units].map(([n, u]) => [n, u.requirements]));
}

// RUNS=5000 for a longer hunt.
const RUNS = { numRuns: Number(process.env['RUNS'] ?? 400) };

describe('decide properties (random clusters)', () => {
  it('every decision keeps the invariants and is a fixpoint', () => {
    fc.assert(
      fc.property(cluster, (snap) => {
        assertInvariants(snap, decide(snap));
      }),
      RUNS,
    );
  });

  it('the decision does not depend on map iteration order', () => {
    fc.assert(
      fc.property(cluster, fc.integer(), (snap, seed) => {
        const reordered: SchedulerSnapshot = {
          units: new Map(shuffled([...snap.units], seed)),
          machines: new Map(shuffled([...snap.machines], seed + 1)),
          placements: new Map(
            shuffled([...snap.placements], seed + 2).map(([u, ms]) => [
              u,
              new Set(shuffled([...ms], seed + 3)),
            ]),
          ),
        };
        assert.deepEqual(decide(reordered), decide(snap));
      }),
      RUNS,
    );
  });

  it('from a settled cluster, losing or gaining a machine moves only what must move', () => {
    const moves: ReadonlySet<string> = new Set([REASONS.machineGone, REASONS.peerNotHere, REASONS.replaced]);
    fc.assert(
      fc.property(cluster, fc.nat(), fc.boolean(), (snap, pick, lose) => {
        const settled = { ...snap, placements: applyTasks(snap.placements, decide(snap)) };
        const machines = new Map(settled.machines);
        if (lose) {
          const ids = [...machines.keys()];
          if (ids.length === 0) return;
          machines.delete(ids[pick % ids.length]!);
        } else {
          const spare = MACHINE_IDS.filter((id) => !machines.has(id));
          if (spare.length === 0) return;
          const id = spare[pick % spare.length]!;
          machines.set(id, { id, metadata: pick % 2 === 0 ? { region: 'eu' } : { disk: 'ssd' } });
        }
        const next = { ...settled, machines };
        const decision = decide(next);
        assertInvariants(next, decision);
        for (const t of decision.tasks) {
          if (t.kind === 'unschedule') {
            assert.ok(moves.has(t.reason), `${t.unit} left ${t.machineID}: ${t.reason}`);
          }
        }
      }),
      RUNS,
    );
  });

  it('unvalidated input (invalid combinations, Replaces cycles): decide terminates and keeps the invariants', () => {
    fc.assert(
      fc.property(clusterOf(false), (snap) => {
        assertInvariants(snap, decide(snap));
      }),
      RUNS,
    );
  });
});
