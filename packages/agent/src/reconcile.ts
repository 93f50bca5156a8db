/**
 * The agent's pure diff: what this machine should run vs what it runs, as an
 * ordered list of typed tasks, each with a constant reason (fleet's agent
 * reconciler did the same; every log line explains a decision).
 */

/** What the agent may leave a unit in: linked only, or started. */
export type AgentUnitState = 'loaded' | 'launched';

export interface DesiredUnit {
  readonly hash: string;
  readonly state: AgentUnitState;
}

export interface CurrentUnit {
  /** Hash of the file in the units directory. */
  readonly hash: string;
  /** What the agent last made of it (or adopted from systemd at start). */
  readonly state: AgentUnitState;
}

export type TaskKind = 'unload' | 'load' | 'reload' | 'stop' | 'start';

/** Order within one pass, as fleet's agent: unload, load, reload, stop, start. */
export const TASK_ORDER: readonly TaskKind[] = ['unload', 'load', 'reload', 'stop', 'start'];

export const TASK_REASONS = {
  notScheduled: 'unit is no longer scheduled to this machine',
  scheduled: 'unit is scheduled to this machine',
  changed: 'unit file changed',
  reloadAfterChange: 'unit files were linked or removed',
  stopRequested: 'unit desired state is loaded',
  startRequested: 'unit desired state is launched',
} as const;

export type TaskReason = (typeof TASK_REASONS)[keyof typeof TASK_REASONS];

export interface AgentTask {
  readonly kind: TaskKind;
  /** Empty for the daemon-wide reload. */
  readonly unit: string;
  readonly reason: TaskReason;
}

/**
 * Computes the tasks that take `current` to `desired`. Deterministic: sorted
 * by kind (in {@link TASK_ORDER}) then unit name; at most one reload.
 */
export function computeTasks(
  desired: ReadonlyMap<string, DesiredUnit>,
  current: ReadonlyMap<string, CurrentUnit>,
): AgentTask[] {
  const tasks: AgentTask[] = [];
  for (const name of current.keys()) {
    if (!desired.has(name)) tasks.push({ kind: 'unload', unit: name, reason: TASK_REASONS.notScheduled });
  }
  for (const [name, want] of desired) {
    const have = current.get(name);
    let loadedState: AgentUnitState | undefined = have?.state;
    if (have === undefined) {
      tasks.push({ kind: 'load', unit: name, reason: TASK_REASONS.scheduled });
      loadedState = 'loaded';
    } else if (have.hash !== want.hash) {
      tasks.push({ kind: 'unload', unit: name, reason: TASK_REASONS.changed });
      tasks.push({ kind: 'load', unit: name, reason: TASK_REASONS.changed });
      loadedState = 'loaded';
    }
    if (want.state === 'launched' && loadedState !== 'launched') {
      tasks.push({ kind: 'start', unit: name, reason: TASK_REASONS.startRequested });
    } else if (want.state === 'loaded' && loadedState === 'launched') {
      tasks.push({ kind: 'stop', unit: name, reason: TASK_REASONS.stopRequested });
    }
  }
  if (tasks.some((t) => t.kind === 'load' || t.kind === 'unload')) {
    tasks.push({ kind: 'reload', unit: '', reason: TASK_REASONS.reloadAfterChange });
  }
  const rank = (k: TaskKind): number => TASK_ORDER.indexOf(k);
  return tasks.sort(
    (a, b) => rank(a.kind) - rank(b.kind) || (a.unit < b.unit ? -1 : a.unit > b.unit ? 1 : 0),
  );
}

/** systemd ActiveStates that mean "started" for adoption after a restart. */
export function isStartedState(activeState: string): boolean {
  return activeState === 'active' || activeState === 'activating' || activeState === 'reloading';
}
