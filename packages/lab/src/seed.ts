/**
 * What the lab installs into a machine at each boot, computed as a list of
 * files, links, directories and device nodes (pure). The init script copies
 * `seed/run` into the machine's fresh /run, `seed/dev` into its fresh /dev,
 * and `seed/etc` and `seed/var` into its /etc and /var overlays before
 * systemd starts.
 */
import { posix } from 'node:path';
import { ValidationError, unitNameInfo, unitNameProblem } from '@fleet/core';

/** The unit systemd boots instead of default.target: basic.target, D-Bus, and the lab's services. */
export const BOOT_TARGET = 'fleet-lab.target';
/** Inside each machine: the environment file services can load with `EnvironmentFile=`. */
export const ENV_FILE = '/run/fleet-lab/env';
/**
 * Inside each machine: created by {@link BOOTED_UNIT} once the boot target is
 * reached, so the lab can wait for boot with a cheap stat from the host.
 */
export const BOOTED_FILE = '/run/fleet-lab/booted';
export const BOOTED_UNIT = 'fleet-lab-booted.service';

/**
 * Units masked in every machine (linked to /dev/null under /run/systemd/system),
 * each with the reason. Most would change host-global kernel state or write
 * to host paths; the rest are pointless in a container and cost boot time.
 */
export const MASKED_UNITS: Readonly<Record<string, string>> = {
  'systemd-modules-load.service': 'loads kernel modules into the host kernel',
  'kmod-static-nodes.service': 'creates device nodes for host kernel modules',
  'systemd-binfmt.service': 'registers binfmt handlers in the host kernel',
  'proc-sys-fs-binfmt_misc.automount': 'binfmt_misc is host-global',
  'proc-sys-fs-binfmt_misc.mount': 'binfmt_misc is host-global',
  'systemd-sysctl.service': 'writes host kernel settings',
  'systemd-machine-id-commit.service': 'writes a bind-mounted machine ID back to the real /etc/machine-id',
  'systemd-firstboot.service': 'interactive first-boot set-up',
  'systemd-repart.service': 'repartitions block devices',
  'systemd-timesyncd.service': 'sets the host clock',
  'systemd-tmpfiles-clean.timer': 'periodic clean-up; machines are short-lived',
  'systemd-journal-flush.service': 'journals stay volatile (in the machine /run)',
  'sys-kernel-config.mount': 'configfs is host-global',
  'sys-kernel-debug.mount': 'debugfs is host-global',
  'sys-kernel-tracing.mount': 'tracefs is host-global',
  'sys-fs-fuse-connections.mount': 'fusectl is host-global',
  'systemd-pcrphase.service': 'extends host TPM PCRs',
  'systemd-pcrphase-sysinit.service': 'extends host TPM PCRs',
  'systemd-update-utmp.service': 'boot records are meaningless here',
  'systemd-remount-fs.service': 'would remount the root file system the host shares',
  'systemd-hwdb-update.service': 'slow, and udev does not run in machines',
  'ldconfig.service': 'the host owns the library cache',
  'systemd-journald-audit.socket': 'audit messages belong to the host',
  'etcd.service': "Debian's etcd package enables it; the lab runs etcd itself, outside machines",
  'dev-hugepages.mount': 'huge pages are not needed in a machine',
  'systemd-sysusers.service': "the host's /etc/passwd already has its users; it delays boot",
};

/** One file, symbolic link, directory or character device in a machine's seed directory. */
export type SeedEntry =
  | { readonly kind: 'file'; readonly path: string; readonly content: string; readonly mode: number }
  | { readonly kind: 'symlink'; readonly path: string; readonly target: string }
  | { readonly kind: 'dir'; readonly path: string; readonly mode: number }
  | { readonly kind: 'device'; readonly path: string; readonly major: number; readonly minor: number };

/**
 * The machine's private /dev: the harmless character devices, a console that
 * is /dev/null (bound over `console` at boot, so PID 1 never writes to the
 * VM's console), mount points for its own devpts and shm, and no /dev/kmsg.
 */
