/**
 * Polls `check` until it returns without throwing (or returns a truthy value),
 * or the deadline passes; then rethrows the last failure. This is how tests
 * wait for a distributed system to converge — never a bare sleep.
 */
export async function eventually<T>(
  check: () => T | Promise<T>,
  options: { timeoutMs?: number; intervalMs?: number; message?: string } = {},
): Promise<Exclude<T, false | undefined | null>> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  const interval = options.intervalMs ?? 50;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== false && value !== undefined && value !== null)
        return value as Exclude<T, false | undefined | null>;
      lastError = new Error(`condition returned ${String(value)}`);
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const detail = lastError instanceof Error ? lastError.message : String(lastError);
      const err = new Error(
        `${options.message ?? 'condition not met'} within ${options.timeoutMs ?? 10_000} ms: ${detail}`,
      );
      (err as Error & { cause?: unknown }).cause = lastError;
      throw err;
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** A unique, short, lowercase id for names of things a test creates. */
export function uniqueId(prefix = 't'): string {
  return `${prefix}${Date.now().toString(36).slice(-4)}${Math.random().toString(36).slice(2, 6)}`;
}
