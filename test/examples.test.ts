import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  parseUnitFile,
  unitDescription,
  unitNameInfo,
  validateUnitName,
  validateUnitOptions,
} from '@fleet/core';

const dir = new URL('../examples/', import.meta.url);
const units = readdirSync(dir, { withFileTypes: true })
  .filter((e) => e.isFile() && !e.name.endsWith('.md'))
  .map((e) => e.name);

describe('examples/', () => {
  it('holds the story units, a template and a global unit', () => {
    for (const f of [
      'hello.service',
      'apache.1.service',
      'apache.2.service',
      'web@.service',
      'monitor.service',
    ]) {
      assert.ok(units.includes(f), f);
    }
  });
  for (const file of units) {
    it(`${file} is a valid unit with a description`, () => {
      validateUnitName(file);
      const options = parseUnitFile(readFileSync(new URL(file, dir), 'utf8'));
      const name = unitNameInfo(file).isTemplate ? file.replace('@.', '@1.') : file;
      const req = validateUnitOptions(options, name);
      assert.ok(unitDescription(options));
      assert.deepEqual(req.unknownKeys, []);
      assert.ok(!options.some((o) => o.value.includes('docker')), 'runs without Docker');
    });
  }
  it('apache replicas conflict with each other; monitor is global', () => {
    const read = (f: string) => validateUnitOptions(parseUnitFile(readFileSync(new URL(f, dir), 'utf8')), f);
    assert.deepEqual(read('apache.1.service').conflicts, ['apache.*.service']);
    assert.equal(read('monitor.service').global, true);
  });
});
