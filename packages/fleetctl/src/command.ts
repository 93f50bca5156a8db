import type { FlagSpec } from './flags.js';
import type { Session } from './session.js';

/** What help shows about a command. */
export interface CommandInfo {
  readonly name: string;
  /** One sentence for the command list. */
  readonly summary: string;
  /** Arguments and flags after `fleetctl <name>`, e.g. `[--no-block|--block-attempts=N] UNIT...`. */
  readonly usage: string;
  /** Paragraphs for `fleetctl help <name>`. */
  readonly description: string;
  readonly flags: readonly FlagSpec[];
  /** Takes no arguments (extra ones are a usage error). */
  readonly noArgs?: boolean;
  /** Left out of the command list (`fd-forward`-like helpers). */
  readonly hidden?: boolean;
}

/** Parsed command flags, keyed by commander's camel-cased names (`--no-block` → `block`). */
export type CommandFlags = Readonly<Record<string, unknown>>;

/**
 * A fleetctl command: a function of the session, its arguments and flags that
 * returns the exit status, as fleet's commands were.
 */
export interface CommandSpec extends CommandInfo {
  run(session: Session, args: readonly string[], flags: CommandFlags): Promise<number>;
}
