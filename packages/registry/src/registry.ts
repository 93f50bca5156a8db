import {
  ConflictError,
  METADATA_KEY_PATTERN,
  NotFoundError,
  ValidationError,
  unitHash,
  type JobState,
  type MachinePatchOp,
  type UnitOption,
} from '@fleet/core';
import { Keyspace } from './keyspace.js';
import type { Kv, Lease, Op } from './kv.js';
import { MAX_TXN_OPS } from './kv.js';
import {
  DynamicMetadataSchema,
  MachinePresenceSchema,
  PlacementRecordSchema,
  StateRecordSchema,
  UnitBodySchema,
  UnitRecordSchema,
  UnplacedRecordSchema,
  decode,
  type MachinePresence,
  type PlacementRecord,
  type StateRecord,
  type UnitRecord,
} from './records.js';

/** A unit with its options, as the API returns it. */
export interface StoredUnit extends UnitRecord {
  readonly options: readonly UnitOption[];
  /** etcd mod revision of the unit key (for optimistic updates). */
  readonly modRevision: number;
}

/** A live machine with dynamic metadata merged over its configured metadata. */
export interface MachineInfo {
  readonly id: string;
  readonly primaryIP: string | undefined;
  readonly metadata: Readonly<Record<string, string>>;
  readonly configuredMetadata: Readonly<Record<string, string>>;
  readonly dynamicMetadata: Readonly<Record<string, string>>;
  readonly version: string | undefined;
}

export interface Placement extends PlacementRecord {
  readonly machineID: string;
  readonly unit: string;
}

export interface UnitStateInfo extends StateRecord {
  readonly unit: string;
  readonly machineID: string;
}

export interface RegistryOptions {
  /** Root of every key. @default '/_coreos.com/fleet/' */
  readonly prefix?: string;
}

/** What a machine registers about itself. */
export interface MachineIdentity {
  readonly id: string;
  readonly primaryIP?: string;
  readonly metadata?: Readonly<Record<string, string>>;
  readonly version?: string;
}

/** A machine's registration: the lease its presence and reported states hang on. */
export interface MachineSession {
  readonly machineID: string;
  readonly lease: Lease;
  /** Ends the presence now (graceful stop): the engine moves its units at once. */
  revoke(): Promise<void>;
}

/**
 * Typed access to the cluster state in etcd. The only code that knows the
 * keyspace; values are validated with zod on read. Watch-backed views live in
 * {@link PrefixCache}; this class does reads and conditional writes.
 */
export class Registry {
  readonly keys: Keyspace;

  constructor(
    readonly kv: Kv,
    options: RegistryOptions = {},
  ) {
    this.keys = new Keyspace(options.prefix);
  }

  // ---- units -------------------------------------------------------------

  /** Decodes a `unit/` value (cache decoders use this too). */
  decodeUnit(value: string): UnitRecord | undefined {
    return decode(UnitRecordSchema, value);
  }

  async getUnitRecord(name: string): Promise<(UnitRecord & { modRevision: number }) | undefined> {
    const kv = await this.kv.get(this.keys.unit(name));
    if (!kv) return undefined;
    const rec = decode(UnitRecordSchema, kv.value);
    return rec ? { ...rec, modRevision: kv.modRevision } : undefined;
  }

  decodeBody(value: string): readonly UnitOption[] | undefined {
    return decode(UnitBodySchema, value)?.options;
  }

  async getBody(hash: string): Promise<readonly UnitOption[] | undefined> {
    const kv = await this.kv.get(this.keys.body(hash));
    return kv ? decode(UnitBodySchema, kv.value)?.options : undefined;
  }

  /** Every unit body, by hash. */
  async listBodies(): Promise<Map<string, readonly UnitOption[]>> {
    const res = await this.kv.range(this.keys.bodiesPrefix);
    const out = new Map<string, readonly UnitOption[]>();
    for (const kv of res.kvs) {
      const body = decode(UnitBodySchema, kv.value);
      if (body) out.set(kv.key.slice(this.keys.bodiesPrefix.length), body.options);
    }
    return out;
  }

  async getUnit(name: string): Promise<StoredUnit | undefined> {
    const rec = await this.getUnitRecord(name);
    if (!rec) return undefined;
    const options = await this.getBody(rec.hash);
    return { ...rec, options: options ?? [] };
  }

