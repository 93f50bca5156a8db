import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  ValidationError,
  hasInstallSection,
  parseUnitFile,
  serializeUnitOptions,
  unitDescription,
  unitHash,
  type UnitOption,
} from '@fleet/core';

const opt = (section: string, name: string, value: string): UnitOption => ({ section, name, value });

describe('unit file parsing (fleet-compat §2)', () => {
  it('parses sections and options in order', () => {
    const text = '[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/bin/sleep 100\n';
    assert.deepEqual(parseUnitFile(text), [
      opt('Unit', 'Description', 'Hello'),
      opt('Service', 'ExecStart', '/bin/sleep 100'),
    ]);
  });

  it('keeps repeated keys and repeated sections in order', () => {
    const text = '[Service]\nEnvironment=A=1\n[Unit]\nAfter=x\n[Service]\nEnvironment=B=2\nEnvironment=A=1\n';
    assert.deepEqual(parseUnitFile(text), [
      opt('Service', 'Environment', 'A=1'),
      opt('Unit', 'After', 'x'),
      opt('Service', 'Environment', 'B=2'),
      opt('Service', 'Environment', 'A=1'),
    ]);
  });

  it('keeps ; and # inside values', () => {
    const text = '[Service]\nExecStart=/bin/sh -c "a; b # c"\n';
    assert.deepEqual(parseUnitFile(text), [opt('Service', 'ExecStart', '/bin/sh -c "a; b # c"')]);
  });

  it('skips comment lines starting with # or ; (after whitespace)', () => {
    const text = '# head\n[Unit]\n; one\n  # two\nDescription=x\n';
    assert.deepEqual(parseUnitFile(text), [opt('Unit', 'Description', 'x')]);
  });

  it('ignores text before the first section', () => {
    const text = 'garbage here\nFoo=bar\n[Unit]\nDescription=x\n';
    assert.deepEqual(parseUnitFile(text), [opt('Unit', 'Description', 'x')]);
  });

  it('trims names and values', () => {
    assert.deepEqual(parseUnitFile('[Unit]\n  Description  =   spaced out  \n'), [
      opt('Unit', 'Description', 'spaced out'),
    ]);
  });

  it('accepts an empty value', () => {
    assert.deepEqual(parseUnitFile('[Service]\nExecStartPre=\n'), [opt('Service', 'ExecStartPre', '')]);
  });

  it('keeps the backslash and newline of a continued value', () => {
    const text = '[Service]\nExecStart=/bin/echo a \\\n  b \\\n  c\nUser=root\n';
    assert.deepEqual(parseUnitFile(text), [
      opt('Service', 'ExecStart', '/bin/echo a \\\n  b \\\n  c'),
      opt('Service', 'User', 'root'),
    ]);
  });

  it('handles CRLF line ends', () => {
    const crlf = '[Unit]\r\nDescription=x\r\n\r\n[Service]\r\nExecStart=/bin/true\r\n';
    const lf = crlf.replace(/\r\n/g, '\n');
    assert.deepEqual(parseUnitFile(crlf), parseUnitFile(lf));
    assert.equal(unitHash(parseUnitFile(crlf)), unitHash(parseUnitFile(lf)));
  });

  it('handles a file without a final newline', () => {
    assert.deepEqual(parseUnitFile('[Unit]\nDescription=x'), [opt('Unit', 'Description', 'x')]);
  });

  it('returns no options for empty text', () => {
    assert.deepEqual(parseUnitFile(''), []);
    assert.deepEqual(parseUnitFile('[Unit]\n'), []);
  });

  const errors: Array<[string, string, string]> = [
    ['garbage after section', '[Unit] junk\nA=b\n', 'found garbage after section name'],
    ['missing ]', '[Unit\nA=b\n', 'unable to find end of section'],
    ['option without =', '[Unit]\nDescription\n', 'unexpected newline encountered while parsing option name'],
    [
      'last line without =',
      '[Unit]\nA=b\nDescription',
      'unexpected newline encountered while parsing option name',
    ],
  ];
  for (const [what, text, prefix] of errors) {
    it(`refuses ${what}: ${prefix}`, () => {
      assert.throws(
        () => parseUnitFile(text),
        (err: unknown) => err instanceof ValidationError && err.message.startsWith(prefix),
      );
    });
  }

  it('refuses a line of 2048 bytes or more and accepts 2047', () => {
    const prefix = '[Service]\nExecStart=';
    const okLine = `ExecStart=${'x'.repeat(2047 - 'ExecStart='.length)}`;
    assert.equal(Buffer.byteLength(okLine), 2047);
    assert.equal(parseUnitFile(`[Service]\n${okLine}\n`).length, 1);
    const longLine = `${prefix}${'x'.repeat(2048 - 'ExecStart='.length)}\n`;
    assert.throws(() => parseUnitFile(longLine), { message: 'line too long (max 2048 bytes)' });
    // counts bytes, not characters
    const wide = `[Service]\nA=${'é'.repeat(1023)}\n`;
    assert.throws(() => parseUnitFile(wide), { message: 'line too long (max 2048 bytes)' });
  });
});

