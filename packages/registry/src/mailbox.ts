import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { UnavailableError, errorMessage } from '@fleet/core';
import type { Registry } from './registry.js';
import { decode } from './records.js';
import type { Watch } from './kv.js';

/** A read-only command about one unit, run by the fleetd of the unit's machine. */
export const UnitCommandRequestSchema = z.object({
  kind: z.enum(['status', 'journal']),
  unit: z.string(),
  lines: z.number().int().min(1).max(10_000).optional(),
  output: z.string().optional(),
});
export type UnitCommandRequest = z.infer<typeof UnitCommandRequestSchema>;

export const UnitCommandResultSchema = z.object({ exitCode: z.number().int(), output: z.string() });
export type UnitCommandResult = z.infer<typeof UnitCommandResultSchema>;

/** Output beyond this is cut, so a result always fits in one etcd request. */
export const MAX_COMMAND_OUTPUT = 512 * 1024;

/**
 * `status`/`journal` for units on other machines without SSH and without a
 * new network listener: the asking fleetd puts a request under the target
 * machine's own `cmd/<machine>/` prefix (which only that machine watches) and
 * waits for `cmd-result/<id>`. Both keys hang on a short lease the asker
 * revokes when done, so nothing is left behind. Access is etcd's access.
 */
export class CommandMailbox {
  constructor(private readonly registry: Registry) {}

  async request(machineID: string, req: UnitCommandRequest, timeoutMs = 10_000): Promise<UnitCommandResult> {
    const { kv, keys } = this.registry;
    const id = randomBytes(8).toString('hex');
    const lease = await kv.grantLease(Math.max(5, Math.ceil(timeoutMs / 1000) + 5));
    let watch: Watch | undefined;
    try {
      const resultKey = keys.commandResult(id);
      const start = (await kv.currentRevision()) + 1;
      const result = new Promise<UnitCommandResult>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new UnavailableError(`machine ${machineID} did not answer within ${timeoutMs} ms`)),
          timeoutMs,
        );
        watch = kv.watchPrefix(resultKey, start, {
          onEvents: (events) => {
            for (const e of events) {
              if (e.type !== 'put' || e.kv.key !== resultKey) continue;
              const r = decode(UnitCommandResultSchema, e.kv.value);
              clearTimeout(timer);
              if (r) resolve(r);
              else reject(new UnavailableError(`malformed answer from machine ${machineID}`));
            }
          },
          onReset: (why) => {
            clearTimeout(timer);
            reject(new UnavailableError(`lost the answer from machine ${machineID}: ${why}`));
          },
        });
      });
      await kv.txn(
        [],
        [
          {
            type: 'put',
            key: `${keys.machineCommandsPrefix(machineID)}${id}`,
            value: JSON.stringify(req),
            lease: lease.id,
          },
        ],
      );
      return await result;
    } finally {
      await watch?.close();
      await lease.revoke().catch(() => undefined);
    }
  }

  /** Answers requests addressed to `machineID` with `handler`. */
  serve(machineID: string, handler: (req: UnitCommandRequest) => Promise<UnitCommandResult>): Watch {
    const { kv, keys } = this.registry;
    const prefix = keys.machineCommandsPrefix(machineID);
    let inner: Watch | undefined;
    let closed = false;
    const begin = async (): Promise<void> => {
      while (!closed) {
        try {
          const start = (await kv.currentRevision()) + 1;
          inner = kv.watchPrefix(prefix, start, {
            onEvents: (events) => {
              for (const e of events) {
                if (e.type !== 'put') continue;
                const id = e.kv.key.slice(prefix.length);
                const lease = e.kv.lease;
                const req = decode(UnitCommandRequestSchema, e.kv.value);
                void (async () => {
                  const res: UnitCommandResult = req
                    ? await handler(req).catch((err: unknown) => ({ exitCode: 1, output: errorMessage(err) }))
                    : { exitCode: 2, output: 'malformed request' };
                  const output =
                    res.output.length > MAX_COMMAND_OUTPUT
                      ? `${res.output.slice(0, MAX_COMMAND_OUTPUT)}\n[output truncated]\n`
                      : res.output;
                  await kv
                    .txn(
                      [],
                      [
                        {
                          type: 'put',
                          key: keys.commandResult(id),
                          value: JSON.stringify({ exitCode: res.exitCode, output }),
                          lease,
                        },
                      ],
                    )
                    .catch(() => undefined); // the asker gave up (lease gone) or etcd is away
                })();
              }
            },
            onReset: () => {
              void inner?.close();
              if (!closed) void begin();
            },
          });
          return;
        } catch {
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    };
    void begin();
    return {
      close: async () => {
        closed = true;
        await inner?.close();
      },
    };
  }
}
