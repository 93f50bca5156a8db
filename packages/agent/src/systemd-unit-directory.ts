/**
 * The agent's units directory (fleet's `units_directory`, default
 * /run/fleet/units): one file per unit, named after the unit, holding the
 * canonical text. Writes are atomic (temporary file + rename), so systemd and
 * {@link UnitDirectory.read} never see half a file.
 */
import { randomBytes } from 'node:crypto';
import { access, chmod, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { InternalError, ValidationError, isValidUnitName, validateUnitName } from '@fleet/core';

/** Mode of unit files, as fleet wrote them. */
const FILE_MODE = 0o644;
/** Temporary files end in `.tmp`, which is no unit type, so they are never read as units. */
const TMP_SUFFIX = '.tmp';
/** How many files are read or written at once (keeps open descriptors bounded at 1,000 units). */
const IO_CONCURRENCY = 32;

export interface UnitDirectoryOptions {
  /** The directory as systemd sees it (absolute); used in the paths given to systemd. */
  readonly path: string;
  /**
   * Prefix under which this process reaches systemd's filesystem, e.g.
   * `/proc/<pid>/root` when systemd runs in another mount namespace.
   * @default '' (same filesystem)
   */
  readonly rootPath?: string;
}

function fsError(op: string, path: string, err: unknown): InternalError {
  const code = (err as NodeJS.ErrnoException).code;
  return new InternalError(`cannot ${op} ${path}: ${(err as Error).message}`, {
    fields: { path, code },
    cause: err,
  });
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export class UnitDirectory {
  /** The directory as systemd sees it. */
  readonly path: string;
  /** The directory as this process reaches it. */
  readonly hostPath: string;

  constructor(options: UnitDirectoryOptions) {
    if (!posix.isAbsolute(options.path)) {
      throw new ValidationError(`units directory must be an absolute path: ${options.path}`, {
        fields: { unitsDirectory: options.path },
      });
    }
    this.path = posix.normalize(options.path);
    const root = options.rootPath ?? '';
    this.hostPath = root === '' ? this.path : join(root, this.path);
  }

  /** Path of a unit's file as systemd sees it (what LinkUnitFiles gets). */
  unitPath(name: string): string {
    return posix.join(this.path, name);
  }

  private hostFile(name: string): string {
    return join(this.hostPath, name);
  }

  /** name → text of every unit file in the directory; a missing directory is empty. */
  async read(): Promise<Map<string, string>> {
    let entries: string[];
    try {
      entries = await readdir(this.hostPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw fsError('read directory', this.hostPath, err);
    }
    const names = entries.filter((e) => !e.endsWith(TMP_SUFFIX) && isValidUnitName(e)).sort();
    const texts = await mapLimit(names, IO_CONCURRENCY, (name) => this.readOne(name));
    const out = new Map<string, string>();
    names.forEach((name, i) => {
      const text = texts[i];
      if (text !== undefined) out.set(name, text);
    });
    return out;
  }

  /** One unit's text, or undefined when there is no such (regular) file. */
  async readOne(name: string): Promise<string | undefined> {
    validateUnitName(name);
    try {
      return await readFile(this.hostFile(name), 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // EISDIR: a directory named like a unit is not a unit file.
      if (code === 'ENOENT' || code === 'EISDIR') return undefined;
      throw fsError('read', this.hostFile(name), err);
    }
  }

  /**
   * Writes each file atomically unless its content is already identical (a
   * rewrite would only change the mtime, which systemd compares to decide
   * whether a unit "needs daemon-reload"). Returns the previous texts.
   */
  async write(
    files: readonly { readonly name: string; readonly text: string }[],
  ): Promise<Map<string, string | undefined>> {
    for (const f of files) validateUnitName(f.name);
    try {
      await mkdir(this.hostPath, { recursive: true, mode: 0o755 });
    } catch (err) {
      throw fsError('create', this.hostPath, err);
    }
    const previous = await mapLimit(files, IO_CONCURRENCY, async (f) => {
      const old = await this.readOne(f.name);
      if (old !== f.text) await this.writeOne(f.name, f.text);
      return old;
    });
    return new Map(files.map((f, i) => [f.name, previous[i]]));
  }

  private async writeOne(name: string, text: string): Promise<void> {
    const target = this.hostFile(name);
    const tmp = join(this.hostPath, `.${name}.${randomBytes(4).toString('hex')}${TMP_SUFFIX}`);
    try {
      await writeFile(tmp, text, { mode: FILE_MODE });
      await chmod(tmp, FILE_MODE); // writeFile's mode is subject to the umask
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw fsError('write', target, err);
    }
  }

  /** The names among these that have a file here. */
  async existing(names: readonly string[]): Promise<string[]> {
    for (const n of names) validateUnitName(n);
    const found = await mapLimit(names, IO_CONCURRENCY, async (name) => {
      try {
        await access(this.hostFile(name));
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw fsError('access', this.hostFile(name), err);
      }
    });
    return names.filter((_, i) => found[i]);
  }

  /** Removes the files of these units; missing files are fine. */
  async remove(names: readonly string[]): Promise<void> {
    for (const n of names) validateUnitName(n);
    await mapLimit(names, IO_CONCURRENCY, async (name) => {
      try {
        await rm(this.hostFile(name), { force: true });
      } catch (err) {
        throw fsError('remove', this.hostFile(name), err);
      }
    });
  }
}