  /** Every unit with its options, sorted by name. */
  async listUnits(): Promise<{ units: StoredUnit[]; revision: number }> {
    const [unitsRes, bodies] = await Promise.all([this.kv.range(this.keys.unitsPrefix), this.listBodies()]);
    const units: StoredUnit[] = [];
    for (const kv of unitsRes.kvs) {
      const rec = decode(UnitRecordSchema, kv.value);
      if (rec) units.push({ ...rec, options: bodies.get(rec.hash) ?? [], modRevision: kv.modRevision });
    }
    return { units, revision: unitsRes.revision };
  }

  /**
   * Creates a unit; its body is stored by hash in the same transaction.
   * @throws ConflictError if a unit of that name exists.
   * @returns the revision of the write.
   */
  async createUnit(name: string, options: readonly UnitOption[], desiredState: JobState): Promise<number> {
    const hash = unitHash(options);
    const record: UnitRecord = { name, hash, desiredState };
    const res = await this.kv.txn(
      [{ key: this.keys.unit(name), target: 'createRevision', op: '==', value: 0 }],
      [
        { type: 'put', key: this.keys.unit(name), value: JSON.stringify(record) },
        { type: 'put', key: this.keys.body(hash), value: JSON.stringify({ options }) },
      ],
    );
    if (!res.succeeded) throw new ConflictError(`unit ${name} already exists`, { fields: { unit: name } });
    return res.revision;
  }

  /**
   * Replaces a unit's options (and optionally its desired state) if it still
   * has `expectedModRevision`.
   * @throws ConflictError when the unit changed meanwhile (callers re-read).
   */
  async replaceUnit(
    name: string,
    options: readonly UnitOption[],
    desiredState: JobState,
    expectedModRevision: number,
  ): Promise<number> {
    const hash = unitHash(options);
    const record: UnitRecord = { name, hash, desiredState };
    const res = await this.kv.txn(
      [{ key: this.keys.unit(name), target: 'modRevision', op: '==', value: expectedModRevision }],
      [
        { type: 'put', key: this.keys.unit(name), value: JSON.stringify(record) },
        { type: 'put', key: this.keys.body(hash), value: JSON.stringify({ options }) },
      ],
    );
    if (!res.succeeded)
      throw new ConflictError(`unit ${name} changed concurrently`, { fields: { unit: name } });
    return res.revision;
  }

