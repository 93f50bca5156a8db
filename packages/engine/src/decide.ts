import { Planner } from './scheduler-planner.js';
import type { Decision, SchedulerSnapshot } from './scheduler-types.js';

export { REASONS, UNPLACED, type Reason } from './scheduler-reasons.js';
export type {
  Decision,
  SchedulerMachine,
  SchedulerSnapshot,
  SchedulerTask,
  SchedulerUnit,
  TaskKind,
} from './scheduler-types.js';

/**
 * The pure scheduling core: given every unit, the live machines and the current
 * placements, decides where each loaded/launched unit runs and returns the
 * changes as sorted tasks, plus a reason for every unit left on no machine.
 *
 * Deterministic (the same snapshot gives the same decision whatever the
 * iteration order of its maps), free of side effects, and a fixpoint: applying
 * the tasks and deciding again yields no tasks. Semantics: fleet-compat §3 and
 * docs/scheduler.md.
 */
export function decide(snapshot: SchedulerSnapshot): Decision {
  return new Planner(snapshot).run();
}
