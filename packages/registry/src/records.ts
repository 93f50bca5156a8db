import { z } from 'zod';
import { JobStateSchema, UnitOptionSchema } from '@fleet/core';

/**
 * What the registry stores, as zod schemas: every value read from etcd is
 * decoded with one of these, so a malformed or foreign value is refused at
 * the boundary instead of travelling through the system.
 */

/** `unit/<name>`: the user's desired definition and state of a unit. */
export const UnitRecordSchema = z.object({
  name: z.string(),
  hash: z.string().regex(/^[0-9a-f]{40}$/),
  desiredState: JobStateSchema,
});
export type UnitRecord = z.infer<typeof UnitRecordSchema>;

/** `body/<hash>`: unit options, shared by every unit with the same canonical text. */
export const UnitBodySchema = z.object({ options: z.array(UnitOptionSchema) });
export type UnitBody = z.infer<typeof UnitBodySchema>;

const MetadataSchema = z.record(z.string(), z.string());

/** `machine/<id>` under the machine's lease: presence, address, configured metadata. */
export const MachinePresenceSchema = z.object({
  id: z.string(),
  primaryIP: z.string().optional(),
  metadata: MetadataSchema.default({}),
  /** Random token of the fleetd instance family that owns this ID on this boot. */
  owner: z.string(),
  version: z.string().optional(),
  startedAt: z.string().optional(),
});
export type MachinePresence = z.infer<typeof MachinePresenceSchema>;

/** `machine-meta/<id>`: dynamic metadata set through the API (persists, no lease). */
export const DynamicMetadataSchema = z.object({ metadata: MetadataSchema });

/** `schedule/<machine>/<unit>`: the engine's decision, with what the agent needs to act. */
export const PlacementRecordSchema = z.object({
  hash: z.string(),
  desiredState: JobStateSchema,
});
export type PlacementRecord = z.infer<typeof PlacementRecordSchema>;

/** `state/<unit>/<machine>` under the machine's lease: what systemd reports. */
export const StateRecordSchema = z.object({
  hash: z.string().optional(),
  loadState: z.string().optional(),
  activeState: z.string().optional(),
  subState: z.string().optional(),
});
export type StateRecord = z.infer<typeof StateRecordSchema>;

/** `unplaced/<unit>`: why the engine could not place a unit. */
export const UnplacedRecordSchema = z.object({ reason: z.string() });

/** `engine/leader` under the leader's lease. */
export const LeaderRecordSchema = z.object({ id: z.string(), since: z.string() });
export type LeaderRecord = z.infer<typeof LeaderRecordSchema>;

/** Decodes JSON with a schema; undefined (never a throw) for malformed values. */
export function decode<T>(schema: z.ZodType<T>, value: string): T | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch {
    return undefined;
  }
  const parsed = schema.safeParse(raw);
  return parsed.success ? parsed.data : undefined;
}
