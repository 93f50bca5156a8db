import { z } from 'zod';
import { ValidationError } from './errors.js';

/**
 * The wire entities of fleet's HTTP API v1 (fleet-compat §4, §6) as zod
 * schemas: the one definition the API, the client and the registry share.
 */

/** Desired/current job states: submitted, loaded into systemd, started. */
export const JOB_STATES = ['inactive', 'loaded', 'launched'] as const;
export const JobStateSchema = z.enum(JOB_STATES);
export type JobState = z.infer<typeof JobStateSchema>;

export function isJobState(s: unknown): s is JobState {
  return typeof s === 'string' && (JOB_STATES as readonly string[]).includes(s);
}

/** Orders states so that "at least loaded" comparisons are simple. */
export function jobStateRank(s: JobState): number {
  return JOB_STATES.indexOf(s);
}

export const UnitOptionSchema = z.object({
  section: z.string(),
  name: z.string(),
  value: z.string(),
});

export const UnitSchema = z.object({
  name: z.string(),
  options: z.array(UnitOptionSchema).optional(),
  desiredState: JobStateSchema.optional(),
  currentState: JobStateSchema.optional(),
  machineID: z.string().optional(),
  /**
   * Ours, not fleet's: why the engine has not placed this unit. Fleet's
   * fleetctl ignores unknown fields.
   */
  unplacedReason: z.string().optional(),
});
export type Unit = z.infer<typeof UnitSchema>;

export const UnitStateSchema = z.object({
  name: z.string(),
  hash: z.string().optional(),
  machineID: z.string().optional(),
  systemdLoadState: z.string().optional(),
  systemdActiveState: z.string().optional(),
  systemdSubState: z.string().optional(),
});
export type UnitState = z.infer<typeof UnitStateSchema>;

export const MachineSchema = z.object({
  id: z.string(),
  primaryIP: z.string().optional(),
  metadata: z.record(z.string(), z.string()).optional(),
});
export type Machine = z.infer<typeof MachineSchema>;

export const UnitPageSchema = z.object({
  units: z.array(UnitSchema).optional(),
  nextPageToken: z.string().optional(),
});
export type UnitPage = z.infer<typeof UnitPageSchema>;

export const UnitStatePageSchema = z.object({
  states: z.array(UnitStateSchema).optional(),
  nextPageToken: z.string().optional(),
});
export type UnitStatePage = z.infer<typeof UnitStatePageSchema>;

export const MachinePageSchema = z.object({
  machines: z.array(MachineSchema).optional(),
  nextPageToken: z.string().optional(),
});
export type MachinePage = z.infer<typeof MachinePageSchema>;

/** `{"error":{"code":404,"message":"unit does not exist"}}` */
export const ErrorEnvelopeSchema = z.object({
  error: z.object({ code: z.number().int(), message: z.string() }),
});
export type ErrorEnvelope = z.infer<typeof ErrorEnvelopeSchema>;

/** Body of `PUT /units/{name}`: create, replace or change desired state. */
export const UnitPutBodySchema = z.object({
  name: z.string().optional(),
  desiredState: z.string().optional(),
  options: z.array(UnitOptionSchema).nullish(),
});
export type UnitPutBody = z.infer<typeof UnitPutBodySchema>;

/** One operation of `PATCH /machines` (JSON-patch-like, on dynamic metadata). */
export const MachinePatchOpSchema = z.object({
  op: z.string(),
  path: z.string(),
  value: z.object({ value: z.string() }).partial().nullish(),
});
export const MachinePatchBodySchema = z.array(MachinePatchOpSchema);
export type MachinePatchOp = z.infer<typeof MachinePatchOpSchema>;

/** Key syntax for dynamic metadata paths: `/<machineID>/metadata/<key>`. */
export const METADATA_KEY_PATTERN = /^[A-Za-z0-9_.-]+$/;

/** A page position: `limit` items per page, pages numbered from 1. */
export interface PageToken {
  readonly limit: number;
  readonly page: number;
}

/**
 * Encodes a page token as fleet did: URL-safe base64 (with padding) of 4
 * bytes, little-endian uint16 limit then uint16 page (page 2 at limit 100 is
 * `ZAACAA==`).
 */
export function encodePageToken(token: PageToken): string {
  const buf = Buffer.alloc(4);
  buf.writeUInt16LE(token.limit, 0);
  buf.writeUInt16LE(token.page, 2);
  return buf.toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
}

/** @throws ValidationError for anything that is not a token encodePageToken could make. */
export function decodePageToken(value: string): PageToken {
  const bad = (why: string): never => {
    throw new ValidationError(`invalid value for nextPageToken: ${why}`, { fields: { token: value } });
  };
  if (!/^[A-Za-z0-9_-]{6}==$/.test(value)) bad('malformed token');
  const buf = Buffer.from(value.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (buf.length !== 4) bad('malformed token');
  const limit = buf.readUInt16LE(0);
  const page = buf.readUInt16LE(2);
  if (limit < 1) bad('page limit must be a positive number');
  if (page < 1) bad('page number must be a positive number');
  return { limit, page };
}
