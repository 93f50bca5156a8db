import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ValidationError,
  expandSpecifiers,
  findReplacesCycle,
  globMatches,
  parseRequirements,
  parseUnitFile,
  replacesCycleMessage,
  splitMultiValue,
  unitsConflict,
  validateUnitOptions,
} from '@fleet/core';

const xfleet = (body: string) => parseUnitFile(`[Service]\nExecStart=/bin/true\n[X-Fleet]\n${body}\n`);
const req = (body: string, name = 'u.service') => parseRequirements(xfleet(body), name);

describe('X-Fleet multi-value splitting', () => {
  const cases: Array<[string, string[]]> = [
    ['plain value', ['plain value']],
    ['"a" "b"', ['a', 'b']],
    ['"a b" "c"', ['a b', 'c']],
    ['"region=us" "az=1"', ['region=us', 'az=1']],
    ['"a"  "b"', ['a', 'b']],
    ['"only one"', ['only one']],
    ['"a" b', ['"a" b']],
    ['a "b"', ['a "b"']],
    ['"', ['"']],
  ];
  for (const [value, want] of cases) {
    it(`${value} → ${JSON.stringify(want)}`, () => assert.deepEqual(splitMultiValue(value), want));
  }
});

describe('specifiers', () => {
  it('expands %n %N %p %i from an instance name', () => {
    assert.equal(expandSpecifiers('%n|%N|%p|%i', 'web@8080.service'), 'web@8080.service|web@8080|web|8080');
  });
  it('expands a plain name (prefix = name, empty instance)', () => {
    assert.equal(expandSpecifiers('%n|%N|%p|%i', 'hello.service'), 'hello.service|hello|hello|');
  });
  it('leaves other % sequences alone', () => {
    assert.equal(expandSpecifiers('100%% %x %H', 'a.service'), '100%% %x %H');
  });
  it('applies in X-Fleet values only', () => {
    const options = parseUnitFile('[Service]\nExecStart=/bin/echo %i\n[X-Fleet]\nConflicts=%p@*.service\n');
    assert.equal(options[0]?.value, '/bin/echo %i');
    assert.deepEqual(parseRequirements(options, 'db@1.service').conflicts, ['db@*.service']);
  });
  it('MachineMetadata with %i', () => {
    const r = req('MachineMetadata=zone=%i', 'svc@eu1.service');
    assert.deepEqual([...r.machineMetadata], [['zone', ['eu1']]]);
  });
  it('a template keeps %i (it is expanded per instance), so MachineMetadata=zone=%i is valid on it', () => {
    assert.equal(expandSpecifiers('%n|%N|%p|%i', 'web@.service'), 'web@.service|web@|web|%i');
    const options = parseUnitFile('[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineMetadata=zone=%i\n');
    assert.deepEqual([...validateUnitOptions(options, 'svc@.service').machineMetadata], [['zone', ['%i']]]);
    assert.deepEqual([...validateUnitOptions(options, 'svc@m1.service').machineMetadata], [['zone', ['m1']]]);
  });
});

describe('requirements and aliases', () => {
  it('reads MachineID from any alias, first value wins', () => {
    assert.equal(req('MachineID=abc').machineID, 'abc');
    assert.equal(req('X-ConditionMachineID=def').machineID, 'def');
    assert.equal(req('X-ConditionMachineBootID=ghi').machineID, 'ghi');
    assert.equal(req('MachineID=first\nMachineID=second').machineID, 'first');
    assert.equal(req('Global=true').machineID, undefined);
  });
  it('accumulates MachineOf from both spellings', () => {
    assert.deepEqual(req('MachineOf=a.service\nX-ConditionMachineOf=b.service').machineOf, [
      'a.service',
      'b.service',
    ]);
  });
  it('splits Conflicts on whitespace and accumulates repeated keys and aliases', () => {
    assert.deepEqual(
      req('Conflicts=a*.service b*.service\nX-Conflicts=c.service\nConflicts="d.service" "e.service"')
        .conflicts,
      ['a*.service', 'b*.service', 'c.service', 'd.service', 'e.service'],
    );
  });
  it('reads Replaces globs', () => {
    assert.deepEqual(req('Replaces=old*.service').replaces, ['old*.service']);
  });
  it('MachineMetadata: same key OR, different keys AND', () => {
    const r = req(
      'MachineMetadata=region=us\nMachineMetadata="region=eu" "disk=ssd"\nX-ConditionMachineMetadata=region=us',
    );
    assert.deepEqual(
      [...r.machineMetadata],
      [
        ['region', ['us', 'eu']],
        ['disk', ['ssd']],
      ],
    );
  });
  it('Global truthy values in any case; the last value wins', () => {
    for (const v of ['true', 'YES', '1', 'On', 't', 'T']) assert.equal(req(`Global=${v}`).global, true, v);
    for (const v of ['false', 'no', '0', 'off', 'f', 'yes please'])
      assert.equal(req(`Global=${v}`).global, false, v);
    assert.equal(req('Global=true\nGlobal=false').global, false);
    assert.equal(req('Conflicts=x.service').global, false);
  });
  it('lists unknown keys once each (fleetctl warns about them)', () => {
    assert.deepEqual(req('Foo=1\nMachineID=a\nFoo=2\nBar=3').unknownKeys, ['Foo', 'Bar']);
  });
  it('ignores options outside [X-Fleet]', () => {
    const options = parseUnitFile('[Unit]\nConflicts=other.service\n[Service]\nMachineID=x\n');
    const r = parseRequirements(options, 'a.service');
    assert.deepEqual(r.conflicts, []);
    assert.equal(r.machineID, undefined);
  });
});

