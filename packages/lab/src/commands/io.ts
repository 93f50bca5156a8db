/** Where commands write: injected so commands can be tested without a terminal. */
export interface CommandIO {
  out(text: string): void;
  err(text: string): void;
}

export const stdio: CommandIO = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
};

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2);
}
