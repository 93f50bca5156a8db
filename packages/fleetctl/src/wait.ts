import type { FleetClient } from '@fleet/client';
import { errorMessage, type JobState, type Unit, type UnitState } from '@fleet/core';
import { machineLegend } from './columns.js';
import type { Session } from './session.js';

/** One `--block-attempts` attempt lasts 8 poll intervals: 2 s at the default 250 ms. */
export const POLLS_PER_ATTEMPT = 8;

/**
 * Delays between polls: a tenth of the interval at first, doubling up to the
 * interval (25, 50, 100, 200, 250, 250… ms). A unit usually converges within
 * a few tens of milliseconds; polling only every 250 ms would add up to
 * 250 ms to every `start`. The time an attempt lasts does not change.
 */
export function* pollDelays(interval: number): Generator<number, never> {
  let delay = interval / 10;
  for (;;) {
    yield Math.min(delay, interval);
    delay *= 2;
  }
}

/**
 * `--no-block` and `--block-attempts` as one number: -1 = do not wait,
 * 0 = wait forever, N = wait up to N attempts (fleet's getBlockAttempts).
 */
export function blockAttempts(flags: { readonly block?: unknown; readonly blockAttempts?: unknown }): number {
  if (flags.block === false) return -1;
  return typeof flags.blockAttempts === 'number' ? flags.blockAttempts : 0;
}

/** `Unit hello.service launched on 960a9f62.../192.168.2.52` (no ` on …` without a known machine). */
async function stateLine(session: Session, unit: Unit): Promise<string> {
  let line = `Unit ${unit.name} ${unit.currentState ?? 'inactive'}`;
  if (unit.machineID !== undefined && unit.machineID !== '') {
    const machine = await session.machine(unit.machineID).catch(() => undefined);
    if (machine !== undefined) line += ` on ${machineLegend(machine.id, machine, false)}`;
  }
  return line;
}

/**
 * Polls each unit until its current state is `target`, printing fleet's line
 * for each on stdout. While a unit waits, the reason the engine gives for not
 * placing it is printed on stderr once per distinct reason (fleet waited in
 * silence). Returns false when any unit timed out or disappeared; the error
 * is on stderr.
 */
export async function waitForUnitStates(
  session: Session,
  client: FleetClient,
  names: readonly string[],
  target: JobState,
  attempts: number,
): Promise<boolean> {
  const results = await Promise.all(names.map((n) => waitForUnit(session, client, n, target, attempts)));
  return results.every(Boolean);
}

async function waitForUnit(
  session: Session,
  client: FleetClient,
  name: string,
  target: JobState,
  attempts: number,
): Promise<boolean> {
  const interval = session.pollIntervalMs;
  const deadline = attempts === 0 ? Infinity : Date.now() + attempts * POLLS_PER_ATTEMPT * interval;
  const delays = pollDelays(interval);
  let lastReason: string | undefined;
  let lastError: string | undefined;
  for (;;) {
    try {
      const unit = await client.getUnit(name);
      lastError = undefined;
      if (unit === undefined) {
        session.err(`Error waiting for units: unit ${name} no longer exists`);
        return false;
      }
      if (unit.currentState === target) {
        session.out(await stateLine(session, unit));
        return true;
      }
      const reason = unit.unplacedReason;
      if (reason !== undefined && reason !== '' && reason !== lastReason) {
        session.err(`Unit ${name} waiting for a machine: ${reason}`);
      }
      lastReason = reason;
    } catch (err) {
      // fleet logged and kept polling; we too, but say it once per distinct error.
      const message = errorMessage(err);
      if (message !== lastError) session.err(`Error retrieving unit ${name}: ${message}`);
      lastError = message;
    }
    const left = deadline - Date.now();
    if (left <= 0 || session.aborted) {
      const why = lastReason ? ` (not placed: ${lastReason})` : '';
      session.err(
        `Error waiting for units: timed out waiting for unit ${name} to report state ${target}${why}`,
      );
      return false;
    }
    await session.sleep(Math.min(delays.next().value, left));
  }
}

function systemdSummary(state: UnitState): string {
  return (
    `ActiveState=${state.systemdActiveState ?? '-'} SubState=${state.systemdSubState ?? '-'} ` +
    `LoadState=${state.systemdLoadState ?? '-'}`
  );
}

/**
 * After `start` saw `launched`, fleet's fleetctl checked for up to 2 s that
 * systemd reports the unit active and loaded, and failed otherwise (and
 * crashed on a 404). We do the same check, and report a missing state.
 */
export async function waitForSystemdActive(
  session: Session,
  client: FleetClient,
  names: readonly string[],
): Promise<boolean> {
  const results = await Promise.all(names.map((n) => systemdActive(session, client, n)));
  return results.every(Boolean);
}

async function systemdActive(session: Session, client: FleetClient, name: string): Promise<boolean> {
  const interval = session.pollIntervalMs;
  const deadline = Date.now() + POLLS_PER_ATTEMPT * interval;
  const delays = pollDelays(interval);
  let why = 'its machine has not reported a systemd state for it';
  for (;;) {
    try {
      const state = await client.getUnitState(name);
      if (state?.systemdActiveState === 'active' && state.systemdLoadState === 'loaded') return true;
      if (state !== undefined) why = `systemd reports ${systemdSummary(state)}`;
    } catch (err) {
      why = `cannot read its state: ${errorMessage(err)}`;
    }
    const left = deadline - Date.now();
    if (left <= 0 || session.aborted) {
      session.err(`Error waiting for units: unit ${name} was launched but is not active: ${why}`);
      return false;
    }
    await session.sleep(Math.min(delays.next().value, left));
  }
}
