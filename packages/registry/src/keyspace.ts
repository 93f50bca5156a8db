/**
 * The one place that knows the key layout. Every key lives under a
 * configurable prefix (fleet's `etcd_key_prefix`, default
 * `/_coreos.com/fleet/`). See docs/registry.md for who writes what, when and
 * under which lease.
 */
export class Keyspace {
  readonly prefix: string;

  constructor(prefix = '/_coreos.com/fleet/') {
    this.prefix = prefix.endsWith('/') ? prefix : `${prefix}/`;
  }

  get unitsPrefix(): string {
    return `${this.prefix}unit/`;
  }
  unit(name: string): string {
    return `${this.unitsPrefix}${name}`;
  }

  get bodiesPrefix(): string {
    return `${this.prefix}body/`;
  }
  body(hash: string): string {
    return `${this.bodiesPrefix}${hash}`;
  }

  get machinesPrefix(): string {
    return `${this.prefix}machine/`;
  }
  machine(id: string): string {
    return `${this.machinesPrefix}${id}`;
  }

  get machineMetaPrefix(): string {
    return `${this.prefix}machine-meta/`;
  }
  machineMeta(id: string): string {
    return `${this.machineMetaPrefix}${id}`;
  }

  get schedulePrefix(): string {
    return `${this.prefix}schedule/`;
  }
  machineSchedulePrefix(machineID: string): string {
    return `${this.schedulePrefix}${machineID}/`;
  }
  placement(machineID: string, unit: string): string {
    return `${this.schedulePrefix}${machineID}/${unit}`;
  }

  get statesPrefix(): string {
    return `${this.prefix}state/`;
  }
  unitStatesPrefix(unit: string): string {
    return `${this.statesPrefix}${unit}/`;
  }
  state(unit: string, machineID: string): string {
    return `${this.statesPrefix}${unit}/${machineID}`;
  }

  get unplacedPrefix(): string {
    return `${this.prefix}unplaced/`;
  }
  unplaced(unit: string): string {
    return `${this.unplacedPrefix}${unit}`;
  }

  machineCommandsPrefix(machineID: string): string {
    return `${this.prefix}cmd/${machineID}/`;
  }
  commandResult(id: string): string {
    return `${this.prefix}cmd-result/${id}`;
  }

  get leader(): string {
    return `${this.prefix}engine/leader`;
  }

  /** Splits `<a>/<b>` after a prefix into its two parts (machine/unit or unit/machine). */
  static pair(rest: string): [string, string] | undefined {
    const slash = rest.indexOf('/');
    if (slash <= 0 || slash === rest.length - 1) return undefined;
    return [rest.slice(0, slash), rest.slice(slash + 1)];
  }
}
