import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type JobState, parseRequirements, parseUnitFile } from '@fleet/core';
import { type Decision, REASONS, type SchedulerSnapshot, type SchedulerUnit, decide } from '@fleet/engine';
import { applyTasks, assertInvariants, placementsOf, random, shuffled } from './decide-support.js';

/** A test cluster: units by name with their [X-Fleet] body, live machines, current placements. */
interface Spec {
  readonly units?: Readonly<Record<string, string>>;
  /** Desired state per unit; `launched` if not listed. */
  readonly states?: Readonly<Record<string, JobState>>;
  /** Machine IDs, or IDs with their metadata. */
  readonly machines?: readonly string[] | Readonly<Record<string, Readonly<Record<string, string>>>>;
  readonly placements?: Readonly<Record<string, readonly string[]>>;
}

function unit(name: string, xfleet: string, desiredState: JobState = 'launched'): SchedulerUnit {
  const options = parseUnitFile(`[Service]\nExecStart=/bin/true\n[X-Fleet]\n${xfleet}\n`);
  return { name, desiredState, requirements: parseRequirements(options, name) };
}

function snapshot(spec: Spec): SchedulerSnapshot {
  const machines = Array.isArray(spec.machines)
    ? spec.machines.map((id) => [id, {}] as const)
    : Object.entries(spec.machines ?? {});
  return {
    units: new Map(
      Object.entries(spec.units ?? {}).map(([name, x]) => [name, unit(name, x, spec.states?.[name])]),
    ),
    machines: new Map(machines.map(([id, metadata]) => [id, { id, metadata }])),
    placements: new Map(Object.entries(spec.placements ?? {}).map(([u, ms]) => [u, new Set(ms)])),
  };
}

/** Decides, checks the invariants every decision must keep, and returns the outcome in plain objects. */
function run(spec: Spec): {
  decision: Decision;
  placed: Record<string, string[]>;
  unplaced: Record<string, string>;
  tasks: string[];
} {
  const snap = snapshot(spec);
  const decision = decide(snap);
  assertInvariants(snap, decision);
  return {
    decision,
    placed: placementsOf(applyTasks(snap.placements, decision)),
    unplaced: Object.fromEntries(decision.unplaced),
    tasks: decision.tasks.map((t) => `${t.kind} ${t.unit} ${t.machineID}: ${t.reason}`),
  };
}

interface Case {
  readonly name: string;
  readonly spec: Spec;
  /** Every placement after the decision (units on no machine omitted). */
  readonly placed: Record<string, string[]>;
  readonly unplaced?: Record<string, string>;
  /** When given, the exact task list (`kind unit machine: reason`). */
  readonly tasks?: string[];
}

function table(title: string, cases: readonly Case[]): void {
  describe(title, () => {
    for (const c of cases) {
      it(c.name, () => {
        const got = run(c.spec);
        assert.deepEqual(got.placed, c.placed);
        assert.deepEqual(got.unplaced, c.unplaced ?? {});
        if (c.tasks !== undefined) assert.deepEqual(got.tasks, c.tasks);
      });
    }
  });
}

const CONFLICT_APACHE = 'X-Conflicts=apache.*.service';

table('placement anywhere, least-loaded', [
  {
    name: 'no machines: the unit waits, saying why',
    spec: { units: { 'hello.service': '' } },
    placed: {},
    unplaced: { 'hello.service': 'no live machines' },
  },
  {
    name: 'one unit goes to the lowest machine ID when all are empty',
    spec: { units: { 'hello.service': '' }, machines: ['m2', 'm3', 'm1'] },
    placed: { 'hello.service': ['m1'] },
    tasks: [`schedule hello.service m1: ${REASONS.placed}`],
  },
  {
    name: 'a new unit goes to the machine with the fewest units',
    spec: {
      units: { 'a.service': '', 'b.service': '', 'c.service': '', 'new.service': '' },
      machines: ['m1', 'm2', 'm3'],
      placements: { 'a.service': ['m1'], 'b.service': ['m1'], 'c.service': ['m2'] },
    },
    placed: { 'a.service': ['m1'], 'b.service': ['m1'], 'c.service': ['m2'], 'new.service': ['m3'] },
    tasks: [`schedule new.service m3: ${REASONS.placed}`],
  },
  {
    name: 'ties on load are broken by machine ID',
    spec: {
      units: { 'a.service': '', 'b.service': '', 'new.service': '' },
      machines: ['m3', 'm1', 'm2'],
      placements: { 'a.service': ['m1'], 'b.service': ['m3'] },
    },
    placed: { 'a.service': ['m1'], 'b.service': ['m3'], 'new.service': ['m2'] },
  },
  {
    name: 'machine IDs compare as strings (m10 before m2)',
    spec: { units: { 'a.service': '', 'b.service': '', 'c.service': '' }, machines: ['m2', 'm10', 'm1'] },
    placed: { 'a.service': ['m1'], 'b.service': ['m10'], 'c.service': ['m2'] },
  },
  {
    name: 'units placed in one decision spread out (load counted as the decision proceeds)',
    spec: {
      units: { 'a.service': '', 'b.service': '', 'c.service': '', 'd.service': '', 'e.service': '' },
      machines: ['m1', 'm2'],
    },
    placed: {
      'a.service': ['m1'],
      'b.service': ['m2'],
      'c.service': ['m1'],
      'd.service': ['m2'],
      'e.service': ['m1'],
    },
  },
  {
    name: 'load counts global units too',
    spec: {
      units: { 'g.service': 'Global=true', 'a.service': '', 'new.service': '' },
      machines: ['m1', 'm2'],
      placements: { 'g.service': ['m1'], 'a.service': ['m2'] },
    },
    // Globals are placed first: g goes onto m2 too, which makes m1 the less loaded.
    placed: { 'a.service': ['m2'], 'g.service': ['m1', 'm2'], 'new.service': ['m1'] },
  },
  {
    name: 'loaded units are placed like launched ones',
    spec: { units: { 'a.service': '' }, states: { 'a.service': 'loaded' }, machines: ['m1'] },
    placed: { 'a.service': ['m1'] },
  },
]);

