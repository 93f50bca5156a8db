import type { FleetClient } from '@fleet/client';
import { errorMessage, unitNameInfo, type JobState, type Unit } from '@fleet/core';
import { isGlobalUnit } from './columns.js';
import type { CommandFlags } from './command.js';
import { CommandError, EXIT_FAILURE, EXIT_OK, failure } from './errors.js';
import type { Session } from './session.js';
import { mapInOrder } from './concurrency.js';
import { ensureUnits, unitArgs } from './unit-args.js';
import { blockAttempts, waitForSystemdActive, waitForUnitStates } from './wait.js';

/** The verbs of fleet's messages (`Triggered unit X start`) and the state each one sets. */
export type Verb = 'load' | 'start' | 'stop' | 'unload';

export const TARGET_OF: Readonly<Record<Verb, JobState>> = {
  load: 'loaded',
  start: 'launched',
  stop: 'loaded',
  unload: 'inactive',
};

/** `Error loading units`, `Error starting units`, … */
export function errorPrefix(verb: Verb): string {
  const ing = { load: 'loading', start: 'starting', stop: 'stopping', unload: 'unloading' }[verb];
  return `Error ${ing} units`;
}

/**
 * Sets the desired state of `units` for `verb` and, unless `attempts` is -1,
 * waits for them as fleet did: global units are only triggered (their
 * current state is per machine); others are waited on until their current
 * state matches, and `start` then checks that systemd reports them active.
 *
 * Units already at the desired state are not set again but are waited on,
 * so their state line is printed (fleet printed nothing for them).
 */
export async function transition(
  session: Session,
  client: FleetClient,
  units: readonly Unit[],
  verb: Verb,
  attempts: number,
  /** Units created in the target state just now: triggered, but nothing left to set. */
  createdInTarget: ReadonlySet<string> = new Set(),
): Promise<number> {
  const target = TARGET_OF[verb];
  const triggered: string[] = [];
  const waiting: string[] = [];
  const changing = units.filter((u) => u.desiredState !== target);
  for (const u of changing) {
    if (verb === 'load' && u.desiredState === 'launched') {
      session.err(
        `WARNING: Unit ${u.name} is launched; loading it stops it (desired state launched → loaded)`,
      );
    }
  }
  try {
    await mapInOrder(changing, (u) => client.setUnitTargetState(u.name, target));
  } catch (err) {
    session.err(`${errorPrefix(verb)}: ${errorMessage(err)}`);
    return EXIT_FAILURE;
  }
  for (const u of units) {
    const global = isGlobalUnit(u.name, u.options);
    if (u.desiredState !== target || createdInTarget.has(u.name)) {
      if (global) session.out(`Triggered global unit ${u.name} ${verb}`);
      else triggered.push(u.name);
    }
    if (!global) waiting.push(u.name);
  }
  if (attempts < 0) {
    for (const name of triggered) session.out(`Triggered unit ${name} ${verb}`);
    return EXIT_OK;
  }
  if (!(await waitForUnitStates(session, client, waiting, target, attempts))) return EXIT_FAILURE;
  if (verb === 'start' && !(await waitForSystemdActive(session, client, waiting))) return EXIT_FAILURE;
  return EXIT_OK;
}

/** The named units from one read of the whole list, and the names that are not in it. */
export interface FoundUnits {
  readonly client: FleetClient;
  readonly found: Unit[];
  readonly missing: string[];
}

/**
 * Resolves unit arguments against one read of the whole unit list (what
 * fleet's stop, unload, restart and destroy read); a failed read becomes
 * `<errorPrefix>: <why>`.
 */
export async function findUnits(
  session: Session,
  args: readonly string[],
  errorPrefix: string,
): Promise<FoundUnits> {
  const names = unitArgs(args, session.io.cwd).map((u) => u.name);
  const client = await session.client();
  let all: Map<string, Unit>;
  try {
    all = new Map((await client.listUnits()).map((u) => [u.name, u]));
  } catch (err) {
    throw failure(errorPrefix, err);
  }
  const found: Unit[] = [];
  const missing: string[] = [];
  for (const name of names) {
    const u = all.get(name);
    if (u === undefined) missing.push(name);
    else found.push(u);
  }
  return { client, found, missing };
}

/**
 * `load` and `start`: create the units if needed (from local files or
 * templates), set their desired state, wait.
 */
export async function createAndTransition(
  session: Session,
  args: readonly string[],
  flags: CommandFlags,
  verb: 'load' | 'start',
): Promise<number> {
  const units = unitArgs(args, session.io.cwd);
  for (const u of units) {
    // The cluster would refuse it after creating it; refuse before touching anything.
    if (unitNameInfo(u.name).isTemplate) {
      throw new CommandError(`${errorPrefix(verb)}: cannot activate template ${JSON.stringify(u.name)}`);
    }
  }
  const client = await session.client();
  let created: Map<string, Unit>;
  try {
    created = await ensureUnits(session, client, units, verb, flags.replace === true, TARGET_OF[verb]);
  } catch (err) {
    throw failure('Error creating units', err);
  }
  let fetched: Array<Unit | undefined>;
  try {
    fetched = await mapInOrder(units, async (u) => created.get(u.name) ?? (await client.getUnit(u.name)));
  } catch (err) {
    throw failure(errorPrefix(verb), err);
  }
  const found: Unit[] = [];
  for (const [i, u] of units.entries()) {
    const unit = fetched[i];
    if (unit === undefined) throw new CommandError(`${errorPrefix(verb)}: unable to find unit ${u.name}`);
    found.push(unit);
  }
  return transition(session, client, found, verb, blockAttempts(flags), new Set(created.keys()));
}

/**
 * `stop` and `unload`: units must exist; nothing is changed unless every
 * named unit can make the transition.
 */
export async function transitionExisting(
  session: Session,
  args: readonly string[],
  flags: CommandFlags,
  verb: 'stop' | 'unload',
): Promise<number> {
  const lookup = await findUnits(session, args, errorPrefix(verb));
  const problems = lookup.missing.map((n) => `Unit ${n} does not exist.`);
  if (verb === 'stop') {
    for (const u of lookup.found) {
      if (u.desiredState === 'inactive' && (u.currentState ?? 'inactive') === 'inactive') {
        problems.push(`Unable to stop unit ${u.name} in state inactive`);
      }
    }
  }
  for (const p of problems) session.err(p);
  if (problems.length > 0) return EXIT_FAILURE;
  return transition(session, lookup.client, lookup.found, verb, blockAttempts(flags));
}
