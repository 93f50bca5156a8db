/**
 * How fleetctl ends. Commands throw these (or return an exit code); `main`
 * turns them into one line on stderr and an exit status.
 */

/** Exit statuses, documented in `fleetctl help` and docs/fleetctl.md. */
export const EXIT_OK = 0;
/** An operation failed: API error, fleetd unreachable, a wait timed out, a unit is missing. */
export const EXIT_FAILURE = 1;
/** The command line is wrong: unknown command or flag, bad flag value, wrong arguments. */
export const EXIT_USAGE = 2;

/** A mistake in the command line; printed with a pointer to the usage text, exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * A failure whose message is the whole story (`Error creating units: …`);
 * printed as is, exit `exitCode`.
 */
export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    message: string,
    readonly exitCode: number = EXIT_FAILURE,
  ) {
    super(message);
  }
}

/**
 * Wraps a failure of one step in fleet's message shape (`Error creating units:
 * <why>`); usage errors and already-wrapped failures pass through.
 */
export function failure(prefix: string, err: unknown): Error {
  if (err instanceof UsageError || err instanceof CommandError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new CommandError(`${prefix}: ${message}`);
}