table('stability: no unnecessary moves', [
  {
    name: 'a validly placed unit stays although another machine is emptier',
    spec: {
      units: { 'a.service': '', 'b.service': '', 'c.service': '' },
      machines: ['m1', 'm2'],
      placements: { 'a.service': ['m1'], 'b.service': ['m1'], 'c.service': ['m1'] },
    },
    placed: { 'a.service': ['m1'], 'b.service': ['m1'], 'c.service': ['m1'] },
    tasks: [],
  },
  {
    name: 'a unit scheduled on two machines keeps the lowest ID and leaves the other',
    spec: { units: { 'a.service': '' }, machines: ['m1', 'm2'], placements: { 'a.service': ['m2', 'm1'] } },
    placed: { 'a.service': ['m1'] },
    tasks: [`unschedule a.service m2: ${REASONS.duplicate}`],
  },
  {
    name: 'a duplicated unit keeps the copy that still satisfies its requirements',
    spec: {
      units: { 'a.service': 'MachineMetadata=disk=ssd' },
      machines: { m1: { disk: 'hdd' }, m2: { disk: 'ssd' } },
      placements: { 'a.service': ['m1', 'm2'] },
    },
    placed: { 'a.service': ['m2'] },
    tasks: [`unschedule a.service m1: ${REASONS.duplicate}`],
  },
]);

table('inactive and destroyed units', [
  {
    name: 'an inactive unit is removed from its machine and not reported unplaced',
    spec: {
      units: { 'a.service': '' },
      states: { 'a.service': 'inactive' },
      machines: ['m1'],
      placements: { 'a.service': ['m1'] },
    },
    placed: {},
    tasks: ['unschedule a.service m1: unit is inactive'],
  },
  {
    name: 'an inactive unit that is nowhere stays nowhere',
    spec: { units: { 'a.service': '' }, states: { 'a.service': 'inactive' }, machines: ['m1'] },
    placed: {},
    tasks: [],
  },
  {
    name: 'placements of a unit that no longer exists are removed',
    spec: { units: { 'b.service': '' }, machines: ['m1'], placements: { 'a.service': ['m1', 'gone'] } },
    placed: { 'b.service': ['m1'] },
    tasks: [
      `unschedule a.service gone: ${REASONS.unitGone}`,
      `unschedule a.service m1: ${REASONS.unitGone}`,
      `schedule b.service m1: ${REASONS.placed}`,
    ],
  },
]);

table('machine loss', [
  {
    name: 'units of a dead machine are re-placed in the same decision; others do not move',
    spec: {
      units: { 'a.service': '', 'b.service': '', 'c.service': '', 'd.service': '' },
      machines: ['m2', 'm3'],
      placements: { 'a.service': ['m1'], 'b.service': ['m1'], 'c.service': ['m2'], 'd.service': ['m2'] },
    },
    placed: { 'a.service': ['m3'], 'b.service': ['m3'], 'c.service': ['m2'], 'd.service': ['m2'] },
    tasks: [
      `unschedule a.service m1: ${REASONS.machineGone}`,
      `unschedule b.service m1: ${REASONS.machineGone}`,
      `schedule a.service m3: ${REASONS.placed}`,
      `schedule b.service m3: ${REASONS.placed}`,
    ],
  },
  {
    name: 'a re-placed unit still honours its constraints',
    spec: {
      units: { 'a.service': 'MachineMetadata=region=eu' },
      machines: { m2: { region: 'us' }, m3: { region: 'eu' } },
      placements: { 'a.service': ['m1'] },
    },
    placed: { 'a.service': ['m3'] },
  },
  {
    name: 'the last machine gone: units wait with a reason',
    spec: { units: { 'a.service': '' }, placements: { 'a.service': ['m1'] } },
    placed: {},
    unplaced: { 'a.service': 'no live machines' },
    tasks: [`unschedule a.service m1: ${REASONS.machineGone}`],
  },
]);

const M1 = 'aaaaaaaa11112222';
const M2 = 'bbbbbbbb33334444';

table('MachineID', [
  {
    name: 'full ID: placed there even if busier',
    spec: {
      units: { 'x.service': '', 'pinned.service': `MachineID=${M1}` },
      machines: [M1, M2],
      placements: { 'x.service': [M1] },
    },
    placed: { 'x.service': [M1], 'pinned.service': [M1] },
    tasks: [`schedule pinned.service ${M1}: ${REASONS.pinned}`],
  },
  {
    name: 'the first 8 characters name the machine too',
    spec: { units: { 'pinned.service': 'MachineID=bbbbbbbb' }, machines: [M1, M2] },
    placed: { 'pinned.service': [M2] },
  },
  {
    name: 'a prefix of another length does not',
    spec: { units: { 'pinned.service': 'MachineID=bbbbbbb' }, machines: [M1, M2] },
    placed: {},
    unplaced: { 'pinned.service': 'MachineID=bbbbbbb is not a live machine' },
  },
  {
    name: 'pinned to a dead machine: waits, never moved elsewhere',
    spec: {
      units: { 'pinned.service': 'MachineID=cccccccc' },
      machines: [M1, M2],
      placements: { 'pinned.service': ['cccccccc5555'] },
    },
    placed: {},
    unplaced: { 'pinned.service': 'MachineID=cccccccc is not a live machine' },
    tasks: [`unschedule pinned.service cccccccc5555: ${REASONS.machineGone}`],
  },
  {
    name: 'placed on a machine it is not pinned to: moved to the pinned one',
    spec: {
      units: { 'pinned.service': `MachineID=${M2}` },
      machines: [M1, M2],
      placements: { 'pinned.service': [M1] },
    },
    placed: { 'pinned.service': [M2] },
    tasks: [
      `unschedule pinned.service ${M1}: ${REASONS.machineIDMismatch}`,
      `schedule pinned.service ${M2}: ${REASONS.pinned}`,
    ],
  },
  {
    name: 'the pinned machine lacks the required metadata',
    spec: {
      units: { 'pinned.service': `MachineID=${M1}\nMachineMetadata=disk=ssd` },
      machines: { [M1]: { disk: 'hdd' }, [M2]: { disk: 'ssd' } },
    },
    placed: {},
    unplaced: { 'pinned.service': `machine ${M1} does not satisfy MachineMetadata=disk=ssd` },
  },
]);

