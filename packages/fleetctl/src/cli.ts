#!/usr/bin/env node
// The `fleetctl` binary: runs main() on the process's arguments and stdio.
import { main } from './main.js';

// `fleetctl list-units | head -1` closes the pipe early; that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

process.exitCode = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
  inheritStdio: true,
});
