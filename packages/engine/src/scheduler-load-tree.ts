/**
 * A tournament tree over a fixed list of machines that keeps the least-loaded
 * one at the root: the machine with the fewest placed units, ties broken by the
 * lower machine index (machines are indexed in ascending ID order, so this is
 * the lexicographically smallest ID).
 *
 * Why a tree and not a scan: the scheduler must not look at every machine for
 * every unit (target P7). Reading the best machine is O(1), a load change is
 * O(log n), and {@link LoadTree.first} walks machines in (load, index) order
 * while skipping the ones a unit cannot use, at O(log n) per skipped machine.
 */
export class LoadTree {
  private readonly width: number;
  /** Heap-ordered nodes; each holds the best machine index of its subtree, or -1. */
  private readonly nodes: Int32Array;
  /** Machine index → leaf position, -1 for machines outside this tree. */
  private readonly position: Int32Array;
  /** Leaves hidden for the duration of one {@link first} call. */
  private readonly excluded: Uint8Array;

  /**
   * @param machines ascending machine indices this tree ranks
   * @param load load per machine index, shared with the caller, who calls
   *   {@link update} after changing an entry
   */
  constructor(
    private readonly machines: readonly number[],
    private readonly load: Int32Array,
  ) {
    let width = 1;
    while (width < machines.length) width *= 2;
    this.width = width;
    this.nodes = new Int32Array(2 * width).fill(-1);
    this.position = new Int32Array(load.length).fill(-1);
    this.excluded = new Uint8Array(width);
    machines.forEach((m, i) => {
      this.position[m] = i;
      this.nodes[width + i] = m;
    });
    for (let i = width - 1; i >= 1; i--) {
      this.nodes[i] = this.better(this.nodes[2 * i]!, this.nodes[2 * i + 1]!);
    }
  }

  /** Re-ranks machine `m` after its load changed (no-op for machines outside the tree). */
  update(m: number): void {
    const p = this.position[m]!;
    if (p >= 0) this.refresh(p);
  }

  /**
   * The first machine in (load, index) order that `accept` takes, or -1.
   * `accept` must not change loads.
   */
  first(accept: (m: number) => boolean): number {
    let found = -1;
    let skipped: number[] | undefined;
    for (;;) {
      const m = this.nodes[1]!;
      if (m < 0) break;
      if (accept(m)) {
        found = m;
        break;
      }
      const p = this.position[m]!;
      this.excluded[p] = 1;
      this.refresh(p);
      (skipped ??= []).push(p);
    }
    if (skipped !== undefined) {
      for (const p of skipped) {
        this.excluded[p] = 0;
        this.refresh(p);
      }
    }
    return found;
  }

  private refresh(p: number): void {
    let i = this.width + p;
    this.nodes[i] = this.excluded[p] === 1 ? -1 : this.machines[p]!;
    for (i >>= 1; i >= 1; i >>= 1) this.nodes[i] = this.better(this.nodes[2 * i]!, this.nodes[2 * i + 1]!);
  }

  private better(a: number, b: number): number {
    if (a < 0) return b;
    if (b < 0) return a;
    const la = this.load[a]!;
    const lb = this.load[b]!;
    return la < lb || (la === lb && a < b) ? a : b;
  }
}