table('MachineOf', [
  {
    name: 'a follower goes where its peer goes (both new)',
    spec: {
      units: { 'x.service': '', 'db.service': '', 'app.service': 'MachineOf=db.service' },
      machines: ['m1', 'm2'],
    },
    // Peers are placed before followers: db (then x) by name, then app.
    placed: { 'app.service': ['m1'], 'db.service': ['m1'], 'x.service': ['m2'] },
    tasks: [
      `schedule app.service m1: ${REASONS.followsPeer}`,
      `schedule db.service m1: ${REASONS.placed}`,
      `schedule x.service m2: ${REASONS.placed}`,
    ],
  },
  {
    name: 'the peer does not exist: the follower waits for it',
    spec: { units: { 'app.service': 'MachineOf=db.service' }, machines: ['m1'] },
    placed: {},
    unplaced: { 'app.service': 'waiting for peer db.service to be placed' },
  },
  {
    name: 'the peer was stopped (inactive): the follower leaves too',
    spec: {
      units: { 'db.service': '', 'app.service': 'MachineOf=db.service' },
      states: { 'db.service': 'inactive' },
      machines: ['m1'],
      placements: { 'db.service': ['m1'], 'app.service': ['m1'] },
    },
    placed: {},
    unplaced: { 'app.service': 'waiting for peer db.service to be placed' },
    tasks: [
      `unschedule app.service m1: ${REASONS.peerNotHere}`,
      `unschedule db.service m1: ${REASONS.unitInactive}`,
    ],
  },
  {
    name: "the peer's machine dies: both move to the same machine in one decision",
    spec: {
      units: { 'db.service': '', 'app.service': 'MachineOf=db.service', 'x.service': '' },
      machines: ['m2', 'm3'],
      placements: { 'db.service': ['m1'], 'app.service': ['m1'], 'x.service': ['m2'] },
    },
    placed: { 'app.service': ['m3'], 'db.service': ['m3'], 'x.service': ['m2'] },
  },
  {
    name: 'the peer moves for another reason (metadata changed): the follower follows',
    spec: {
      units: { 'db.service': 'MachineMetadata=disk=ssd', 'app.service': 'MachineOf=db.service' },
      machines: { m1: { disk: 'hdd' }, m2: { disk: 'ssd' } },
      placements: { 'db.service': ['m1'], 'app.service': ['m1'] },
    },
    placed: { 'app.service': ['m2'], 'db.service': ['m2'] },
    tasks: [
      `unschedule app.service m1: ${REASONS.peerNotHere}`,
      `unschedule db.service m1: ${REASONS.metadataMismatch}`,
      `schedule app.service m2: ${REASONS.followsPeer}`,
      `schedule db.service m2: ${REASONS.placed}`,
    ],
  },
  {
    name: 'a follower found away from its peer joins it',
    spec: {
      units: { 'db.service': '', 'app.service': 'MachineOf=db.service' },
      machines: ['m1', 'm2'],
      placements: { 'db.service': ['m1'], 'app.service': ['m2'] },
    },
    placed: { 'app.service': ['m1'], 'db.service': ['m1'] },
  },
  {
    name: 'a chain (c follows b follows a) ends on one machine',
    spec: {
      units: {
        'c.service': 'MachineOf=b.service',
        'b.service': 'MachineOf=a.service',
        'a.service': '',
        'x.service': '',
      },
      machines: ['m1', 'm2'],
    },
    placed: { 'a.service': ['m1'], 'b.service': ['m1'], 'c.service': ['m1'], 'x.service': ['m2'] },
  },
  {
    name: 'two peers on different machines: the follower cannot be placed',
    spec: {
      units: { 'a.service': '', 'b.service': '', 'f.service': 'MachineOf=a.service b.service' },
      machines: ['m1', 'm2'],
      placements: { 'a.service': ['m1'], 'b.service': ['m2'] },
    },
    placed: { 'a.service': ['m1'], 'b.service': ['m2'] },
    unplaced: { 'f.service': 'MachineOf peers a.service and b.service are not on one machine' },
  },
  {
    name: 'two peers on one machine: the follower joins them',
    spec: {
      units: { 'a.service': '', 'b.service': '', 'f.service': 'MachineOf=a.service b.service' },
      machines: ['m1', 'm2'],
      placements: { 'a.service': ['m2'], 'b.service': ['m2'] },
    },
    placed: { 'a.service': ['m2'], 'b.service': ['m2'], 'f.service': ['m2'] },
  },
  {
    name: 'a MachineOf cycle is never placed, and says so',
    spec: {
      units: {
        'a.service': 'MachineOf=b.service',
        'b.service': 'MachineOf=a.service',
        'c.service': 'MachineOf=a.service',
      },
      machines: ['m1'],
      placements: { 'a.service': ['m1'], 'b.service': ['m1'] },
    },
    placed: {},
    unplaced: {
      'a.service': 'MachineOf requirements form a cycle: a.service, b.service',
      'b.service': 'MachineOf requirements form a cycle: a.service, b.service',
      'c.service': 'waiting for peer a.service to be placed',
    },
    tasks: [
      `unschedule a.service m1: ${REASONS.machineOfCycle}`,
      `unschedule b.service m1: ${REASONS.machineOfCycle}`,
    ],
  },
  {
    name: 'naming itself in MachineOf is harmless',
    spec: { units: { 'a.service': 'MachineOf=a.service' }, machines: ['m1'] },
    placed: { 'a.service': ['m1'] },
  },
  {
    name: "the peer's machine has a unit the follower conflicts with",
    spec: {
      units: {
        'db.service': '',
        'x.service': '',
        'app.service': 'MachineOf=db.service\nConflicts=x.service',
      },
      machines: ['m1', 'm2'],
      placements: { 'db.service': ['m1'], 'x.service': ['m1'] },
    },
    placed: { 'db.service': ['m1'], 'x.service': ['m1'] },
    unplaced: { 'app.service': 'conflicts with x.service on machine m1' },
  },
  {
    name: "the peer's machine lacks the follower's metadata",
    spec: {
      units: { 'db.service': '', 'app.service': 'MachineOf=db.service\nMachineMetadata=disk=ssd' },
      machines: { m1: { disk: 'hdd' }, m2: { disk: 'ssd' } },
      placements: { 'db.service': ['m1'] },
    },
    placed: { 'db.service': ['m1'] },
    unplaced: { 'app.service': 'the machine of peer db.service does not satisfy MachineMetadata=disk=ssd' },
  },
  {
    name: 'a global peer: the follower goes to the least-loaded machine running it',
    spec: {
      units: {
        'g.service': 'Global=true\nMachineMetadata=role=web',
        'f.service': 'MachineOf=g.service',
        'x.service': '',
      },
      machines: { m1: { role: 'web' }, m2: { role: 'web' }, m3: {} },
      placements: { 'x.service': ['m1'] },
    },
    placed: { 'f.service': ['m2'], 'g.service': ['m1', 'm2'], 'x.service': ['m1'] },
  },
]);