describe('canonical form and hash', () => {
  it('matches the fleet test vector', () => {
    const options = [opt('Service', 'ExecStart', '/bin/sleep 100')];
    assert.equal(serializeUnitOptions(options), '[Service]\nExecStart=/bin/sleep 100\n');
    assert.equal(unitHash(options), '1c6fb6f3684bafb0c173d8b8b957ceff031180c1');
  });

  it('groups by section in order of first appearance, one blank line between', () => {
    const options = [opt('Unit', 'A', '1'), opt('Service', 'B', '2'), opt('Unit', 'C', '3')];
    assert.equal(serializeUnitOptions(options), '[Unit]\nA=1\nC=3\n\n[Service]\nB=2\n');
  });

  it('comments, spacing and section interleaving do not change the hash', () => {
    const a = parseUnitFile('[Unit]\nA=1\nC=3\n[Service]\nB=2\n');
    const b = parseUnitFile('# c\n[Unit]\nA = 1\n[Service]\n;x\nB=  2\n[Unit]\nC=3\n');
    assert.equal(unitHash(a), unitHash(b));
  });

  it('option order does change the hash', () => {
    const a = parseUnitFile('[Unit]\nA=1\nB=2\n');
    const b = parseUnitFile('[Unit]\nB=2\nA=1\n');
    assert.notEqual(unitHash(a), unitHash(b));
  });

  it('hash is 40 lowercase hex characters; empty unit serialises to empty text', () => {
    assert.match(unitHash([]), /^[0-9a-f]{40}$/);
    assert.equal(serializeUnitOptions([]), '');
  });

  it('reads Description from the first [Unit] Description', () => {
    const options = parseUnitFile('[Service]\nDescription=no\n[Unit]\nDescription=yes\nDescription=later\n');
    assert.equal(unitDescription(options), 'yes');
    assert.equal(unitDescription([]), undefined);
  });

  it('detects an [Install] section', () => {
    assert.equal(hasInstallSection(parseUnitFile('[Install]\nWantedBy=multi-user.target\n')), true);
    assert.equal(hasInstallSection(parseUnitFile('[Unit]\nA=b\n')), false);
  });
});

describe('property: parse(serialize(parse(x))) == parse(x)', () => {
  const sectionName = fc.constantFrom('Unit', 'Service', 'X-Fleet', 'Install', 'Socket');
  const optionName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/);
  // values: printable text including ; # = " and inner spaces, no leading/trailing space
  const value = fc
    .stringMatching(/^[ -~]{0,40}$/)
    .map((v) => v.trim())
    .filter((v) => !v.endsWith('\\'));
  const line = fc.oneof(
    fc.tuple(optionName, value).map(([n, v]) => ({ kind: 'opt' as const, text: `${n}=${v}` })),
    sectionName.map((s) => ({ kind: 'sec' as const, text: `[${s}]` })),
    fc.stringMatching(/^[#;][ -~]{0,20}$/).map((c) => ({ kind: 'comment' as const, text: c })),
    fc.constant({ kind: 'blank' as const, text: '' }),
  );
  const unitText = fc
    .tuple(sectionName, fc.array(line, { maxLength: 30 }), fc.constantFrom('\n', '\r\n'))
    .map(([first, lines, eol]) => [`[${first}]`, ...lines.map((l) => l.text)].join(eol) + eol);

  // The canonical form groups a section's options together, so a file that
  // interleaves sections comes back grouped (stable within each section).
  const grouped = (options: UnitOption[]): UnitOption[] => {
    const order = [...new Set(options.map((o) => o.section))];
    return order.flatMap((s) => options.filter((o) => o.section === s));
  };

  it('holds for generated unit files (grouped by section)', () => {
    fc.assert(
      fc.property(unitText, (text) => {
        const once = parseUnitFile(text);
        const again = parseUnitFile(serializeUnitOptions(once));
        assert.deepEqual(again, grouped(once));
        assert.equal(unitHash(again), unitHash(once));
        assert.equal(serializeUnitOptions(again), serializeUnitOptions(once));
      }),
      { numRuns: 500 },
    );
  });

  it('holds exactly for files whose sections are not interleaved', () => {
    const sectioned = fc
      .uniqueArray(sectionName, { minLength: 1, maxLength: 4 })
      .chain((sections) =>
        fc.tuple(
          ...sections.map((s) =>
            fc
              .array(fc.tuple(optionName, value), { maxLength: 6 })
              .map((opts) => [`[${s}]`, ...opts.map(([n, v]) => `${n}=${v}`), '# comment'].join('\n')),
          ),
        ),
      )
      .map((blocks) => `${blocks.join('\n\n')}\n`);
    fc.assert(
      fc.property(sectioned, (text) => {
        const once = parseUnitFile(text);
        assert.deepEqual(parseUnitFile(serializeUnitOptions(once)), once);
      }),
      { numRuns: 300 },
    );
  });

  it('holds with continuation lines', () => {
    const text = '[Service]\nExecStart=/bin/sh -c \\\n  "echo; \\\n  sleep 1"\n';
    const once = parseUnitFile(text);
    assert.deepEqual(parseUnitFile(serializeUnitOptions(once)), once);
  });
});
