/** Strongly connected components of a directed graph over nodes 0..n-1. */
export interface Components {
  /** Component id per node. */
  readonly component: Int32Array;
  /** Number of nodes per component id. */
  readonly size: readonly number[];
  /**
   * Nodes in the order their components were completed: every node comes after
   * the nodes it can reach in other components (successors first).
   */
  readonly order: Int32Array;
}

/**
 * Tarjan's algorithm, iterative so that a chain of 100,000 MachineOf units
 * cannot overflow the stack. Used to find MachineOf and Replaces cycles, which
 * decide must survive (treating them as unsatisfiable or as no-replace) rather
 * than loop on.
 */
export function stronglyConnected(n: number, successors: (v: number) => readonly number[]): Components {
  const index = new Int32Array(n).fill(-1);
  const low = new Int32Array(n);
  const onStack = new Uint8Array(n);
  const component = new Int32Array(n).fill(-1);
  const order = new Int32Array(n);
  const size: number[] = [];
  const stack: number[] = [];
  const frames: number[] = [];
  const edgePos: number[] = [];
  let nextIndex = 0;
  let emitted = 0;

  for (let root = 0; root < n; root++) {
    if (index[root] !== -1) continue;
    if (successors(root).length === 0) {
      // Fast path: most units have no MachineOf/Replaces edges at all.
      index[root] = nextIndex++;
      component[root] = size.length;
      size.push(1);
      order[emitted++] = root;
      continue;
    }
    index[root] = low[root] = nextIndex++;
    stack.push(root);
    onStack[root] = 1;
    frames.push(root);
    edgePos.push(0);
    while (frames.length > 0) {
      const top = frames.length - 1;
      const v = frames[top]!;
      const next = successors(v);
      const i = edgePos[top]!;
      if (i < next.length) {
        edgePos[top] = i + 1;
        const w = next[i]!;
        if (index[w] === -1) {
          index[w] = low[w] = nextIndex++;
          stack.push(w);
          onStack[w] = 1;
          frames.push(w);
          edgePos.push(0);
        } else if (onStack[w] === 1) {
          low[v] = Math.min(low[v]!, index[w]!);
        }
        continue;
      }
      frames.pop();
      edgePos.pop();
      if (low[v] === index[v]) {
        const id = size.length;
        let count = 0;
        let w: number;
        do {
          w = stack.pop()!;
          onStack[w] = 0;
          component[w] = id;
          order[emitted++] = w;
          count++;
        } while (w !== v);
        size.push(count);
      }
      const parent = frames[frames.length - 1];
      if (parent !== undefined) low[parent] = Math.min(low[parent]!, low[v]!);
    }
  }
  return { component, size, order };
}