table('MachineMetadata', [
  {
    name: 'one key: only matching machines',
    spec: {
      units: { 'a.service': 'MachineMetadata=region=eu' },
      machines: { m1: { region: 'us' }, m2: { region: 'eu' }, m3: {} },
    },
    placed: { 'a.service': ['m2'] },
  },
  {
    name: 'values of one key are alternatives (OR), least-loaded among them',
    spec: {
      units: { 'x.service': '', 'a.service': 'MachineMetadata="region=eu" "region=us"' },
      machines: { m1: { region: 'us' }, m2: { region: 'eu' }, m3: { region: 'ap' } },
      placements: { 'x.service': ['m1'] },
    },
    placed: { 'a.service': ['m2'], 'x.service': ['m1'] },
  },
  {
    name: 'different keys must all match (AND)',
    spec: {
      units: { 'a.service': 'MachineMetadata=region=eu\nMachineMetadata=disk=ssd' },
      machines: {
        m1: { region: 'eu', disk: 'hdd' },
        m2: { region: 'us', disk: 'ssd' },
        m3: { region: 'eu', disk: 'ssd' },
      },
    },
    placed: { 'a.service': ['m3'] },
  },
  {
    name: 'nothing matches: unplaced, naming the requirement',
    spec: { units: { 'a.service': 'MachineMetadata=region=eu' }, machines: { m1: { region: 'us' }, m2: {} } },
    placed: {},
    unplaced: { 'a.service': 'no machine satisfies MachineMetadata=region=eu' },
  },
  {
    name: 'several items are all named',
    spec: {
      units: { 'a.service': 'MachineMetadata="region=eu" "region=us" "disk=ssd"' },
      machines: { m1: { region: 'us' } },
    },
    placed: {},
    unplaced: { 'a.service': 'no machine satisfies MachineMetadata=region=eu region=us disk=ssd' },
  },
  {
    name: 'dynamic metadata changed under a placed unit: it moves',
    spec: {
      units: { 'a.service': 'MachineMetadata=state=ready' },
      machines: { m1: { state: 'draining' }, m2: { state: 'ready' } },
      placements: { 'a.service': ['m1'] },
    },
    placed: { 'a.service': ['m2'] },
    tasks: [
      `unschedule a.service m1: ${REASONS.metadataMismatch}`,
      `schedule a.service m2: ${REASONS.placed}`,
    ],
  },
  {
    name: 'metadata changed and no machine fits any more: unscheduled and unplaced',
    spec: {
      units: { 'a.service': 'MachineMetadata=state=ready' },
      machines: { m1: { state: 'draining' } },
      placements: { 'a.service': ['m1'] },
    },
    placed: {},
    unplaced: { 'a.service': 'no machine satisfies MachineMetadata=state=ready' },
  },
  {
    name: 'metadata keys are matched exactly, not as object properties',
    spec: { units: { 'a.service': 'MachineMetadata=constructor=x' }, machines: { m1: {} } },
    placed: {},
    unplaced: { 'a.service': 'no machine satisfies MachineMetadata=constructor=x' },
  },
]);

