import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { FleetClient } from '@fleet/client';
import {
  errorMessage,
  findReplacesCycle,
  isFleetError,
  mangleUnitName,
  parseRequirements,
  parseUnitFile,
  replacesCycleMessage,
  unitHash,
  unitNameInfo,
  unitNameProblem,
  validateUnitOptions,
  type JobState,
  type Requirements,
  type Unit,
  type UnitOption,
} from '@fleet/core';
import { UsageError } from './errors.js';
import { mapInOrder } from './concurrency.js';
import type { Session } from './session.js';

/** A unit argument: the local file fleetctl would read and the unit name it stands for. */
export interface UnitArg {
  /** As typed: `apache.1.service`, `units/hello`, `web@2`. */
  readonly arg: string;
  /** `units/hello.service` — the argument with `.service` added when it has no unit type. */
  readonly file: string;
  /** The file resolved against the working directory. */
  readonly path: string;
  /** The mangled unit name: the file's base name. */
  readonly name: string;
}

/**
 * fleetctl's argument handling (fleet-compat §1): the base name, with
 * `.service` appended unless it ends in a unit type, names the unit; the
 * argument with the same suffix names the local file.
 *
 * @throws UsageError when the resulting name is not a valid unit name.
 */
export function unitArg(arg: string, cwd: string): UnitArg {
  const name = mangleUnitName(arg);
  const problem = unitNameProblem(name);
  if (problem !== undefined) throw new UsageError(`invalid unit name ${JSON.stringify(name)}: ${problem}`);
  const slash = arg.lastIndexOf('/');
  const file = slash === -1 ? name : `${arg.slice(0, slash + 1)}${name}`;
  return { arg, file, path: resolve(cwd, file), name };
}

/** The arguments' units, checked, each name once; usage error when there are none. */
export function unitArgs(args: readonly string[], cwd: string): UnitArg[] {
  if (args.length === 0) throw new UsageError('No units given');
  const byName = new Map<string, UnitArg>();
  for (const a of args) {
    const u = unitArg(a, cwd);
    if (!byName.has(u.name)) byName.set(u.name, u);
  }
  return [...byName.values()];
}

/** Unit options read from somewhere, and where, for messages. */
interface UnitSource {
  readonly options: UnitOption[];
  /** `unit file units/hello.service`, `template unit web@.service in the cluster`. */
  readonly origin: string;
  /** The local file, when the source is one. */
  readonly file?: string;
}

