import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  UNIT_TYPES,
  ValidationError,
  mangleUnitName,
  unitNameInfo,
  unitNameProblem,
  validateUnitName,
} from '@fleet/core';

describe('unit name validation (fleet-compat §1)', () => {
  const cases: Array<[string, string | undefined]> = [
    ['hello.service', undefined],
    ['foo@.service', undefined],
    ['foo@1.service', undefined],
    ['a:b_c.d-e\\x2d.service', undefined],
    ['', 'unit name cannot be empty'],
    [`${'a'.repeat(249)}.service`, 'unit name exceeds maximum length (256)'],
    ['noperiod', 'unit name must contain "."'],
    ['ends.', 'unit name cannot end in "."'],
    ['foo.bar', 'invalid unit type: "bar"'],
    ['foo.Service', 'invalid unit type: "Service"'],
    ['foo@1.mount', 'invalid unit type for template: "mount"'],
    ['foo@.device', 'invalid unit type for template: "device"'],
    ['hello world.service', 'invalid character " " in unit name'],
    ['héllo.service', 'invalid character "é" in unit name'],
    ['a/b.service', 'invalid character "/" in unit name'],
    ['@foo.service', 'unit name cannot start in "@"'],
    ['@.service', 'unit name cannot start in "@"'],
  ];
  for (const [name, want] of cases) {
    it(`${JSON.stringify(name.length > 40 ? `${name.slice(0, 20)}…` : name)} → ${want ?? 'valid'}`, () => {
      assert.equal(unitNameProblem(name), want);
    });
  }

  it('accepts exactly 256 bytes and counts bytes, not characters', () => {
    assert.equal(unitNameProblem(`${'a'.repeat(248)}.service`), undefined);
    // 2-byte characters: 124 × 2 + 8 = 256 bytes is long enough only by bytes
    const multibyte = `${'é'.repeat(125)}.service`;
    assert.equal(multibyte.length < 256, true);
    assert.equal(unitNameProblem(multibyte), 'unit name exceeds maximum length (256)');
  });

  it('checks in fleet order: length before dot, type before characters, characters before @', () => {
    assert.equal(unitNameProblem('a'.repeat(300)), 'unit name exceeds maximum length (256)');
    assert.equal(unitNameProblem('bad char.nope'), 'invalid unit type: "nope"');
    assert.equal(unitNameProblem('@bad char.service'), 'invalid character " " in unit name');
    assert.equal(unitNameProblem('@x.mount'), 'invalid unit type for template: "mount"');
  });

  it('accepts every valid unit type', () => {
    for (const t of UNIT_TYPES) assert.equal(unitNameProblem(`x.${t}`), undefined, t);
  });

  it('validateUnitName throws a ValidationError carrying the unit', () => {
    assert.throws(
      () => validateUnitName('foo.bar'),
      (err: unknown) =>
        err instanceof ValidationError &&
        err.message === 'invalid unit type: "bar"' &&
        err.fields['unit'] === 'foo.bar',
    );
    assert.doesNotThrow(() => validateUnitName('ok.service'));
  });
});

describe('template/instance split', () => {
  it('splits an instance', () => {
    const i = unitNameInfo('web@8080.service');
    assert.deepEqual(
      { ...i },
      {
        fullName: 'web@8080.service',
        name: 'web@8080',
        prefix: 'web',
        instance: '8080',
        type: 'service',
        template: 'web@.service',
        isTemplate: false,
        isInstance: true,
      },
    );
  });
  it('recognises a template', () => {
    const t = unitNameInfo('web@.service');
    assert.equal(t.isTemplate, true);
    assert.equal(t.isInstance, false);
    assert.equal(t.template, undefined);
    assert.equal(t.prefix, 'web');
  });
  it('instance runs from the first @ to the last dot', () => {
    const i = unitNameInfo('a@b@c.d.service');
    assert.equal(i.prefix, 'a');
    assert.equal(i.instance, 'b@c.d');
    assert.equal(i.template, 'a@.service');
  });
  it('a plain name has the whole name as prefix and no instance', () => {
    const p = unitNameInfo('hello.service');
    assert.equal(p.prefix, 'hello');
    assert.equal(p.instance, '');
    assert.equal(p.isTemplate || p.isInstance, false);
  });
});

describe('fleetctl name mangling', () => {
  const cases: Array<[string, string]> = [
    ['hello', 'hello.service'],
    ['hello.service', 'hello.service'],
    ['/tmp/units/hello.service', 'hello.service'],
    ['./apache.1.service', 'apache.1.service'],
    ['apache.1', 'apache.1.service'],
    ['foo.target', 'foo.target'],
    ['foo.slice', 'foo.slice'],
    ['foo.swap', 'foo.swap'],
    ['foo.bar', 'foo.bar.service'],
    ['units/web@.service', 'web@.service'],
  ];
  for (const [arg, want] of cases) {
    it(`${arg} → ${want}`, () => assert.equal(mangleUnitName(arg), want));
  }
  it('recognises every valid type (fleet knew only seven)', () => {
    for (const t of UNIT_TYPES) assert.equal(mangleUnitName(`x.${t}`), `x.${t}`);
  });
});
