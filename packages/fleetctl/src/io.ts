/** Where fleetctl writes: process.stdout/stderr, or a string buffer in tests. */
export interface Writer {
  write(chunk: string): unknown;
}

/**
 * Everything fleetctl takes from its environment, so that `main` can run
 * in-process (tests) as well as from the `fleetctl` binary.
 */
export interface Io {
  readonly stdout: Writer;
  readonly stderr: Writer;
  /** `FLEETCTL_*` variables, HOME. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Unit file arguments are resolved against this directory. */
  readonly cwd: string;
  /**
   * Child processes (ssh) share this process's terminal. When false their
   * output is copied into stdout/stderr.
   * @default false
   */
  readonly inheritStdio?: boolean;
  /** Aborts waits and `journal --follow` (tests; the binary just exits on SIGINT). */
  readonly signal?: AbortSignal;
  /**
   * Interval of every poll loop. One `--block-attempts` attempt is 8 polls.
   * @default 250
   */
  readonly pollIntervalMs?: number;
}