table('Conflicts', [
  {
    name: 'story: apache.1 and apache.2 on distinct machines',
    spec: {
      units: { 'apache.1.service': CONFLICT_APACHE, 'apache.2.service': CONFLICT_APACHE },
      machines: ['960a9f62', 'deb19cd2'],
    },
    placed: { 'apache.1.service': ['960a9f62'], 'apache.2.service': ['deb19cd2'] },
  },
  {
    name: 'story: a third replica on two machines waits, saying why',
    spec: {
      units: {
        'apache.1.service': CONFLICT_APACHE,
        'apache.2.service': CONFLICT_APACHE,
        'apache.3.service': CONFLICT_APACHE,
      },
      machines: ['960a9f62', 'deb19cd2'],
      placements: { 'apache.1.service': ['960a9f62'], 'apache.2.service': ['deb19cd2'] },
    },
    placed: { 'apache.1.service': ['960a9f62'], 'apache.2.service': ['deb19cd2'] },
    unplaced: {
      'apache.3.service': 'conflicts with units on every machine: apache.1.service, apache.2.service',
    },
    tasks: [],
  },
  {
    name: 'story: … and is placed when a third machine joins; the others stay',
    spec: {
      units: {
        'apache.1.service': CONFLICT_APACHE,
        'apache.2.service': CONFLICT_APACHE,
        'apache.3.service': CONFLICT_APACHE,
      },
      machines: ['960a9f62', 'deb19cd2', '0b1e2f3a'],
      placements: { 'apache.1.service': ['960a9f62'], 'apache.2.service': ['deb19cd2'] },
    },
    placed: {
      'apache.1.service': ['960a9f62'],
      'apache.2.service': ['deb19cd2'],
      'apache.3.service': ['0b1e2f3a'],
    },
    tasks: [`schedule apache.3.service 0b1e2f3a: ${REASONS.placed}`],
  },
  {
    name: 'five mutually conflicting units on three machines: three placed apart, two wait',
    spec: {
      units: Object.fromEntries([1, 2, 3, 4, 5].map((i) => [`r.${i}.service`, 'Conflicts=r.*.service'])),
      machines: ['m1', 'm2', 'm3'],
    },
    placed: { 'r.1.service': ['m1'], 'r.2.service': ['m2'], 'r.3.service': ['m3'] },
    unplaced: {
      'r.4.service': 'conflicts with units on every machine: r.1.service, r.2.service, r.3.service',
      'r.5.service': 'conflicts with units on every machine: r.1.service, r.2.service, r.3.service',
    },
  },
  {
    name: 'one conflicting unit on the only machine is named alone',
    spec: {
      units: { 'apache.1.service': CONFLICT_APACHE, 'apache.2.service': CONFLICT_APACHE },
      machines: ['m1'],
      placements: { 'apache.1.service': ['m1'] },
    },
    placed: { 'apache.1.service': ['m1'] },
    unplaced: { 'apache.2.service': 'conflicts with apache.1.service on every machine' },
  },
  {
    name: 'one-way: the new unit names the placed one',
    spec: {
      units: { 'a.service': 'Conflicts=b.service', 'b.service': '' },
      machines: ['m1'],
      placements: { 'b.service': ['m1'] },
    },
    placed: { 'b.service': ['m1'] },
    unplaced: { 'a.service': 'conflicts with b.service on every machine' },
  },
  {
    name: 'one-way: the placed unit names the new one',
    spec: {
      units: { 'a.service': 'Conflicts=b.service', 'b.service': '' },
      machines: ['m1'],
      placements: { 'a.service': ['m1'] },
    },
    placed: { 'a.service': ['m1'] },
    unplaced: { 'b.service': 'conflicts with a.service on every machine' },
  },
  {
    name: 'one-way with a glob on the placed unit',
    spec: {
      units: {
        'a.service': 'Conflicts=b*',
        'b.service': '',
        'c.service': '',
        'x.service': '',
        'y.service': '',
      },
      machines: ['m1', 'm2'],
      placements: { 'a.service': ['m1'], 'x.service': ['m2'], 'y.service': ['m2'] },
    },
    // m1 is the less loaded, but only c may join a there.
    placed: {
      'a.service': ['m1'],
      'b.service': ['m2'],
      'c.service': ['m1'],
      'x.service': ['m2'],
      'y.service': ['m2'],
    },
  },
  {
    name: 'several globs: any of them keeps units apart',
    spec: {
      units: {
        'a.service': 'Conflicts="b.*.service" "c.service"',
        'b.1.service': '',
        'c.service': '',
        'd.service': '',
      },
      machines: ['m1', 'm2', 'm3'],
      placements: { 'b.1.service': ['m1'], 'c.service': ['m2'], 'd.service': ['m3'] },
    },
    placed: { 'a.service': ['m3'], 'b.1.service': ['m1'], 'c.service': ['m2'], 'd.service': ['m3'] },
  },
  {
    name: 'a glob must match the whole name, suffix included',
    spec: {
      units: {
        'x.service': 'Conflicts=web.*.service',
        'web.1.socket': '',
        'y.service': '',
        'web.2.service': '',
      },
      machines: ['m1', 'm2'],
      placements: { 'web.1.socket': ['m1'], 'y.service': ['m1'], 'web.2.service': ['m2'] },
    },
    placed: { 'web.1.socket': ['m1'], 'web.2.service': ['m2'], 'x.service': ['m1'], 'y.service': ['m1'] },
  },
  {
    name: '? and [...] globs',
    spec: {
      units: {
        'a.service': 'Conflicts="db?.service" "cache-[0-9].service"',
        'db1.service': '',
        'cache-7.service': '',
      },
      machines: ['m1', 'm2'],
      placements: { 'db1.service': ['m1'], 'cache-7.service': ['m2'] },
    },
    placed: { 'cache-7.service': ['m2'], 'db1.service': ['m1'] },
    unplaced: { 'a.service': 'conflicts with units on every machine: cache-7.service, db1.service' },
  },
  {
    name: 'a unit never conflicts with itself',
    spec: {
      units: { 'apache.1.service': CONFLICT_APACHE },
      machines: ['m1'],
      placements: { 'apache.1.service': ['m1'] },
    },
    placed: { 'apache.1.service': ['m1'] },
    tasks: [],
  },
  {
    name: 'a literal glob naming no unit is harmless',
    spec: { units: { 'a.service': 'Conflicts=nothing.service' }, machines: ['m1'] },
    placed: { 'a.service': ['m1'] },
  },
  {
    name: 'two conflicting units found on one machine: the later (by name) moves',
    spec: {
      units: { 'a.service': 'Conflicts=b.service', 'b.service': '' },
      machines: ['m1', 'm2'],
      placements: { 'a.service': ['m1'], 'b.service': ['m1'] },
    },
    placed: { 'a.service': ['m1'], 'b.service': ['m2'] },
    tasks: [`unschedule b.service m1: ${REASONS.conflict}`, `schedule b.service m2: ${REASONS.placed}`],
  },
  {
    name: 'conflict with metadata narrowing: "every eligible machine"',
    spec: {
      units: { 'a.service': 'Conflicts=b.service\nMachineMetadata=disk=ssd', 'b.service': '' },
      machines: { m1: { disk: 'ssd' }, m2: {} },
      placements: { 'b.service': ['m1'] },
    },
    placed: { 'b.service': ['m1'] },
    unplaced: { 'a.service': 'conflicts with b.service on every eligible machine' },
  },
  {
    name: 'a long list of conflicting units is cut short',
    spec: {
      units: Object.fromEntries(
        [1, 2, 3, 4, 5, 6, 7].map((i) => [`r.${i}.service`, 'Conflicts=r.*.service']),
      ),
      machines: ['m1', 'm2', 'm3', 'm4', 'm5', 'm6'],
    },
    placed: Object.fromEntries([1, 2, 3, 4, 5, 6].map((i) => [`r.${i}.service`, [`m${i}`]])),
    unplaced: {
      'r.7.service':
        'conflicts with units on every machine: r.1.service, r.2.service, r.3.service, r.4.service, r.5.service, …',
    },
  },
]);

