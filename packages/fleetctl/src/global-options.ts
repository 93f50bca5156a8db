import { InvalidArgumentError, type Command } from 'commander';
import { DEFAULT_ENDPOINT } from '@fleet/client';
import { UsageError } from './errors.js';
import { parseGoBool, parseSeconds, type FlagSpec } from './flags.js';
import type { Io } from './io.js';

/** fleetctl's global flags, compiled (flags > FLEETCTL_* env > defaults). */
export interface GlobalOptions {
  readonly endpoint: string;
  readonly driver: string;
  /** Seconds. */
  readonly requestTimeout: number;
  /** `host[:port]` of an SSH bastion, or ''. */
  readonly tunnel: string;
  readonly sshUsername: string;
  /** Seconds. */
  readonly sshTimeout: number;
  readonly strictHostKeyChecking: boolean;
  readonly knownHostsFile: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly debug: boolean;
  readonly version: boolean;
  readonly help: boolean;
}

/** The one driver we have: fleetd's HTTP API (fleet also had `etcd`, which fleetctl must never use). */
export const DRIVER_API = 'API';

/** Default of `--known-hosts-file`, as fleet had it; `~` is the user's HOME. */
export const DEFAULT_KNOWN_HOSTS_FILE = '~/.fleetctl/known_hosts';

interface GlobalFlag extends FlagSpec {
  readonly key: keyof GlobalOptions;
  /** Read from FLEETCTL_<FLAG> when not given on the command line. */
  readonly env: boolean;
}

function driver(value: string): string {
  if (value !== DRIVER_API) {
    throw new InvalidArgumentError(
      `only "${DRIVER_API}" is supported (fleetctl talks to fleetd's HTTP API, never to etcd)`,
    );
  }
  return value;
}

/** The global flags, in help order. */
export const GLOBAL_FLAGS: readonly GlobalFlag[] = [
  {
    key: 'caFile',
    flags: '--ca-file <path>',
    defaultValue: '',
    env: true,
    description: 'Location of TLS CA file used to secure communication with the fleet API',
  },
  {
    key: 'certFile',
    flags: '--cert-file <path>',
    defaultValue: '',
    env: true,
    description: 'Location of TLS cert file used to secure communication with the fleet API',
  },
  {
    key: 'debug',
    flags: '--debug',
    defaultValue: false,
    env: true,
    description: 'Print out more debug information to stderr',
  },
  {
    key: 'driver',
    flags: '--driver <driver>',
    defaultValue: DRIVER_API,
    env: true,
    parse: driver,
    description: `Adapter used to execute fleetctl commands; only "${DRIVER_API}"`,
  },
  {
    key: 'endpoint',
    flags: '--endpoint <url>',
    defaultValue: DEFAULT_ENDPOINT,
    env: true,
    description: 'Location of the fleet API: unix:///path, http://host:port[/prefix] or https://…',
  },
  {
    key: 'keyFile',
    flags: '--key-file <path>',
    defaultValue: '',
    env: true,
    description: 'Location of TLS key file used to secure communication with the fleet API',
  },
  {
    key: 'knownHostsFile',
    flags: '--known-hosts-file <path>',
    defaultValue: DEFAULT_KNOWN_HOSTS_FILE,
    env: true,
    description:
      'File used to store remote machine fingerprints. Ignored if strict host key checking is disabled.',
  },
  {
    key: 'requestTimeout',
    flags: '--request-timeout <seconds>',
    defaultValue: 3.0,
    env: true,
    parse: parseSeconds,
    description: 'Amount of time in seconds to allow a single request before considering it failed.',
  },
  {
    key: 'sshTimeout',
    flags: '--ssh-timeout <seconds>',
    defaultValue: 10.0,
    env: true,
    parse: parseSeconds,
    description: 'Amount of time in seconds to allow for SSH connection initialization before failing.',
  },
  {
    key: 'sshUsername',
    flags: '--ssh-username <name>',
    defaultValue: 'core',
    env: true,
    description: 'Username to use when connecting to CoreOS instance.',
  },
  {
    key: 'strictHostKeyChecking',
    flags: '--strict-host-key-checking',
    defaultValue: true,
    env: true,
    description:
      'Verify host keys presented by remote machines before initiating SSH connections (=false to disable).',
  },
  {
    key: 'tunnel',
    flags: '--tunnel <host[:port]>',
    defaultValue: '',
    env: true,
    description: 'Establish an SSH tunnel through the provided address for communication with fleet.',
  },
  {
    key: 'version',
    flags: '--version',
    defaultValue: false,
    env: false,
    description: 'Print the version and exit',
  },
  {
    key: 'help',
    flags: '-h, --help',
    defaultValue: false,
    env: false,
    description: 'Print usage information and exit',
  },
];

/** `strict-host-key-checking` → `FLEETCTL_STRICT_HOST_KEY_CHECKING`, as fleet derived it. */
export function envName(flag: FlagSpec): string {
  const long = /--([a-z-]+)/.exec(flag.flags)?.[1] ?? '';
  return `FLEETCTL_${long.replace(/-/g, '_').toUpperCase()}`;
}

/** Declares the global flags on the root command. */
export function declareGlobalFlags(program: Command): void {
  for (const f of GLOBAL_FLAGS) {
    if (f.parse) program.option(f.flags, f.description, f.parse, f.defaultValue);
    else program.option(f.flags, f.description, f.defaultValue as string | boolean | undefined);
  }
  // The only global boolean that defaults to true needs a way off besides `=false`.
  program.option('--no-strict-host-key-checking', 'Do not verify host keys');
}

/**
 * The global options after parsing: values given on the command line win;
 * otherwise a non-empty FLEETCTL_<FLAG> variable; otherwise the default.
 *
 * @throws UsageError for an environment value that does not parse, naming it.
 */
export function compileGlobalOptions(program: Command, env: Io['env']): GlobalOptions {
  const raw = program.opts<Record<string, unknown>>();
  const out: Record<string, unknown> = {};
  for (const f of GLOBAL_FLAGS) {
    let value = raw[f.key];
    const source = program.getOptionValueSource(f.key);
    const fromEnv = env[envName(f)];
    if (f.env && source !== 'cli' && fromEnv !== undefined && fromEnv !== '') {
      value = envValue(f, fromEnv);
    }
    out[f.key] = value;
  }
  return out as unknown as GlobalOptions;
}

function envValue(f: GlobalFlag, text: string): unknown {
  const name = envName(f);
  if (typeof f.defaultValue === 'boolean') {
    const b = parseGoBool(text);
    if (b === undefined)
      throw new UsageError(`invalid value ${JSON.stringify(text)} for ${name}: must be true or false`);
    return b;
  }
  if (!f.parse) return text;
  try {
    return f.parse(text);
  } catch (err) {
    throw new UsageError(`invalid value ${JSON.stringify(text)} for ${name}: ${(err as Error).message}`);
  }
}
