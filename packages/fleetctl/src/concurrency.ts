/**
 * Requests fleetctl may have in flight at once. fleet's fleetctl sent one
 * request per unit after the other; for `start apache.*` with a hundred files
 * that is hundreds of round trips in a row.
 */
export const REQUEST_CONCURRENCY = 16;

/**
 * Maps `items` with at most `limit` calls of `fn` running at once. Results
 * come back in the order of `items`; if calls fail, the error of the first
 * failing item (in that order) is thrown once every call has settled, so the
 * message is the one a sequential loop would have given.
 */
export async function mapInOrder<T, R>(
  items: readonly T[],
  fn: (item: T, index: number) => Promise<R>,
  limit = REQUEST_CONCURRENCY,
): Promise<R[]> {
  const results = new Array<PromiseSettledResult<R>>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = { status: 'fulfilled', value: await fn(items[i] as T, i) };
      } catch (reason) {
        results[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, () => worker()));
  return results.map((r) => {
    if (r.status === 'rejected') throw r.reason;
    return r.value;
  });
}
