import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Gives memory back after bursts. V8 collects its old generation lazily: after
 * starting 1,000 units fleetd's live heap was ~23 MB but its RSS stayed at
 * ~170 MB, full of garbage no allocation pressure ever asked V8 to collect
 * (with a 40 MB heap cap RSS was 82 MB). Capping the heap would make a large
 * leader run out of memory, so instead this checks the heap every few seconds
 * (a cheap in-process read, no syscall) and runs one full collection when it
 * has grown well past what was live after the last one.
 */
export class IdleCollector {
  private timer: NodeJS.Timeout | undefined;
  private liveAfterLastGc: number;
  private readonly gc: (() => void) | undefined;
  collections = 0;

  constructor(private readonly options: { intervalMs?: number; growthBytes?: number } = {}) {
    this.gc = exposeGc();
    this.liveAfterLastGc = getHeapStatistics().used_heap_size;
  }

  start(): void {
    if (!this.gc || this.timer) return;
    this.timer = setInterval(() => this.check(), this.options.intervalMs ?? 5000);
    this.timer.unref();
  }

  /** Collects if the heap grew by more than half of the live size (and at least `growthBytes`). */
  check(): boolean {
    if (!this.gc) return false;
    const used = getHeapStatistics().used_heap_size;
    const threshold =
      this.liveAfterLastGc + Math.max(this.options.growthBytes ?? 16 * 1024 * 1024, this.liveAfterLastGc / 2);
    if (used < threshold) return false;
    this.gc();
    this.collections++;
    this.liveAfterLastGc = getHeapStatistics().used_heap_size;
    return true;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** The gc() function without requiring `--expose-gc` on the command line. */
function exposeGc(): (() => void) | undefined {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (typeof existing === 'function') return existing;
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}
