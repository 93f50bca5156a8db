/**
 * What the agent needs from the machine's systemd, as an interface with two
 * implementations: {@link SystemdManager} (dbus-next on the system or user
 * bus, unit files in `units_directory`) and {@link FakeUnitManager} (in memory,
 * for fast reconcile tests). Batch-shaped on purpose: linking and reloading
 * per unit costs ~140 ms each, so the agent links many files and reloads once.
 */

/** systemd's view of one unit. */
export interface UnitStatus {
  readonly name: string;
  /** LoadState: loaded, not-found, masked, error … */
  readonly loadState: string;
  /** ActiveState: active, inactive, failed, activating, deactivating, reloading */
  readonly activeState: string;
  /** SubState: running, dead, exited, failed, start … */
  readonly subState: string;
}

/** A unit file to place in the units directory. */
export interface UnitFile {
  readonly name: string;
  /** Canonical unit text (what is hashed). */
  readonly text: string;
  /** True when the unit has an [Install] section (then it is enabled as well as linked). */
  readonly install: boolean;
}

export type StatusListener = (status: UnitStatus) => void;

export interface UnitManager {
  /** Connects (D-Bus Hello, Subscribe, signal matches). Idempotent. */
  start(): Promise<void>;
  /** Unit files present in the units directory: name → canonical text. */
  readUnitFiles(): Promise<Map<string, string>>;
  /** Writes the files, then links them all as runtime units in one call (enabling those with [Install]). */
  writeAndLink(files: readonly UnitFile[]): Promise<void>;
  /** Reloads systemd's configuration once (after a batch of links/unlinks). */
  reload(): Promise<void>;
  /** Starts a unit with mode `replace`; resolves when the job is queued (not when it finished). */
  startUnit(name: string): Promise<void>;
  /** Stops a unit with mode `replace`; resolves when the job is queued. */
  stopUnit(name: string): Promise<void>;
  /**
   * Unloads units: stop, disable the runtime link, reset failed state and
   * remove the file (fleet's order). Units that are not known are skipped.
   */
  unload(names: readonly string[]): Promise<void>;
  /** Current statuses of the named units in one call (missing → loadState not-found). */
  statuses(names: readonly string[]): Promise<Map<string, UnitStatus>>;
  /** The unit's MainPID (0 when none): one property read, only when asked (tests prove "not restarted" with it). */
  mainPID(name: string): Promise<number>;
  /**
   * Calls `listener` whenever systemd reports a change of one of the named
   * units (signals, not polling). Replaces the previous set of watched names.
   */
  watch(names: ReadonlySet<string>, listener: StatusListener): void;
  /** Disconnects. Idempotent. Never stops units. */
  close(): Promise<void>;
}
