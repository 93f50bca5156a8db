import type { JobState, Requirements } from '@fleet/core';

/** A unit as the scheduler sees it. */
export interface SchedulerUnit {
  readonly name: string;
  /** Only `loaded` and `launched` units are placed; `inactive` ones are removed from machines. */
  readonly desiredState: JobState;
  readonly requirements: Requirements;
}

/** A live machine. */
export interface SchedulerMachine {
  readonly id: string;
  /** Configured metadata with dynamic metadata merged over it. */
  readonly metadata: Readonly<Record<string, string>>;
}

/** Everything one scheduling decision looks at; decide never reads anything else. */
export interface SchedulerSnapshot {
  /** Every unit known to the cluster, whatever its desired state, by name. */
  readonly units: ReadonlyMap<string, SchedulerUnit>;
  /** Live machines only, by ID. */
  readonly machines: ReadonlyMap<string, SchedulerMachine>;
  /**
   * Unit name → IDs of the machines it is scheduled on now. Globals have many;
   * entries may name dead machines or units that no longer exist.
   */
  readonly placements: ReadonlyMap<string, ReadonlySet<string>>;
}

export type TaskKind = 'schedule' | 'unschedule';

/** One change to the cluster's placements. */
export interface SchedulerTask {
  readonly kind: TaskKind;
  readonly unit: string;
  readonly machineID: string;
  /** One of the texts of {@link REASONS}. */
  readonly reason: string;
}

/** The outcome of {@link decide}. */
export interface Decision {
  /** Unschedules first, then schedules; each group by unit name, then machine ID. */
  readonly tasks: readonly SchedulerTask[];
  /**
   * Unit name → why it is on no machine, for every `loaded`/`launched` unit that
   * ends up unplaced. A global unit appears here only if it runs nowhere.
   */
  readonly unplaced: ReadonlyMap<string, string>;
}