  /**
   * Sets a unit's desired state (optimistic, retried on concurrent change).
   * @throws NotFoundError if the unit does not exist.
   * @returns the revision of the write (or of the read, if nothing changed).
   */
  async setDesiredState(name: string, desiredState: JobState): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      const rec = await this.getUnitRecord(name);
      if (!rec) throw new NotFoundError('unit does not exist', { fields: { unit: name } });
      if (rec.desiredState === desiredState) return rec.modRevision;
      const next: UnitRecord = { name: rec.name, hash: rec.hash, desiredState };
      const res = await this.kv.txn(
        [{ key: this.keys.unit(name), target: 'modRevision', op: '==', value: rec.modRevision }],
        [{ type: 'put', key: this.keys.unit(name), value: JSON.stringify(next) }],
      );
      if (res.succeeded) return res.revision;
      if (attempt >= 20) throw new ConflictError(`unit ${name} keeps changing; try again`);
    }
  }

  /**
   * Removes a unit. Its body is collected by the engine once no unit refers
   * to it; its placements are removed by the engine.
   * @throws NotFoundError if the unit does not exist.
   */
  async destroyUnit(name: string): Promise<number> {
    const key = this.keys.unit(name);
    const res = await this.kv.txn(
      [{ key, target: 'createRevision', op: '>', value: 0 }],
      [{ type: 'delete', key }],
    );
    if (!res.succeeded) throw new NotFoundError('unit does not exist', { fields: { unit: name } });
    return res.revision;
  }

  // ---- machines ----------------------------------------------------------

  decodePresence(value: string): MachinePresence | undefined {
    return decode(MachinePresenceSchema, value);
  }

  decodeDynamicMetadata(value: string): Record<string, string> | undefined {
    return decode(DynamicMetadataSchema, value)?.metadata;
  }

  /**
   * Announces a machine under a fresh lease of `ttlSeconds`; keepalives (not
   * writes) keep it alive. A live machine with the same ID and another
   * `owner` token is refused (as fleet refused duplicate IDs); the same owner
   * (a restarted fleetd on the same boot) takes its presence over without the
   * key ever disappearing, so the engine sees no machine loss.
   *
   * @throws ConflictError for a duplicate machine ID.
   */
  async registerMachine(
    identity: MachineIdentity,
    ttlSeconds: number,
    owner: string,
  ): Promise<MachineSession> {
    const key = this.keys.machine(identity.id);
    const presence: MachinePresence = {
      id: identity.id,
      ...(identity.primaryIP ? { primaryIP: identity.primaryIP } : {}),
      metadata: { ...(identity.metadata ?? {}) },
      owner,
      ...(identity.version ? { version: identity.version } : {}),
      startedAt: new Date().toISOString(),
    };
    const existing = await this.kv.get(key);
    if (existing) {
      const other = decode(MachinePresenceSchema, existing.value);
      if (other && other.owner !== owner) {
        throw new ConflictError(
          `machine ID ${identity.id} is already in use by another live machine${other.primaryIP ? ` (${other.primaryIP})` : ''}`,
          { fields: { machineID: identity.id } },
        );
      }
    }
    const lease = await this.kv.grantLease(ttlSeconds);
    const res = await this.kv.txn(
      [
        existing
          ? { key, target: 'modRevision', op: '==', value: existing.modRevision }
          : { key, target: 'createRevision', op: '==', value: 0 },
      ],
      [{ type: 'put', key, value: JSON.stringify(presence), lease: lease.id }],
    );
    if (!res.succeeded) {
      await lease.revoke().catch(() => undefined);
      throw new ConflictError(`machine ID ${identity.id} was registered concurrently by another process`, {
        fields: { machineID: identity.id },
      });
    }
    return {
      machineID: identity.id,
      lease,
      revoke: () => lease.revoke(),
    };
  }

  /** Live machines with merged metadata, sorted by ID. */
  async listMachines(): Promise<MachineInfo[]> {
    const [presences, dynamic] = await Promise.all([
      this.kv.range(this.keys.machinesPrefix),
      this.kv.range(this.keys.machineMetaPrefix),
    ]);
    const dyn = new Map<string, Record<string, string>>();
    for (const kv of dynamic.kvs) {
      const md = this.decodeDynamicMetadata(kv.value);
      if (md) dyn.set(kv.key.slice(this.keys.machineMetaPrefix.length), md);
    }
    const out: MachineInfo[] = [];
    for (const kv of presences.kvs) {
      const p = decode(MachinePresenceSchema, kv.value);
      if (p) out.push(machineInfo(p, dyn.get(p.id) ?? {}));
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /**
   * Applies `PATCH /machines` operations to dynamic metadata, all or nothing.
   * Paths are `/<machineID>/metadata/<key>`; ops add, replace, remove.
   * @throws ValidationError with fleet's texts.
   */
  async patchMachineMetadata(ops: readonly MachinePatchOp[]): Promise<number> {
    const parsed = ops.map((op) => {
      if (op.op !== 'add' && op.op !== 'remove' && op.op !== 'replace') {
        throw new ValidationError('invalid op: expect add, remove, or replace');
      }
      const m = /^\/([^/]+)\/metadata\/([^/]+)$/.exec(op.path);
      if (!m || !METADATA_KEY_PATTERN.test(m[2] as string)) {
        throw new ValidationError('machine metadata path invalid');
      }
      const value = op.value?.value;
      if (op.op !== 'remove' && (value === undefined || value === null)) {
        throw new ValidationError('invalid value: add and replace require a value');
      }
      return { op: op.op, machineID: m[1] as string, key: m[2] as string, value };
    });
    for (let attempt = 0; ; attempt++) {
      const machines = [...new Set(parsed.map((p) => p.machineID))];
      const current = await Promise.all(machines.map((id) => this.kv.get(this.keys.machineMeta(id))));
      const next = new Map<string, Record<string, string>>();
      machines.forEach((id, i) => {
        const kv = current[i];
        next.set(id, { ...((kv && this.decodeDynamicMetadata(kv.value)) ?? {}) });
      });
      for (const p of parsed) {
        const md = next.get(p.machineID) as Record<string, string>;
        if (p.op === 'remove') delete md[p.key];
        else md[p.key] = p.value as string;
      }
      const writes: Op[] = machines.map((id) => {
        const md = next.get(id) as Record<string, string>;
        return Object.keys(md).length === 0
          ? { type: 'delete', key: this.keys.machineMeta(id) }
          : { type: 'put', key: this.keys.machineMeta(id), value: JSON.stringify({ metadata: md }) };
      });
      const res = await this.kv.txn(
        machines.map((id, i) => ({
          key: this.keys.machineMeta(id),
          target: 'modRevision' as const,
          op: '==' as const,
          value: current[i]?.modRevision ?? 0,
        })),
        writes,
      );
      if (res.succeeded) return res.revision;
      if (attempt >= 20) throw new ConflictError('machine metadata keeps changing; try again');
    }
  }

  // ---- placements (written by the engine, read by agents and the API) -----

  decodePlacement(value: string): PlacementRecord | undefined {
    return decode(PlacementRecordSchema, value);
  }

  async listPlacements(machineID?: string): Promise<Placement[]> {
    const prefix =
      machineID === undefined ? this.keys.schedulePrefix : this.keys.machineSchedulePrefix(machineID);
    const res = await this.kv.range(prefix);
    const out: Placement[] = [];
    for (const kv of res.kvs) {
      const pair = Keyspace.pair(kv.key.slice(this.keys.schedulePrefix.length));
      const rec = decode(PlacementRecordSchema, kv.value);
      if (pair && rec) out.push({ ...rec, machineID: pair[0], unit: pair[1] });
    }
    return out;
  }

  // ---- observed states (written by each machine's agent) ------------------

  decodeState(value: string): StateRecord | undefined {
    return decode(StateRecordSchema, value);
  }

  /**
   * Publishes a machine's observed unit states (undefined = the unit is gone
   * from this machine), attached to the machine's lease so they vanish with
   * it. Batched into as few transactions as etcd allows.
   */
  async putStates(
    machineID: string,
    leaseID: string,
    states: ReadonlyMap<string, StateRecord | undefined>,
  ): Promise<number> {
    const ops: Op[] = [];
    for (const [unit, state] of states) {
      const key = this.keys.state(unit, machineID);
      ops.push(
        state === undefined
          ? { type: 'delete', key }
          : { type: 'put', key, value: JSON.stringify(state), lease: leaseID },
      );
    }
    let revision = 0;
    for (let i = 0; i < ops.length; i += MAX_TXN_OPS) {
      const res = await this.kv.txn([], ops.slice(i, i + MAX_TXN_OPS));
      revision = res.revision;
    }
    return revision;
  }

  /** Reported states, sorted by unit then machine; optionally filtered. */
  async listStates(filter: { machineID?: string; unitName?: string } = {}): Promise<UnitStateInfo[]> {
    const prefix =
      filter.unitName === undefined ? this.keys.statesPrefix : this.keys.unitStatesPrefix(filter.unitName);
    const res = await this.kv.range(prefix);
    const out: UnitStateInfo[] = [];
    for (const kv of res.kvs) {
      const pair = Keyspace.pair(kv.key.slice(this.keys.statesPrefix.length));
      const rec = decode(StateRecordSchema, kv.value);
      if (!pair || !rec) continue;
      if (filter.machineID !== undefined && pair[1] !== filter.machineID) continue;
      out.push({ ...rec, unit: pair[0], machineID: pair[1] });
    }
    return out;
  }

  // ---- unplaced reasons (written by the engine) ---------------------------

  decodeUnplaced(value: string): string | undefined {
    return decode(UnplacedRecordSchema, value)?.reason;
  }

  async getUnplacedReason(unit: string): Promise<string | undefined> {
    const kv = await this.kv.get(this.keys.unplaced(unit));
    return kv ? this.decodeUnplaced(kv.value) : undefined;
  }

  async listUnplaced(): Promise<Map<string, string>> {
    const res = await this.kv.range(this.keys.unplacedPrefix);
    const out = new Map<string, string>();
    for (const kv of res.kvs) {
      const reason = this.decodeUnplaced(kv.value);
      if (reason !== undefined) out.set(kv.key.slice(this.keys.unplacedPrefix.length), reason);
    }
    return out;
  }
}

export function machineInfo(p: MachinePresence, dynamic: Readonly<Record<string, string>>): MachineInfo {
  return {
    id: p.id,
    primaryIP: p.primaryIP,
    metadata: { ...p.metadata, ...dynamic },
    configuredMetadata: p.metadata,
    dynamicMetadata: dynamic,
    version: p.version,
  };
}
