/**
 * The units waiting to be placed, taken lowest rank first, each at most once
 * at a time.
 *
 * Nearly every unit is queued at the start, in rank order; those sit in a
 * plain list read front to back. Units queued later (moved by Replaces,
 * retried) go to a binary heap. Taking the smaller of the two heads keeps rank
 * order without paying heap operations for 100,000 units that arrive sorted.
 */
export class RankQueue {
  private readonly queued: Uint8Array;
  /** Ranks added by {@link addInOrder}, ascending. */
  private readonly run: number[] = [];
  private next = 0;
  /** Ranks added by {@link add}: a binary min-heap. */
  private readonly heap: number[] = [];

  /**
   * @param rank unit → rank
   * @param byRank rank → unit
   */
  constructor(
    private readonly rank: Int32Array,
    private readonly byRank: Int32Array,
  ) {
    this.queued = new Uint8Array(rank.length);
  }

  /** Queues `u`, whose rank must exceed that of every unit queued this way before. */
  addInOrder(u: number): void {
    if (this.queued[u] === 1) return;
    this.queued[u] = 1;
    this.run.push(this.rank[u]!);
  }

  /** Queues `u` unless it is queued already. */
  add(u: number): void {
    if (this.queued[u] === 1) return;
    this.queued[u] = 1;
    const heap = this.heap;
    let i = heap.push(this.rank[u]!) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]! <= heap[i]!) break;
      [heap[parent], heap[i]] = [heap[i]!, heap[parent]!];
      i = parent;
    }
  }

  /** Takes the unit of lowest rank off the queue, or -1 when it is empty. */
  take(): number {
    const fromRun = this.next < this.run.length ? this.run[this.next]! : -1;
    const fromHeap = this.heap.length > 0 ? this.heap[0]! : -1;
    let r: number;
    if (fromHeap < 0 || (fromRun >= 0 && fromRun < fromHeap)) {
      if (fromRun < 0) return -1;
      r = fromRun;
      this.next++;
    } else r = this.popHeap();
    const u = this.byRank[r]!;
    this.queued[u] = 0;
    return u;
  }

  private popHeap(): number {
    const heap = this.heap;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let min = i;
        if (l < heap.length && heap[l]! < heap[min]!) min = l;
        if (r < heap.length && heap[r]! < heap[min]!) min = r;
        if (min === i) break;
        [heap[min], heap[i]] = [heap[i]!, heap[min]!];
        i = min;
      }
    }
    return top;
  }
}
