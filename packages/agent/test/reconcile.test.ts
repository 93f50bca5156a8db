import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TASK_REASONS, computeTasks, isStartedState, type CurrentUnit, type DesiredUnit } from '@fleet/agent';

const d = (entries: Record<string, [string, 'loaded' | 'launched']>) =>
  new Map<string, DesiredUnit>(Object.entries(entries).map(([k, [hash, state]]) => [k, { hash, state }]));
const c = (entries: Record<string, [string, 'loaded' | 'launched']>) =>
  new Map<string, CurrentUnit>(Object.entries(entries).map(([k, [hash, state]]) => [k, { hash, state }]));
const show = (tasks: ReturnType<typeof computeTasks>) =>
  tasks.map((t) => `${t.kind}${t.unit ? ` ${t.unit}` : ''}`);

describe('agent computeTasks', () => {
  const cases: Array<[string, Map<string, DesiredUnit>, Map<string, CurrentUnit>, string[]]> = [
    ['nothing to do', d({}), c({}), []],
    [
      'steady state launched',
      d({ 'a.service': ['h1', 'launched'] }),
      c({ 'a.service': ['h1', 'launched'] }),
      [],
    ],
    ['steady state loaded', d({ 'a.service': ['h1', 'loaded'] }), c({ 'a.service': ['h1', 'loaded'] }), []],
    [
      'new loaded unit: load + one reload',
      d({ 'a.service': ['h1', 'loaded'] }),
      c({}),
      ['load a.service', 'reload'],
    ],
    [
      'new launched unit: load, reload, start',
      d({ 'a.service': ['h1', 'launched'] }),
      c({}),
      ['load a.service', 'reload', 'start a.service'],
    ],
    [
      'start a loaded unit: no reload',
      d({ 'a.service': ['h1', 'launched'] }),
      c({ 'a.service': ['h1', 'loaded'] }),
      ['start a.service'],
    ],
    [
      'stop a launched unit',
      d({ 'a.service': ['h1', 'loaded'] }),
      c({ 'a.service': ['h1', 'launched'] }),
      ['stop a.service'],
    ],
    [
      'unit no longer placed: unload + reload',
      d({}),
      c({ 'a.service': ['h1', 'launched'] }),
      ['unload a.service', 'reload'],
    ],
    [
      'changed file of a running unit: unload, load, reload, start',
      d({ 'a.service': ['h2', 'launched'] }),
      c({ 'a.service': ['h1', 'launched'] }),
      ['unload a.service', 'load a.service', 'reload', 'start a.service'],
    ],
    [
      'changed file of a loaded unit stays loaded',
      d({ 'a.service': ['h2', 'loaded'] }),
      c({ 'a.service': ['h1', 'launched'] }),
      ['unload a.service', 'load a.service', 'reload'],
    ],
    [
      'order: unload, load, reload, stop, start; by name within a kind; one reload',
      d({
        'b.service': ['h', 'launched'],
        'a.service': ['h', 'launched'],
        's.service': ['h', 'loaded'],
        'z.service': ['h', 'launched'],
      }),
      c({
        'x.service': ['h', 'launched'],
        's.service': ['h', 'launched'],
        'z.service': ['h', 'loaded'],
        'w.service': ['h', 'loaded'],
      }),
      [
        'unload w.service',
        'unload x.service',
        'load a.service',
        'load b.service',
        'reload',
        'stop s.service',
        'start a.service',
        'start b.service',
        'start z.service',
      ],
    ],
  ];
  for (const [name, desired, current, want] of cases) {
    it(name, () => assert.deepEqual(show(computeTasks(desired, current)), want));
  }

  it('every task carries a reason from the constant map', () => {
    const tasks = computeTasks(
      d({ 'a.service': ['h2', 'launched'], 'n.service': ['h', 'loaded'] }),
      c({ 'a.service': ['h1', 'loaded'], 'o.service': ['h', 'loaded'] }),
    );
    const reasons = new Set<string>(Object.values(TASK_REASONS));
    assert.ok(tasks.length > 0);
    for (const t of tasks) assert.ok(reasons.has(t.reason), t.reason);
    assert.equal(
      tasks.find((t) => t.kind === 'unload' && t.unit === 'o.service')?.reason,
      TASK_REASONS.notScheduled,
    );
    assert.equal(
      tasks.find((t) => t.kind === 'unload' && t.unit === 'a.service')?.reason,
      TASK_REASONS.changed,
    );
  });

  it('is deterministic regardless of map insertion order', () => {
    const names = Array.from({ length: 20 }, (_, i) => `u${i}.service`);
    const mk = (order: string[]) =>
      computeTasks(
        new Map(order.map((n, i) => [n, { hash: 'h', state: i % 2 ? 'launched' : 'loaded' } as DesiredUnit])),
        new Map(
          order
            .slice(5)
            .map((n) => [n, { hash: n.length % 2 ? 'h' : 'x', state: 'launched' } as CurrentUnit]),
        ),
      );
    const sortedDesired = [...names];
    const shuffled = [...names].reverse();
    // same content, different insertion order
    const a = mk(sortedDesired).map((t) => `${t.kind}:${t.unit}`);
    const b = computeTasks(
      new Map(
        shuffled.map((n) => [
          n,
          { hash: 'h', state: names.indexOf(n) % 2 ? 'launched' : 'loaded' } as DesiredUnit,
        ]),
      ),
      new Map(
        shuffled
          .filter((n) => names.indexOf(n) >= 5)
          .map((n) => [n, { hash: n.length % 2 ? 'h' : 'x', state: 'launched' } as CurrentUnit]),
      ),
    ).map((t) => `${t.kind}:${t.unit}`);
    assert.deepEqual(b, a);
  });

  it('adoption treats active, activating and reloading as started', () => {
    for (const s of ['active', 'activating', 'reloading']) assert.equal(isStartedState(s), true, s);
    for (const s of ['inactive', 'failed', 'deactivating']) assert.equal(isStartedState(s), false, s);
  });
});