table('Global', [
  {
    name: 'on every live machine',
    spec: { units: { 'g.service': 'Global=true' }, machines: ['m1', 'm2', 'm3'] },
    placed: { 'g.service': ['m1', 'm2', 'm3'] },
    tasks: [
      `schedule g.service m1: ${REASONS.global}`,
      `schedule g.service m2: ${REASONS.global}`,
      `schedule g.service m3: ${REASONS.global}`,
    ],
  },
  {
    name: 'a new machine gets it; nothing else changes',
    spec: {
      units: { 'g.service': 'Global=yes' },
      machines: ['m1', 'm2', 'm3'],
      placements: { 'g.service': ['m1', 'm2'] },
    },
    placed: { 'g.service': ['m1', 'm2', 'm3'] },
    tasks: [`schedule g.service m3: ${REASONS.global}`],
  },
  {
    name: 'a dead machine only loses it',
    spec: {
      units: { 'g.service': 'Global=true' },
      machines: ['m2'],
      placements: { 'g.service': ['m1', 'm2'] },
    },
    placed: { 'g.service': ['m2'] },
    tasks: [`unschedule g.service m1: ${REASONS.machineGone}`],
  },
  {
    name: 'only machines with the metadata',
    spec: {
      units: { 'g.service': 'Global=true\nMachineMetadata=role=web' },
      machines: { m1: { role: 'web' }, m2: { role: 'db' }, m3: { role: 'web' } },
    },
    placed: { 'g.service': ['m1', 'm3'] },
  },
  {
    name: 'a machine whose metadata changed loses it',
    spec: {
      units: { 'g.service': 'Global=true\nMachineMetadata=role=web' },
      machines: { m1: { role: 'web' }, m2: { role: 'db' } },
      placements: { 'g.service': ['m1', 'm2'] },
    },
    placed: { 'g.service': ['m1'] },
    tasks: [`unschedule g.service m2: ${REASONS.metadataMismatch}`],
  },
  {
    name: 'no eligible machine: reported unplaced',
    spec: { units: { 'g.service': 'Global=true\nMachineMetadata=role=web' }, machines: { m1: {} } },
    placed: {},
    unplaced: { 'g.service': 'no machine satisfies MachineMetadata=role=web' },
  },
  {
    name: 'a new global skips a machine where a conflicting unit is placed',
    spec: {
      units: { 'g.service': 'Global=true\nConflicts=x.service', 'x.service': '' },
      machines: ['m1', 'm2'],
      placements: { 'x.service': ['m1'] },
    },
    placed: { 'g.service': ['m2'], 'x.service': ['m1'] },
  },
  {
    name: 'a new unit avoids machines where a conflicting global runs',
    spec: {
      units: { 'g.service': 'Global=true\nMachineMetadata=role=web', 'x.service': 'Conflicts=g.service' },
      machines: { m1: { role: 'web' }, m2: {} },
      placements: { 'g.service': ['m1'] },
    },
    placed: { 'g.service': ['m1'], 'x.service': ['m2'] },
  },
  {
    name: 'a unit conflicting with a global that runs everywhere waits',
    spec: {
      units: { 'g.service': 'Global=true', 'x.service': 'Conflicts=g.service' },
      machines: ['m1', 'm2'],
      placements: { 'g.service': ['m1', 'm2'] },
    },
    placed: { 'g.service': ['m1', 'm2'] },
    unplaced: { 'x.service': 'conflicts with g.service on every machine' },
  },
  {
    name: 'a global and a non-global both new: the global is placed first',
    spec: {
      units: { 'g.service': 'Global=true', 'x.service': 'Conflicts=g.service' },
      machines: ['m1', 'm2'],
    },
    placed: { 'g.service': ['m1', 'm2'] },
    unplaced: { 'x.service': 'conflicts with g.service on every machine' },
  },
  {
    name: 'a global and a non-global found together in conflict: the non-global keeps the machine',
    spec: {
      units: { 'g.service': 'Global=true', 'x.service': 'Conflicts=g.service' },
      machines: ['m1', 'm2'],
      placements: { 'g.service': ['m1', 'm2'], 'x.service': ['m1'] },
    },
    placed: { 'g.service': ['m2'], 'x.service': ['m1'] },
    tasks: [`unschedule g.service m1: ${REASONS.conflict}`],
  },
  {
    name: 'two conflicting globals: the first by name takes every machine',
    spec: {
      units: { 'g1.service': 'Global=true\nConflicts=g2.service', 'g2.service': 'Global=true' },
      machines: ['m1', 'm2'],
    },
    placed: { 'g1.service': ['m1', 'm2'] },
    unplaced: { 'g2.service': 'conflicts with g1.service on every machine' },
  },
  {
    name: 'global units conflicting with each other by a shared glob keep their machines',
    spec: {
      units: {
        'g1.service': 'Global=true\nConflicts=g*.service',
        'g2.service': 'Global=true\nConflicts=g*.service',
      },
      machines: ['m1', 'm2', 'm3'],
      placements: { 'g1.service': ['m1'], 'g2.service': ['m2'] },
    },
    placed: { 'g1.service': ['m1', 'm3'], 'g2.service': ['m2'] },
  },
]);

