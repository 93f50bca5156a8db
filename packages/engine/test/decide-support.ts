// Helpers for the decide tests: applying a decision, and an independent oracle
// for the invariants every decision must keep. The oracle is written
// naively (scans, regexes via globMatches) on purpose: it must not share the
// indexes it is checking.
import assert from 'node:assert/strict';
import { type Requirements, globMatches, unitsConflict } from '@fleet/core';
import { type Decision, REASONS, type SchedulerSnapshot, decide } from '@fleet/engine';

const REASON_TEXTS = new Set<string>(Object.values(REASONS));

/** The placements after carrying out a decision's tasks. */
export function applyTasks(
  placements: ReadonlyMap<string, ReadonlySet<string>>,
  decision: Decision,
): Map<string, Set<string>> {
  // An empty set means "on no machine", same as no entry.
  const next = new Map([...placements].filter(([, ms]) => ms.size > 0).map(([u, ms]) => [u, new Set(ms)]));
  for (const task of decision.tasks) {
    const set = next.get(task.unit) ?? new Set<string>();
    if (task.kind === 'unschedule') {
      assert.ok(
        set.delete(task.machineID),
        `unschedule of ${task.unit} from ${task.machineID}, where it is not`,
      );
    } else {
      assert.ok(
        !set.has(task.machineID),
        `schedule of ${task.unit} onto ${task.machineID}, where it already is`,
      );
      set.add(task.machineID);
    }
    if (set.size === 0) next.delete(task.unit);
    else next.set(task.unit, set);
  }
  return next;
}

/** Placements as a plain sorted object (units on no machine left out), for deepEqual. */
export function placementsOf(placements: ReadonlyMap<string, ReadonlySet<string>>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const unit of [...placements.keys()].sort()) {
    const machines = [...(placements.get(unit) ?? [])].sort();
    if (machines.length > 0) out[unit] = machines;
  }
  return out;
}

/** A deterministic PRNG (mulberry32) giving floats in [0, 1), so a failing case can be replayed. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A deterministic shuffle. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const next = random(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function matchesMachineID(machineID: string, id: string): boolean {
  return id === machineID || (machineID.length === 8 && id.startsWith(machineID));
}

/** MachineID and MachineMetadata hold on a machine. */
export function staticFit(
  req: Requirements,
  id: string,
  metadata: Readonly<Record<string, string>>,
): boolean {
  if (req.machineID !== undefined && !matchesMachineID(req.machineID, id)) return false;
  for (const [key, values] of req.machineMetadata) {
    if (!Object.hasOwn(metadata, key) || !values.includes(metadata[key]!)) return false;
  }
  return true;
}

/** Two units may not share a machine: Conflicts either way, or one replaces the other. */
export function keptApart(a: string, aReq: Requirements, b: string, bReq: Requirements): boolean {
  if (a === b) return false;
  return (
    unitsConflict(a, aReq, b, bReq) ||
    aReq.replaces.some((g) => globMatches(g, b)) ||
    bReq.replaces.some((g) => globMatches(g, a))
  );
}

/**
 * Checks a decision against its snapshot:
 *
 * - tasks are sorted, well-formed (unschedule only what is there, schedule only
 *   what is not) and carry reasons from REASONS;
 * - afterwards every placement is of a loaded/launched unit on a live machine,
 *   a non-global unit has at most one, MachineID/MachineMetadata hold, no two
 *   units on a machine conflict, every MachineOf follower shares its peers' machine;
 * - `unplaced` names exactly the loaded/launched units on no machine, each with a reason;
 * - maximality: an unplaced unit fits on no machine, and a global is on every machine it fits;
 * - deciding again on the result changes nothing (fixpoint).
 */
export function assertInvariants(snap: SchedulerSnapshot, decision: Decision): Map<string, Set<string>> {
  const order = (t: Decision['tasks'][number]): string =>
    `${t.kind === 'unschedule' ? 0 : 1}\u0000${t.unit}\u0000${t.machineID}`;
  const keys = decision.tasks.map(order);
  assert.deepEqual(keys, [...keys].sort(), 'tasks are sorted');
  assert.equal(new Set(keys).size, keys.length, 'no task twice');
  for (const t of decision.tasks) assert.ok(REASON_TEXTS.has(t.reason), `reason from REASONS: ${t.reason}`);

  const after = applyTasks(snap.placements, decision);
  const active = (u: string): boolean => {
    const unit = snap.units.get(u);
    return unit !== undefined && unit.desiredState !== 'inactive';
  };
  const req = (u: string): Requirements => snap.units.get(u)!.requirements;
  const onMachine = new Map<string, string[]>();
  for (const [u, machines] of after) {
    assert.ok(active(u), `${u} is placed but not loaded/launched`);
    assert.ok(req(u).global || machines.size <= 1, `${u} is on ${machines.size} machines`);
    for (const m of machines) {
      const machine = snap.machines.get(m);
      assert.ok(machine !== undefined, `${u} is on dead machine ${m}`);
      assert.ok(staticFit(req(u), m, machine.metadata), `${u} on ${m} breaks MachineID/MachineMetadata`);
      onMachine.set(m, [...(onMachine.get(m) ?? []), u]);
    }
  }
  for (const [m, units] of onMachine) {
    for (const a of units) {
      for (const b of units) {
        assert.ok(!keptApart(a, req(a), b, req(b)), `${a} and ${b} conflict on ${m}`);
      }
    }
  }

  const peersOn = (u: string, m: string): boolean =>
    req(u)
      .machineOf.filter((p) => p !== u)
      .every((p) => after.get(p)?.has(m) === true);
  for (const [u, machines] of after) {
    for (const m of machines) assert.ok(peersOn(u, m), `${u} on ${m} without its MachineOf peers`);
  }

  const fits = (u: string, m: string): boolean =>
    staticFit(req(u), m, snap.machines.get(m)!.metadata) &&
    peersOn(u, m) &&
    (onMachine.get(m) ?? []).every((v) => !keptApart(u, req(u), v, req(v)));
  for (const [u, unit] of snap.units) {
    if (unit.desiredState === 'inactive') {
      assert.ok(!decision.unplaced.has(u), `inactive ${u} reported unplaced`);
      continue;
    }
    const placed = after.get(u)?.size ?? 0;
    assert.equal(decision.unplaced.has(u), placed === 0, `${u}: unplaced iff on no machine`);
    if (placed === 0) assert.ok((decision.unplaced.get(u) ?? '').length > 0, `${u} has a reason`);
    for (const m of snap.machines.keys()) {
      if (after.get(u)?.has(m) === true) continue;
      if (unit.requirements.global || placed === 0) {
        assert.ok(
          !fits(u, m),
          `${u} could run on ${m} but does not (${decision.unplaced.get(u) ?? 'global'})`,
        );
      }
    }
  }
  for (const u of decision.unplaced.keys()) assert.ok(active(u), `unplaced ${u} is not loaded/launched`);

  const again = decide({ ...snap, placements: after });
  assert.deepEqual(again.tasks, [], 'deciding again changes nothing');
  assert.deepEqual(again.unplaced, decision.unplaced, 'deciding again gives the same reasons');
  return after;
}
