/** The machines satisfying one MachineMetadata requirement. */
export interface MetadataSelector {
  /** Ascending indices of the machines that satisfy it. */
  readonly machines: readonly number[];
  /** 1 at index m if machine m satisfies it. */
  readonly member: Uint8Array;
}

/**
 * Live machines of one decision, indexed 0..n-1 in ascending ID order, so that
 * comparing indices is comparing IDs (the least-loaded tie-break).
 */
export class MachineIndex {
  /** Machine IDs by index, ascending. */
  readonly ids: readonly string[];
  private readonly metadata: readonly Readonly<Record<string, string>>[];
  private readonly byId: Map<string, number>;
  private byShortId: Map<string, number[]> | undefined;
  /** `key\0value` → ascending machine indices; built on first use. */
  private byPair: Map<string, number[]> | undefined;
  private readonly selectors = new Map<string, MetadataSelector>();

  constructor(machines: ReadonlyMap<string, { readonly metadata: Readonly<Record<string, string>> }>) {
    const ids = [...machines.keys()].sort();
    this.ids = ids;
    this.metadata = ids.map((id) => machines.get(id)?.metadata ?? {});
    this.byId = new Map(ids.map((id, i) => [id, i]));
  }

  get count(): number {
    return this.ids.length;
  }

  /** Index of the machine with exactly this ID, or undefined if it is not live. */
  indexOf(id: string): number | undefined {
    return this.byId.get(id);
  }

  /**
   * Machines a MachineID requirement names: the one with that full ID, or those
   * whose ID starts with it when it is exactly 8 characters (fleet-compat §3).
   */
  matchMachineID(machineID: string): readonly number[] {
    const exact = this.byId.get(machineID);
    if (machineID.length !== 8) return exact === undefined ? [] : [exact];
    if (this.byShortId === undefined) {
      this.byShortId = new Map();
      this.ids.forEach((id, i) => {
        if (id.length < 8) return;
        const short = id.slice(0, 8);
        const list = this.byShortId!.get(short);
        if (list === undefined) this.byShortId!.set(short, [i]);
        else list.push(i);
      });
    }
    const prefixed = this.byShortId.get(machineID) ?? [];
    if (exact === undefined || prefixed.includes(exact)) return prefixed;
    return [...prefixed, exact].sort((a, b) => a - b);
  }

  /** True if machine `m` is named by the MachineID requirement `machineID`. */
  matchesMachineID(m: number, machineID: string): boolean {
    const id = this.ids[m]!;
    return id === machineID || (machineID.length === 8 && id.startsWith(machineID));
  }

  /** The machine's merged metadata. */
  metadataOf(m: number): Readonly<Record<string, string>> {
    return this.metadata[m]!;
  }

  /**
   * The machines satisfying a MachineMetadata requirement: for every key, the
   * machine's value is one of the listed values. Cached per distinct requirement,
   * so 10,000 units asking for `region=eu` share one computation. The
   * requirement must name at least one key.
   */
  selector(requirement: ReadonlyMap<string, readonly string[]>): MetadataSelector {
    const keys = [...requirement.keys()].sort();
    const only = keys.length === 1 ? requirement.get(keys[0]!) : undefined;
    const canonical =
      only?.length === 1 // the usual `key=value`, without the sorting
        ? `${keys[0]}\u0000${only[0]}`
        : keys
            .map((k) => `${k}\u0000${[...new Set(requirement.get(k))].sort().join('\u0000')}`)
            .join('\u0001');
    let selector = this.selectors.get(canonical);
    if (selector !== undefined) return selector;

    // Start from the key whose values name the fewest machines and check the
    // other keys on those only: cost follows the matches, not the cluster size.
    const byPair = this.pairs();
    let start: number[] | undefined;
    for (const key of keys) {
      const union: number[] = [];
      for (const value of new Set(requirement.get(key)))
        union.push(...(byPair.get(`${key}\u0000${value}`) ?? []));
      if (start === undefined || union.length < start.length) start = union;
    }
    const member = new Uint8Array(this.count);
    const machines: number[] = [];
    for (const m of start ?? []) {
      const meta = this.metadata[m]!;
      const ok = keys.every((key) => {
        const value = Object.hasOwn(meta, key) ? meta[key] : undefined;
        return value !== undefined && (requirement.get(key) ?? []).includes(value);
      });
      if (ok) {
        member[m] = 1;
        machines.push(m);
      }
    }
    // A machine has one value per key, so the union holds no duplicates; it is
    // ascending within each value's list only.
    machines.sort((a, b) => a - b);
    selector = { machines, member };
    this.selectors.set(canonical, selector);
    return selector;
  }

  private pairs(): Map<string, number[]> {
    if (this.byPair !== undefined) return this.byPair;
    const byPair = new Map<string, number[]>();
    this.metadata.forEach((meta, m) => {
      for (const [key, value] of Object.entries(meta)) {
        const pair = `${key}\u0000${value}`;
        const list = byPair.get(pair);
        if (list === undefined) byPair.set(pair, [m]);
        else list.push(m);
      }
    });
    this.byPair = byPair;
    return byPair;
  }
}
