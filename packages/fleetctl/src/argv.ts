import type { CommandInfo } from './command.js';
import { UsageError } from './errors.js';
import { flagShape, parseGoBool, type FlagShape, type FlagSpec } from './flags.js';

/**
 * Resolves a command word: the exact name, or an unambiguous prefix of a
 * visible command (`list-m` → `list-machines`), as fleet's cobra did.
 *
 * @throws UsageError for an unknown or ambiguous word.
 */
export function resolveCommandName(word: string, commands: readonly CommandInfo[]): string {
  if (commands.some((c) => c.name === word)) return word;
  const matches = commands.filter((c) => !c.hidden && c.name.startsWith(word)).map((c) => c.name);
  if (matches.length === 1) return matches[0] as string;
  if (matches.length === 0) throw new UsageError(`unknown subcommand: ${JSON.stringify(word)}`);
  throw new UsageError(`ambiguous subcommand ${JSON.stringify(word)}: could be ${matches.join(', ')}`);
}

/** The command line, ready for commander, and the command it names. */
export interface PreparedArgv {
  readonly argv: string[];
  /** Undefined when no command word was given (help, or --version). */
  readonly command: string | undefined;
}

function shapes(specs: readonly FlagSpec[]): FlagShape[] {
  return specs.map(flagShape);
}

function lookup(token: string, known: readonly FlagShape[]): FlagShape | undefined {
  const name = token.split('=')[0];
  return known.find((s) => s.long === name || s.short === name);
}

/** Whether the flag at `token` consumes the next token as its value. */
function takesNext(token: string, known: readonly FlagShape[]): boolean {
  if (!token.startsWith('-') || token.includes('=')) return false;
  return lookup(token, known)?.takesValue ?? false;
}

/**
 * Go's flags accepted `--debug=false`; commander's booleans take no value.
 * `--flag=true` becomes `--flag`, `--flag=false` disappears (or becomes the
 * `--no-flag` form when the flag defaults to true).
 */
function normalizeBool(token: string, known: readonly FlagShape[], negatable: ReadonlySet<string>): string[] {
  const eq = token.indexOf('=');
  if (!token.startsWith('--') || eq === -1) return [token];
  const shape = lookup(token, known);
  if (shape === undefined || shape.takesValue) return [token];
  const name = token.slice(0, eq);
  const value = parseGoBool(token.slice(eq + 1));
  if (value === undefined) {
    throw new UsageError(`invalid boolean value ${JSON.stringify(token.slice(eq + 1))} for ${name}`);
  }
  if (value) return [name];
  return negatable.has(name) ? [`--no-${name.slice(2)}`] : [];
}

/**
 * Prepares fleetctl's arguments for commander:
 * - finds the command word (global flags may come first) and resolves prefixes;
 * - turns Go-style `--bool=value` into commander's forms;
 * - for `ssh`, ends option parsing after the target so that the remote
 *   command's own options (`ls -la`) are not read as fleetctl's.
 */
export function prepareArgv(
  argv: readonly string[],
  commands: readonly CommandInfo[],
  globalFlags: readonly FlagSpec[],
): PreparedArgv {
  const globals = shapes(globalFlags);
  const out = [...argv];
  let index = -1;
  for (let i = 0; i < out.length; i++) {
    const token = out[i] as string;
    if (token === '--') break;
    if (token.startsWith('-') && token !== '-') {
      if (takesNext(token, globals)) i++;
      continue;
    }
    index = i;
    break;
  }
  const commandName = index === -1 ? undefined : resolveCommandName(out[index] as string, commands);
  if (commandName !== undefined) out[index] = commandName;
  const command = commands.find((c) => c.name === commandName);
  const known = [...globals, ...shapes(command?.flags ?? [])];
  // Booleans that default to true and so have a --no- form.
  const negatable = new Set(['--strict-host-key-checking']);

  const result: string[] = [];
  let needTarget = true;
  let ended = false;
  for (let i = 0; i < out.length; i++) {
    const token = out[i] as string;
    if (ended || token === '--') {
      ended = true;
      result.push(token);
      continue;
    }
    if (token.startsWith('-') && token !== '-') {
      result.push(...normalizeBool(token, known, negatable));
      const name = token.split('=')[0];
      if (commandName === 'ssh' && ['--machine', '-m', '--unit', '-u'].includes(name ?? ''))
        needTarget = false;
      if (takesNext(token, known) && i + 1 < out.length) result.push(out[++i] as string);
      continue;
    }
    if (commandName === 'ssh' && i > index) {
      if (needTarget) needTarget = false;
      else {
        result.push('--');
        ended = true;
      }
    }
    result.push(token);
  }
  return { argv: result, command: commandName };
}