export const DEV_SKELETON: readonly SeedEntry[] = [
  { kind: 'device', path: 'dev/null', major: 1, minor: 3 },
  { kind: 'device', path: 'dev/zero', major: 1, minor: 5 },
  { kind: 'device', path: 'dev/full', major: 1, minor: 7 },
  { kind: 'device', path: 'dev/random', major: 1, minor: 8 },
  { kind: 'device', path: 'dev/urandom', major: 1, minor: 9 },
  { kind: 'device', path: 'dev/tty', major: 5, minor: 0 },
  { kind: 'file', path: 'dev/console', content: '', mode: 0o600 },
  { kind: 'dir', path: 'dev/pts', mode: 0o755 },
  { kind: 'dir', path: 'dev/shm', mode: 0o1777 },
  { kind: 'symlink', path: 'dev/ptmx', target: 'pts/ptmx' },
  { kind: 'symlink', path: 'dev/fd', target: '/proc/self/fd' },
  { kind: 'symlink', path: 'dev/stdin', target: '/proc/self/fd/0' },
  { kind: 'symlink', path: 'dev/stdout', target: '/proc/self/fd/1' },
  { kind: 'symlink', path: 'dev/stderr', target: '/proc/self/fd/2' },
];

/** A unit file run in every machine at boot: its unit name and text. */
export interface ServiceFile {
  readonly name: string;
  readonly content: string;
}

export interface SeedInput {
  /** Machine name; also its hostname. */
  readonly machine: string;
  /** 32 lowercase hex digits. */
  readonly machineID: string;
  /** The machine's address (127.0.0.1 with shared networking). */
  readonly ip: string;
  /** etcd client URLs as seen from inside machines. */
  readonly etcdEndpoints: readonly string[];
  readonly services: readonly ServiceFile[];
  /** Extra variables for the environment file. */
  readonly env: Readonly<Record<string, string>>;
  /** Extra files: absolute path below /etc or /run → content. */
  readonly files: Readonly<Record<string, string>>;
  /** Entries derived from the host's configuration (generator masks, filtered tmpfiles.d). */
  readonly hostOverrides?: readonly SeedEntry[];
}

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MACHINE_ID = /^[0-9a-f]{32}$/;

/** Throws unless `id` is a valid machine ID (32 lowercase hex digits, not all zero). */
export function validateMachineID(id: string): void {
  if (!MACHINE_ID.test(id) || /^0+$/.test(id)) {
    throw new ValidationError(`invalid machine ID ${JSON.stringify(id)}: need 32 lowercase hex digits`, {
      fields: { machineID: id },
    });
  }
}

/** Checks a service file name: a valid, non-template unit name. */
export function validateServiceName(name: string): void {
  const problem = unitNameProblem(name);
  if (problem !== undefined) {
    throw new ValidationError(`service file ${JSON.stringify(name)}: ${problem}`, { fields: { unit: name } });
  }
  if (unitNameInfo(name).isTemplate) {
    throw new ValidationError(
      `service file ${JSON.stringify(name)} is a template; name an instance instead`,
      {
        fields: { unit: name },
      },
    );
  }
}

/**
 * Renders an environment file that both systemd's `EnvironmentFile=` and a
 * shell's `.` read the same way: `KEY="value"`, escaping `\ " $` and backquote.
 */
export function renderEnvFile(env: Readonly<Record<string, string>>): string {
  let out = '';
  for (const [key, value] of Object.entries(env)) {
    if (!ENV_KEY.test(key)) {
      throw new ValidationError(`invalid environment variable name ${JSON.stringify(key)}`, {
        fields: { key },
      });
    }
    if (/[\n\r\0]/.test(value)) {
      throw new ValidationError(`environment variable ${key} contains a line break or NUL`, {
        fields: { key },
      });
    }
    out += `${key}="${value.replace(/[\\"$`]/g, (c) => `\\${c}`)}"\n`;
  }
  return out;
}

/** The lab's own variables in each machine's environment file. */
export function labEnv(input: Pick<SeedInput, 'etcdEndpoints' | 'ip' | 'machine'>): Record<string, string> {
  return {
    FLEET_ETCD_SERVERS: input.etcdEndpoints.join(','),
    FLEET_PUBLIC_IP: input.ip,
    FLEET_MACHINE_NAME: input.machine,
  };
}

