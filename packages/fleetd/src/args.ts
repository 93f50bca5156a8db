/** Parses `--key=value`, `--key value`, `--config PATH`, `--version`, `--help`. */
export function parseArgs(argv: readonly string[]): {
  flags: Record<string, string>;
  configPath?: string;
  version: boolean;
  help: boolean;
} {
  const flags: Record<string, string> = {};
  let configPath: string | undefined;
  let version = false;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--version' || arg === '-version') version = true;
    else if (arg === '--help' || arg === '-h' || arg === '-help') help = true;
    else if (/^--?[A-Za-z]/.test(arg)) {
      const body = arg.replace(/^--?/, '');
      const eq = body.indexOf('=');
      const key = eq === -1 ? body : body.slice(0, eq);
      let value = eq === -1 ? undefined : body.slice(eq + 1);
      if (value === undefined) {
        const next = argv[i + 1];
        if (next === undefined) throw new Error(`flag --${key} needs a value`);
        value = next;
        i++;
      }
      if (key === 'config') configPath = value;
      else flags[key] = value;
    } else throw new Error(`unexpected argument ${JSON.stringify(arg)}`);
  }
  return { flags, ...(configPath !== undefined ? { configPath } : {}), version, help };
}