table('Replaces', [
  {
    name: 'the replacer takes the machine of the replaced unit, which moves',
    spec: {
      units: { 'old.service': '', 'new.service': 'Replaces=old.service', 'x.service': '' },
      machines: ['m1', 'm2', 'm3'],
      placements: { 'old.service': ['m3'], 'x.service': ['m1'] },
    },
    placed: { 'new.service': ['m3'], 'old.service': ['m2'], 'x.service': ['m1'] },
    tasks: [
      `unschedule old.service m3: ${REASONS.replaced}`,
      `schedule new.service m3: ${REASONS.takesOver}`,
      `schedule old.service m2: ${REASONS.placed}`,
    ],
  },
  {
    name: 'the replaced unit has nowhere else to go: it waits',
    spec: {
      units: { 'old.service': '', 'new.service': 'Replaces=old.service' },
      machines: ['m1'],
      placements: { 'old.service': ['m1'] },
    },
    placed: { 'new.service': ['m1'] },
    unplaced: { 'old.service': 'conflicts with new.service on every machine' },
    tasks: [
      `unschedule old.service m1: ${REASONS.replaced}`,
      `schedule new.service m1: ${REASONS.takesOver}`,
    ],
  },
  {
    name: "the replaced unit's machine does not suit the replacer: placed elsewhere, nothing moves",
    spec: {
      units: { 'old.service': '', 'new.service': 'Replaces=old.service\nMachineMetadata=disk=ssd' },
      machines: { m1: { disk: 'hdd' }, m2: { disk: 'ssd' } },
      placements: { 'old.service': ['m1'] },
    },
    placed: { 'new.service': ['m2'], 'old.service': ['m1'] },
  },
  {
    name: 'a glob: the least-loaded machine among the replaced units is taken',
    spec: {
      units: {
        'v1.a.service': '',
        'v1.b.service': '',
        'x.service': '',
        'v2.service': 'Replaces=v1.*.service',
      },
      machines: ['m1', 'm2', 'm3'],
      placements: { 'v1.a.service': ['m1'], 'x.service': ['m1'], 'v1.b.service': ['m2'] },
    },
    placed: { 'v1.a.service': ['m1'], 'v1.b.service': ['m3'], 'v2.service': ['m2'], 'x.service': ['m1'] },
  },
  {
    name: "the replaced unit's followers move with it",
    spec: {
      units: {
        'old.service': '',
        'side.service': 'MachineOf=old.service',
        'new.service': 'Replaces=old.service',
      },
      machines: ['m1', 'm2'],
      placements: { 'old.service': ['m1'], 'side.service': ['m1'] },
    },
    placed: { 'new.service': ['m1'], 'old.service': ['m2'], 'side.service': ['m2'] },
    tasks: [
      `unschedule old.service m1: ${REASONS.replaced}`,
      `unschedule side.service m1: ${REASONS.peerNotHere}`,
      `schedule new.service m1: ${REASONS.takesOver}`,
      `schedule old.service m2: ${REASONS.placed}`,
      `schedule side.service m2: ${REASONS.followsPeer}`,
    ],
  },
  {
    name: 'already apart: nothing moves',
    spec: {
      units: { 'old.service': '', 'new.service': 'Replaces=old.service' },
      machines: ['m1', 'm2'],
      placements: { 'old.service': ['m1'], 'new.service': ['m2'] },
    },
    placed: { 'new.service': ['m2'], 'old.service': ['m1'] },
    tasks: [],
  },
  {
    name: 'found on one machine: the replaced unit moves, even if it sorts first',
    spec: {
      units: { 'a.service': '', 'b.service': 'Replaces=a.service' },
      machines: ['m1', 'm2'],
      placements: { 'a.service': ['m1'], 'b.service': ['m1'] },
    },
    placed: { 'a.service': ['m2'], 'b.service': ['m1'] },
    tasks: [`unschedule a.service m1: ${REASONS.replaced}`, `schedule a.service m2: ${REASONS.placed}`],
  },
  {
    name: 'both new: the replaced unit is placed first, then gives its machine up',
    spec: { units: { 'a.service': '', 'b.service': 'Replaces=a.service' }, machines: ['m1', 'm2'] },
    placed: { 'a.service': ['m2'], 'b.service': ['m1'] },
  },
  {
    name: 'a Replaces cycle (refused at submit) is treated as no-replace, without looping',
    spec: {
      units: { 'a.service': 'Replaces=b.service', 'b.service': 'Replaces=a.service', 'c.service': '' },
      machines: ['m1', 'm2'],
      placements: { 'a.service': ['m1'], 'c.service': ['m2'] },
    },
    placed: { 'a.service': ['m1'], 'b.service': ['m2'], 'c.service': ['m2'] },
  },
  {
    name: 'a chain (c replaces b replaces a): each placement takes the machine of the unit it replaces',
    spec: {
      units: { 'a.service': '', 'b.service': 'Replaces=a.service', 'c.service': 'Replaces=b.service' },
      machines: ['m1', 'm2', 'm3'],
      placements: { 'a.service': ['m1'], 'b.service': ['m2'] },
    },
    placed: { 'a.service': ['m3'], 'b.service': ['m1'], 'c.service': ['m2'] },
  },
]);