describe('malformed MachineMetadata (ours: refused, naming the item)', () => {
  for (const item of ['region', '=us', 'region=', 'region=us az=1']) {
    it(`refuses ${JSON.stringify(item)}`, () => {
      assert.throws(
        () => req(`MachineMetadata=${item}`),
        (err: unknown) =>
          err instanceof ValidationError &&
          err.message.startsWith(`invalid MachineMetadata item ${JSON.stringify(item)}: expected key=value`),
      );
    });
  }
});

describe('invalid combinations (fleet texts)', () => {
  const cases: Array<[string, string]> = [
    ['MachineID=a\nMachineOf=b.service', 'MachineID cannot be used with Peers'],
    ['MachineID=a\nConflicts=b.service', 'MachineID cannot be used with Conflicts'],
    ['MachineID=a\nGlobal=true', 'MachineID cannot be used with Global'],
    ['MachineID=a\nReplaces=b.service', 'MachineID cannot be used with Replaces'],
    ['Global=true\nMachineOf=b.service', 'Global cannot be used with Peers'],
    ['Global=true\nReplaces=b.service', 'Global cannot be used with Replaces'],
    ['Conflicts=a.service\nReplaces=b.service', 'Conflicts cannot be used with Replaces'],
    [
      'MachineOf=db.service\nConflicts=db*.service',
      'unresolvable requirements: peer "db.service" matches conflict "db*.service"',
    ],
    [
      'MachineOf=db.service\nReplaces=d?.service',
      'unresolvable requirements: peer "db.service" matches replace "d?.service"',
    ],
    // order: the first failing check is reported
    ['MachineID=a\nMachineOf=b.service\nConflicts=c.service', 'MachineID cannot be used with Peers'],
    ['MachineID=a\nGlobal=yes\nReplaces=r.service', 'MachineID cannot be used with Global'],
  ];
  for (const [body, message] of cases) {
    it(message, () => {
      assert.throws(
        () => validateUnitOptions(xfleet(body), 'u.service'),
        (err: unknown) => err instanceof ValidationError && err.message === message,
      );
    });
  }
  it('allows valid combinations and a unit matching its own Conflicts glob', () => {
    assert.doesNotThrow(() => validateUnitOptions(xfleet('Conflicts=apache.*.service'), 'apache.1.service'));
    assert.doesNotThrow(() =>
      validateUnitOptions(xfleet('Global=true\nConflicts=x.service\nMachineMetadata=a=b'), 'g.service'),
    );
    assert.doesNotThrow(() =>
      validateUnitOptions(xfleet('MachineOf=db.service\nMachineMetadata=a=b'), 'w.service'),
    );
    assert.doesNotThrow(() => validateUnitOptions(xfleet('Global=false\nMachineID=abc'), 'w.service'));
  });
});

describe('conflicts and replaces across units', () => {
  it('conflicts are checked both ways and never with oneself', () => {
    const a = { conflicts: ['apache.*.service'] };
    const none = { conflicts: [] };
    assert.equal(unitsConflict('apache.1.service', a, 'apache.2.service', none), true);
    assert.equal(unitsConflict('apache.2.service', none, 'apache.1.service', a), true);
    assert.equal(unitsConflict('apache.1.service', a, 'web.service', none), false);
    assert.equal(unitsConflict('apache.1.service', a, 'apache.1.service', a), false);
  });
  it('finds a Replaces cycle and reports it', () => {
    const units = new Map([
      ['a.service', { replaces: ['b.service'] }],
      ['b.service', { replaces: ['c*.service'] }],
      ['c1.service', { replaces: ['a.service'] }],
      ['d.service', { replaces: [] }],
    ]);
    const cycle = findReplacesCycle(units);
    assert.deepEqual(cycle, ['a.service', 'b.service', 'c1.service', 'a.service']);
    assert.equal(
      replacesCycleMessage(cycle ?? []),
      'circular Replaces: a.service replaces b.service replaces c1.service replaces a.service',
    );
  });
  it('finds no cycle in a chain, nor from self-matching globs', () => {
    const units = new Map([
      ['a.service', { replaces: ['b.service'] }],
      ['b.service', { replaces: ['c.service', 'b*.service'] }],
      ['c.service', { replaces: [] }],
    ]);
    assert.equal(findReplacesCycle(units), undefined);
  });
});

describe('globs (Go path.Match semantics)', () => {
  const cases: Array<[string, string, boolean]> = [
    ['apache.*.service', 'apache.1.service', true],
    ['apache.*.service', 'apache.service', false],
    ['apache.?.service', 'apache.12.service', false],
    ['web[0-9].service', 'web5.service', true],
    ['web[!0-9].service', 'web5.service', false],
    ['web[^0-9].service', 'webx.service', true],
    ['a\\*.service', 'a*.service', true],
    ['a\\*.service', 'ab.service', false],
    ['x.service', 'x.service', true],
    ['x.service', 'xxservice', false],
    ['*', 'anything@1.service', true],
    ['[', '[', true],
  ];
  for (const [glob, name, want] of cases) {
    it(`${glob} ${want ? 'matches' : 'does not match'} ${name}`, () =>
      assert.equal(globMatches(glob, name), want));
  }
});
