import { existsSync, readFileSync } from 'node:fs';
import { decode as decodeIni } from 'ini';
import { z } from 'zod';
import { ValidationError } from '@fleet/core';

/** Where fleetd looks for its config file when --config is not given. */
export const DEFAULT_CONFIG_PATH = '/etc/fleet/fleet.conf';

/** Go's strconv.ParseBool, which fleet used for boolean config values. */
function parseBool(raw: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(raw)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(raw)) return false;
  return undefined;
}

/** A Go duration ("30s", "500ms", "1m30s") or plain seconds ("5", "2.5") → seconds. */
export function parseDurationSeconds(raw: string): number | undefined {
  const s = raw.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  const unit: Record<string, number> = { ns: 1e-9, us: 1e-6, µs: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };
  let total = 0;
  let matched = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * (unit[m[2] as string] as number);
    matched = re.lastIndex;
  }
  return matched === s.length && matched > 0 ? total : undefined;
}

/** `k=v,k2=v2` → record; undefined if any item is not exactly k=v with both parts non-empty. */
export function parseMetadata(raw: string): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  const s = raw.trim();
  if (s === '') return out;
  for (const item of s.split(',')) {
    const eq = item.indexOf('=');
    const k = item.slice(0, eq).trim();
    const v = item.slice(eq + 1).trim();
    if (eq <= 0 || k === '' || v === '' || !/^[A-Za-z0-9_.-]+$/.test(k)) return undefined;
    out[k] = v;
  }
  return out;
}

/** `a,b` or JSON-ish `["a","b"]` → list of URLs. */
export function parseServerList(raw: string): string[] | undefined {
  let s = raw.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const items = s
    .split(',')
    .map((x) => x.trim().replace(/^"(.*)"$/, '$1'))
    .filter((x) => x !== '');
  if (items.length === 0) return undefined;
  for (const item of items) {
    try {
      const u = new URL(item);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
    } catch {
      return undefined;
    }
  }
  return items;
}

const str = z.string();
const boolean = z.string().transform((raw, ctx) => {
  const v = parseBool(raw.trim());
  if (v === undefined) ctx.addIssue({ code: 'custom', message: 'expected a boolean (true/false/1/0)' });
  return v ?? false;
});
const positiveSeconds = z.string().transform((raw, ctx) => {
  const v = parseDurationSeconds(raw);
  if (v === undefined || !(v > 0))
    ctx.addIssue({ code: 'custom', message: 'expected a positive duration such as 5s, 500ms or 2.5' });
  return v ?? 0;
});
const positiveInt = z.string().transform((raw, ctx) => {
  const v = Number(raw.trim());
  if (!Number.isInteger(v) || v < 1 || v > 65535)
    ctx.addIssue({ code: 'custom', message: 'expected an integer from 1 to 65535' });
  return v;
});
const nonNegativeInt = z.string().transform((raw, ctx) => {
  const v = Number(raw.trim());
  if (!Number.isInteger(v) || v < 0)
    ctx.addIssue({ code: 'custom', message: 'expected a non-negative integer' });
  return v;
});
const servers = z.string().transform((raw, ctx) => {
  const v = parseServerList(raw);
  if (v === undefined)
    ctx.addIssue({ code: 'custom', message: 'expected a comma-separated list of http(s) URLs' });
  return v ?? [];
});
const metadata = z.string().transform((raw, ctx) => {
  const v = parseMetadata(raw);
  if (v === undefined)
    ctx.addIssue({ code: 'custom', message: 'expected k=v pairs separated by commas (keys [A-Za-z0-9_.-])' });
  return v ?? {};
});
const ipv4 = z.string().transform((raw, ctx) => {
  const s = raw.trim();
  if (s !== '' && !/^(\d{1,3})(\.\d{1,3}){3}$/.test(s))
    ctx.addIssue({ code: 'custom', message: 'expected an IPv4 address' });
  return s;
});
const listenList = z.string().transform((raw, ctx) => {
  const items = raw
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  for (const item of items) {
    if (!/^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|localhost):\d{1,5}$/.test(item)) {
      ctx.addIssue({
        code: 'custom',
        message: `expected host:port listeners separated by commas, got ${JSON.stringify(item)}`,
      });
    }
  }
  return items;
});
const absolutePath = z.string().transform((raw, ctx) => {
  const s = raw.trim();
  if (!s.startsWith('/')) ctx.addIssue({ code: 'custom', message: 'expected an absolute path' });
  return s;
});
const optionalPath = z.string().transform((raw, ctx) => {
  const s = raw.trim();
  if (s !== '' && !s.startsWith('/')) ctx.addIssue({ code: 'custom', message: 'expected an absolute path' });
  return s;
});