describe('decisions', () => {
  it('list unschedules first, then schedules, each by unit and machine', () => {
    const { decision } = run({
      units: { 'b.service': '', 'a.service': '', 'g.service': 'Global=true', 'z.service': '' },
      states: { 'z.service': 'inactive' },
      machines: ['m2', 'm1'],
      placements: { 'z.service': ['m2', 'm1'], 'b.service': ['m9'], 'c.service': ['m1'] },
    });
    const keys = decision.tasks.map((t) => [t.kind, t.unit, t.machineID]);
    assert.deepEqual(keys, [
      ['unschedule', 'b.service', 'm9'],
      ['unschedule', 'c.service', 'm1'],
      ['unschedule', 'z.service', 'm1'],
      ['unschedule', 'z.service', 'm2'],
      ['schedule', 'a.service', 'm1'],
      ['schedule', 'b.service', 'm2'],
      ['schedule', 'g.service', 'm1'],
      ['schedule', 'g.service', 'm2'],
    ]);
  });

  it('do not depend on the iteration order of the snapshot maps', () => {
    const units: Record<string, string> = {};
    for (let i = 0; i < 12; i++) units[`web.${i}.service`] = 'Conflicts=web.*.service';
    for (let i = 0; i < 12; i++) units[`side.${i}.service`] = `MachineOf=web.${i}.service`;
    for (let i = 0; i < 12; i++) units[`app.${i}.service`] = i % 2 === 0 ? 'MachineMetadata=disk=ssd' : '';
    units['g.service'] = 'Global=true\nMachineMetadata=disk=ssd';
    units['new.service'] = 'Replaces=app.1.service';
    const machines: Record<string, Record<string, string>> = {};
    for (let i = 0; i < 9; i++) machines[`m${i}`] = i % 3 === 0 ? { disk: 'ssd' } : {};
    const spec: Spec = {
      units,
      machines,
      placements: { 'web.0.service': ['m3', 'm4'], 'app.1.service': ['m1'], 'side.3.service': ['m7'] },
    };
    const base = snapshot(spec);
    const want = decide(base);
    assert.ok(want.tasks.length > 20);
    for (let seed = 1; seed <= 20; seed++) {
      const shuffledSnapshot: SchedulerSnapshot = {
        units: new Map(shuffled([...base.units], seed)),
        machines: new Map(shuffled([...base.machines], seed + 100)),
        placements: new Map(
          shuffled([...base.placements], seed + 200).map(([u, ms]) => [u, new Set(shuffled([...ms], seed))]),
        ),
      };
      assert.deepEqual(decide(shuffledSnapshot), want);
    }
  });

  it('do not modify the snapshot', () => {
    const snap = snapshot({
      units: { 'a.service': '' },
      machines: ['m1'],
      placements: { 'a.service': ['m9'] },
    });
    decide(snap);
    assert.deepEqual([...snap.placements], [['a.service', new Set(['m9'])]]);
    assert.equal(snap.units.size, 1);
  });
});

describe('larger clusters (indexes, trees, many conflicts)', () => {
  /** A seeded mixed cluster, big enough that metadata selectors use load trees (> 32 machines). */
  function mixed(seed: number): Spec {
    const next = random(seed);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
    const machines: Record<string, Record<string, string>> = {};
    for (let i = 0; i < 90; i++) {
      const id =
        Math.floor(next() * 0xffffffff)
          .toString(16)
          .padStart(8, '0') + String(i).padStart(4, '0');
      machines[id] = next() < 0.9 ? { region: pick(['eu', 'us']), disk: pick(['ssd', 'hdd']) } : {};
    }
    const units: Record<string, string> = {};
    for (let g = 0; g < 40; g++) {
      const size = 1 + Math.floor(next() * 6);
      for (let k = 0; k < size; k++) units[`web-${g}.${k}.service`] = `Conflicts=web-${g}.*.service`;
    }
    const apps: string[] = [];
    for (let i = 0; i < 150; i++) {
      const name = `app-${i}.service`;
      apps.push(name);
      units[name] = next() < 0.3 ? `MachineMetadata=region=${pick(['eu', 'us'])}` : '';
    }
    for (let i = 0; i < 40; i++) units[`side-${i}.service`] = `MachineOf=${pick(apps)}`;
    for (let i = 0; i < 30; i++) units[`reg-${i}.service`] = 'MachineMetadata="region=eu" "disk=ssd"';
    for (let i = 0; i < 5; i++) units[`new-${i}.service`] = `Replaces=${pick(apps)}`;
    units['agent.service'] = 'Global=true\nMachineMetadata=disk=ssd\nConflicts=web-0.*.service';
    units['log.service'] = 'Global=true';
    units['canary.service'] = 'Conflicts=*.service';
    const states: Record<string, JobState> = {};
    for (const name of Object.keys(units)) if (next() < 0.1) states[name] = pick(['inactive', 'loaded']);
    return { units, machines, states };
  }

  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: cold start, then steady, then a machine lost and one added`, () => {
      const spec = mixed(seed);
      const cold = snapshot(spec);
      const first = decide(cold);
      assert.ok(first.tasks.length > 300, 'most units are placed');
      const settled = { ...cold, placements: assertInvariants(cold, first) };

      const ids = [...settled.machines.keys()].sort();
      const busiest = ids.reduce((a, b) =>
        [...settled.placements.values()].filter((ms) => ms.has(b)).length >
        [...settled.placements.values()].filter((ms) => ms.has(a)).length
          ? b
          : a,
      );
      const machines = new Map(settled.machines);
      machines.delete(busiest);
      machines.set('ffffffff0000', { id: 'ffffffff0000', metadata: { region: 'eu', disk: 'ssd' } });
      const next = { ...settled, machines };
      const second = decide(next);
      assertInvariants(next, second);
      // Only units of the lost machine move, plus their MachineOf followers and
      // units a re-placed replacer takes the machine of.
      for (const t of second.tasks) {
        if (t.kind === 'unschedule') {
          assert.ok(
            [REASONS.machineGone, REASONS.peerNotHere, REASONS.replaced].some((r) => r === t.reason),
            `${t.unit}: ${t.reason}`,
          );
        }
      }
      assert.ok(second.tasks.some((t) => t.kind === 'schedule' && t.machineID === 'ffffffff0000'));
    });
  }
});
