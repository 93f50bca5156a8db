#!/usr/bin/env node
// Runs the test suite with node's built-in runner on the TypeScript sources
// (tsx loader, "source" export condition), in ONE node --test invocation so CI
// reads one summary.
//
//   node scripts/run-tests.mjs            every test: unit, integration, e2e
//   node scripts/run-tests.mjs unit       only *.test.ts that need no root/etcd/systemd
//   node scripts/run-tests.mjs int e2e    integration (*.int.test.ts) and test/e2e
//   node scripts/run-tests.mjs FILE...    the given files
//
// TEST_CONCURRENCY (default 1) sets how many test files run at once.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;

function walk(dir, out = []) {
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir)) {
    if (entry === 'node_modules' || entry === 'dist' || entry.startsWith('.')) continue;
    const p = join(dir, entry);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const all = [...walk(join(root, 'packages')), ...walk(join(root, 'test'))].sort();
const kind = (f) => (f.includes('/test/e2e/') ? 'e2e' : f.endsWith('.int.test.ts') ? 'int' : 'unit');
const args = process.argv.slice(2);
const groups = new Set(args.filter((a) => ['unit', 'int', 'e2e'].includes(a)));
const explicit = args.filter((a) => !groups.has(a));
let files = explicit.length > 0 ? explicit : all;
if (groups.size > 0) files = files.filter((f) => groups.has(kind(f)));
// Fast tests first: a broken parser should fail the run in seconds, not after the e2e suite.
const order = { unit: 0, int: 1, e2e: 2 };
files.sort((a, b) => order[kind(a)] - order[kind(b)] || a.localeCompare(b));
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}

const concurrency = process.env.TEST_CONCURRENCY ?? '1';
const result = spawnSync(
  process.execPath,
  [
    '--conditions=source',
    '--import',
    'tsx',
    '--test',
    `--test-concurrency=${concurrency}`,
    '--test-reporter=spec',
    ...files,
  ],
  { stdio: 'inherit', cwd: root },
);
process.exit(result.status ?? 1);