/**
 * Every fleetd setting: fleet's keys (fleet-compat §7) plus ours. Values
 * arrive as strings (file, env, flags) and are validated here, once; an
 * invalid value stops startup naming the key and the value (fleet silently
 * ignored them).
 */
export const ConfigSchema = z.object({
  etcd_servers: servers.prefault('http://127.0.0.1:2379,http://127.0.0.1:4001'),
  etcd_key_prefix: z
    .string()
    .refine((s) => s.startsWith('/'), 'expected a key prefix starting with "/"')
    .prefault('/_coreos.com/fleet/'),
  etcd_username: str.prefault(''),
  etcd_password: str.prefault(''),
  etcd_cafile: optionalPath.prefault(''),
  etcd_certfile: optionalPath.prefault(''),
  etcd_keyfile: optionalPath.prefault(''),
  etcd_request_timeout: positiveSeconds.prefault('1.0'),
  public_ip: ipv4.prefault(''),
  metadata: metadata.prefault(''),
  /** Ours: 5 s (fleet: 30 s). Keepalives, not writes, keep presence alive. */
  agent_ttl: positiveSeconds.prefault('5s'),
  /** Ours: a slow safety resync; the engine reacts to watch events at once. */
  engine_reconcile_interval: positiveSeconds.prefault('30'),
  token_limit: positiveInt.prefault('100'),
  disable_engine: boolean.prefault('false'),
  /** Accepted for compatibility; watches are how we stay fast, so this only logs a warning. */
  disable_watches: boolean.prefault('false'),
  units_directory: absolutePath.prefault('/run/fleet/units/'),
  systemd_user: boolean.prefault('false'),
  verbosity: nonNegativeInt.prefault('0'),
  // ---- ours ----
  /** The API's unix socket (fleet: socket-activated /var/run/fleet.sock). */
  socket_path: optionalPath.prefault('/var/run/fleet.sock'),
  /** Extra TCP API listeners, host:port, comma-separated. Non-loopback ones require TLS with client certificates. */
  listen: listenList.prefault(''),
  api_certfile: optionalPath.prefault(''),
  api_keyfile: optionalPath.prefault(''),
  api_cafile: optionalPath.prefault(''),
  /** How many systemd start jobs the agent issues at once. */
  agent_start_concurrency: positiveInt.prefault('8'),
  /** Where fleetd keeps per-boot state (its owner token). */
  state_dir: absolutePath.prefault('/run/fleet'),
  /** Machine ID file (tests may point elsewhere). */
  machine_id_file: absolutePath.prefault('/etc/machine-id'),
});

export type Config = z.output<typeof ConfigSchema>;
export type ConfigKey = keyof typeof ConfigSchema.shape;
export const CONFIG_KEYS = Object.keys(ConfigSchema.shape) as ConfigKey[];

export interface ConfigSources {
  /** Parsed flags: key → raw value (keys with `-` or `_`). */
  readonly flags?: Readonly<Record<string, string>>;
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Explicit --config path (must exist). */
  readonly configPath?: string;
}

/**
 * Builds the configuration: flags > env (`FLEET_<KEY>`) > file > defaults.
 * @throws ValidationError naming the key and value, or an unknown key, or a
 * missing --config file.
 */
export function loadConfig(sources: ConfigSources = {}): { config: Config; configPath: string | undefined } {
  const raw: Record<string, string> = {};
  const path = sources.configPath ?? (existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : undefined);
  if (path !== undefined) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new ValidationError(`cannot read config file ${path}: ${(err as Error).message}`);
    }
    const parsed = decodeIni(text) as Record<string, unknown>;
    for (const [k, v] of Object.entries(parsed)) {
      if (typeof v === 'object')
        throw new ValidationError(`config file ${path}: sections are not supported ([${k}])`);
      if (!(CONFIG_KEYS as string[]).includes(k)) {
        throw new ValidationError(`config file ${path}: unknown key ${JSON.stringify(k)}`);
      }
      raw[k] = String(v);
    }
  }
  for (const key of CONFIG_KEYS) {
    const v = sources.env?.[`FLEET_${key.toUpperCase()}`];
    if (v !== undefined) raw[key] = v;
  }
  for (const [k, v] of Object.entries(sources.flags ?? {})) {
    const key = k.replace(/-/g, '_');
    if (!(CONFIG_KEYS as string[]).includes(key)) throw new ValidationError(`unknown flag --${k}`);
    raw[key] = v;
  }
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = String(issue?.path[0] ?? '?');
    throw new ValidationError(
      `invalid value for ${key}: ${JSON.stringify(raw[key] ?? '')} (${issue?.message ?? 'invalid'})`,
      { fields: { key, value: raw[key] } },
    );
  }
  return { config: result.data, configPath: path };
}