/** Computes a machine's seed: identity, boot target, masks, journald drop-in, services, env, extra files. */
export function machineSeed(input: SeedInput): SeedEntry[] {
  validateMachineID(input.machineID);
  const entries: SeedEntry[] = [];
  const file = (path: string, content: string, mode = 0o644): void => {
    entries.push({ kind: 'file', path, content, mode });
  };
  const units = 'run/systemd/system';

  entries.push(...DEV_SKELETON);
  entries.push(...(input.hostOverrides ?? []));
  file('etc/machine-id', `${input.machineID}\n`, 0o444);
  // D-Bus reads this before /etc/machine-id; the host's copy must not leak in.
  entries.push({ kind: 'symlink', path: 'var/lib/dbus/machine-id', target: '/etc/machine-id' });
  file('etc/hostname', `${input.machine}\n`);
  const hosts =
    input.ip === '127.0.0.1'
      ? `127.0.0.1\tlocalhost ${input.machine}\n::1\tlocalhost ip6-localhost ip6-loopback\n`
      : `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${input.ip}\t${input.machine}\n`;
  file('etc/hosts', hosts);
  // The host's fstab describes the host's disks: nothing for a machine to mount or fsck.
  file('etc/fstab', '# fleet-lab machine: the host owns every file system\n');

  file(
    `${units}/${BOOT_TARGET}`,
    [
      '[Unit]',
      'Description=fleet-lab machine',
      'Documentation=file:docs/lab.md',
      'Requires=basic.target dbus.socket',
      'Wants=dbus.service',
      'After=basic.target dbus.socket dbus.service',
      'AllowIsolate=yes',
      '',
    ].join('\n'),
  );
  entries.push({ kind: 'symlink', path: `${units}/default.target`, target: BOOT_TARGET });
  file(
    `${units}/${BOOTED_UNIT}`,
    [
      '[Unit]',
      'Description=fleet-lab: the boot target is reached',
      `After=${BOOT_TARGET}`,
      '',
      '[Service]',
      'Type=oneshot',
      `ExecStart=/usr/bin/touch ${BOOTED_FILE}`,
      '',
    ].join('\n'),
  );
  entries.push({
    kind: 'symlink',
    path: `${units}/${BOOT_TARGET}.wants/${BOOTED_UNIT}`,
    target: `/run/systemd/system/${BOOTED_UNIT}`,
  });
  for (const unit of Object.keys(MASKED_UNITS)) {
    entries.push({ kind: 'symlink', path: `${units}/${unit}`, target: '/dev/null' });
  }
  file('run/systemd/journald.conf.d/fleet-lab.conf', '[Journal]\nStorage=volatile\nReadKMsg=no\n');

  const seen = new Set<string>();
  for (const service of input.services) {
    validateServiceName(service.name);
    if (
      seen.has(service.name) ||
      service.name in MASKED_UNITS ||
      [BOOT_TARGET, BOOTED_UNIT].includes(service.name)
    ) {
      throw new ValidationError(`service file ${service.name} is given twice or clashes with a lab unit`, {
        fields: { unit: service.name },
      });
    }
    seen.add(service.name);
    file(`${units}/${service.name}`, service.content);
    entries.push({
      kind: 'symlink',
      path: `${units}/${BOOT_TARGET}.wants/${service.name}`,
      target: `/run/systemd/system/${service.name}`,
    });
  }

  const own = labEnv(input);
  for (const key of Object.keys(input.env)) {
    if (key in own) {
      throw new ValidationError(`environment variable ${key} is set by the lab`, { fields: { key } });
    }
  }
  file(ENV_FILE.slice(1), renderEnvFile({ ...own, ...input.env }));

  const taken = new Set(entries.map((e) => e.path));
  for (const [path, content] of Object.entries(input.files)) {
    const normal = posix.normalize(path);
    if (normal !== path || !/^\/(etc|run)\/[^/]/.test(path)) {
      throw new ValidationError(
        `machine file ${JSON.stringify(path)} must be a normalized absolute path below /etc or /run`,
        { fields: { path } },
      );
    }
    const rel = path.slice(1);
    if (taken.has(rel) || [...taken].some((t) => t.startsWith(`${rel}/`) || rel.startsWith(`${t}/`))) {
      throw new ValidationError(`machine file ${path} clashes with a file the lab installs`, {
        fields: { path },
      });
    }
    taken.add(rel);
    file(rel, content);
  }
  return entries;
}