/** Reads and parses a local unit file; undefined when it does not exist. */
function readUnitFile(path: string, display: string): UnitSource | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read unit file ${display}: ${errorMessage(err)}`);
  }
  try {
    return { options: parseUnitFile(text), origin: `unit file ${display}`, file: display };
  } catch (err) {
    const line = isFleetError(err) ? err.fields.line : undefined;
    const where = typeof line === 'number' ? ` (line ${line})` : '';
    throw new Error(`cannot parse unit file ${display}${where}: ${errorMessage(err)}`);
  }
}

/** The local file of the argument, else (for an instance) the template file beside it. */
function readLocal(u: UnitArg): UnitSource | undefined {
  const own = readUnitFile(u.path, u.file);
  if (own !== undefined) return own;
  const info = unitNameInfo(u.name);
  if (!info.isInstance || info.template === undefined) return undefined;
  return readUnitFile(join(dirname(u.path), info.template), join(dirname(u.file), info.template));
}

/**
 * Refuses what the cluster would refuse, before sending anything, and warns
 * about `[X-Fleet]` keys the scheduler ignores (as fleet's fleetctl did).
 */
function checkUnit(session: Session, name: string, source: UnitSource): void {
  if (source.options.length === 0) {
    throw new Error(`${source.origin} of ${name} has no options`);
  }
  let unknownKeys: readonly string[];
  try {
    unknownKeys = validateUnitOptions(source.options, name).unknownKeys;
  } catch (err) {
    throw new Error(`invalid unit ${name} (${source.origin}): ${errorMessage(err)}`);
  }
  for (const key of unknownKeys) {
    session.err(
      `WARNING: Unit ${name}: unrecognized requirement in [X-Fleet] section: ${JSON.stringify(key)}`,
    );
  }
}

/** Which command is creating: fleet allowed `--replace` only from these desired states. */
export type CreateMode = 'submit' | 'load' | 'start';

const replaceableFrom: Readonly<Record<CreateMode, readonly JobState[]>> = {
  submit: ['inactive'],
  load: ['inactive', 'loaded'],
  start: ['inactive', 'loaded', 'launched'],
};

/**
 * Makes sure every argument's unit exists in the cluster, creating it from,
 * in fleet's order: the local file; for an instance, the template in the
 * cluster, else the local template file beside the argument.
 *
 * An existing unit whose local file (or local template) differs is an error
 * without `--replace` (fleet only warned and kept the old one); with it, the
 * unit is replaced, if its desired state allows it for this command.
 *
 * Every unit is checked before the first one is written (fleet wrote them one
 * by one and stopped at the first error, leaving the others half-submitted),
 * including Replaces cycles among the units of the batch, which the cluster
 * can only see one write at a time.
 *
 * @returns the units it created with `createAs` as their desired state.
 * @throws Error with a message for `Error creating units: …`; UsageError for bad names.
 */
export async function ensureUnits(
  session: Session,
  client: FleetClient,
  units: readonly UnitArg[],
  mode: CreateMode,
  replace: boolean,
  createAs?: JobState,
): Promise<Map<string, Unit>> {
  const writes: Array<{ readonly name: string; readonly source: UnitSource; readonly what: string }> = [];
  const existingUnits = await mapInOrder(units, (u) => client.getUnit(u.name));
  for (const [i, u] of units.entries()) {
    const existing = existingUnits[i];
    if (existing !== undefined) {
      const local = readLocal(u);
      if (local === undefined || unitHash(local.options) === unitHash(existing.options ?? [])) continue;
      if (!replace) {
        throw new Error(
          `unit ${u.name} already exists in the cluster and differs from local ${local.origin}; ` +
            'add --replace to replace it',
        );
      }
      const desired = existing.desiredState ?? 'inactive';
      if (!replaceableFrom[mode].includes(desired)) {
        const instead = desired === 'launched' ? 'start' : 'load';
        throw new Error(
          `cannot replace unit ${u.name} in state ${desired} with "fleetctl ${mode}"; ` +
            `use "fleetctl ${instead} --replace"`,
        );
      }
      checkUnit(session, u.name, local);
      writes.push({ name: u.name, source: local, what: 'replaced' });
      continue;
    }
    const source = await findSource(session, client, u);
    checkUnit(session, u.name, source);
    writes.push({ name: u.name, source, what: 'created' });
  }
  await refuseReplacesCycle(client, writes);
  const created = new Map<string, Unit>();
  await mapInOrder(writes, async (w) => {
    // A new unit is created at once in the state `load`/`start` wants (one
    // request instead of create, read back, set state); a replaced one keeps its state.
    const desiredState = w.what === 'created' ? createAs : undefined;
    await create(client, w.name, w.source.options, desiredState);
    if (desiredState !== undefined) {
      created.set(w.name, { name: w.name, options: [...w.source.options], desiredState });
    }
    session.debug(`${w.what} unit ${w.name} from ${w.source.origin}`);
  });
  return created;
}

/**
 * Refuses a batch whose units would form a Replaces cycle, among themselves or
 * through units already in the cluster. A single write is checked by the
 * cluster itself; only a batch needs the whole list read here.
 */
async function refuseReplacesCycle(
  client: FleetClient,
  writes: ReadonlyArray<{ readonly name: string; readonly source: UnitSource }>,
): Promise<void> {
  if (writes.length < 2) return;
  const batch = new Map(writes.map((w) => [w.name, parseRequirements(w.source.options, w.name)]));
  if (![...batch.values()].some((r) => r.replaces.length > 0)) return;
  const all = new Map<string, Pick<Requirements, 'replaces'>>();
  for (const unit of await client.listUnits()) {
    try {
      all.set(unit.name, parseRequirements(unit.options ?? [], unit.name));
    } catch {
      // A stored unit whose requirements no longer parse replaces nothing.
    }
  }
  for (const [name, req] of batch) all.set(name, req);
  const cycle = findReplacesCycle(all);
  if (cycle !== undefined && cycle.some((n) => batch.has(n))) throw new Error(replacesCycleMessage(cycle));
}

async function create(
  client: FleetClient,
  name: string,
  options: readonly UnitOption[],
  desiredState: JobState | undefined,
): Promise<void> {
  try {
    await client.createUnit(name, options, desiredState);
  } catch (err) {
    throw new Error(`failed creating unit ${name}: ${errorMessage(err)}`, { cause: err });
  }
}

async function findSource(session: Session, client: FleetClient, u: UnitArg): Promise<UnitSource> {
  const own = readUnitFile(u.path, u.file);
  if (own !== undefined) return own;
  const info = unitNameInfo(u.name);
  if (!info.isInstance || info.template === undefined) {
    throw new Error(`unable to find unit ${u.name} in the cluster or on the filesystem (no file ${u.file})`);
  }
  const localTemplateFile = join(dirname(u.file), info.template);
  const localTemplate = readUnitFile(join(dirname(u.path), info.template), localTemplateFile);
  const clusterTemplate = await client.getUnit(info.template);
  if (clusterTemplate !== undefined) {
    const options = clusterTemplate.options ?? [];
    if (localTemplate !== undefined && unitHash(localTemplate.options) !== unitHash(options)) {
      session.err(
        `WARNING: Unit ${info.template} in the cluster differs from local template unit file ${localTemplateFile}; ` +
          `${u.name} is created from the cluster's`,
      );
    }
    return { options, origin: `template unit ${info.template} in the cluster` };
  }
  if (localTemplate !== undefined) return localTemplate;
  throw new Error(
    `unable to find unit ${u.name} or its template ${info.template} ` + 'in the cluster or on the filesystem',
  );
}
