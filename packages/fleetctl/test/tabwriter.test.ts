import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatTable, tabwrite } from '@fleet/fleetctl';
import { expandTabs } from './harness.js';

// Outputs of the walkthrough (story.md), computed by hand with fleet's
// tabwriter settings (minwidth 0, tabwidth 8, padding 1, padchar TAB): each
// column is as wide as its widest cell + 1, rounded up to a multiple of 8.
describe('tabwriter: the story tables byte for byte', () => {
  it('list-machines', () => {
    const out = formatTable([
      ['MACHINE', 'IP', 'METADATA'],
      ['deb19cd2...', '192.168.2.53', '-'],
      ['960a9f62...', '192.168.2.52', '-'],
    ]);
    assert.equal(
      out,
      'MACHINE\t\tIP\t\tMETADATA\ndeb19cd2...\t192.168.2.53\t-\n960a9f62...\t192.168.2.52\t-\n',
    );
    assert.equal(
      expandTabs(out),
      [
        'MACHINE         IP              METADATA',
        'deb19cd2...     192.168.2.53    -',
        '960a9f62...     192.168.2.52    -',
        '',
      ].join('\n'),
    );
  });

  it('the early list-units of a submitted unit', () => {
    const out = formatTable([
      ['UNIT', 'LOAD', 'ACTIVE', 'SUB', 'DESC', 'MACHINE'],
      ['hello.service', '-', '-', '-', 'MyApp', '-'],
    ]);
    assert.equal(out, 'UNIT\t\tLOAD\tACTIVE\tSUB\tDESC\tMACHINE\nhello.service\t-\t-\t-\tMyApp\t-\n');
    assert.equal(
      expandTabs(out),
      'UNIT            LOAD    ACTIVE  SUB     DESC    MACHINE\nhello.service   -       -       -       MyApp   -\n',
    );
  });

  it('the early list-units of a running unit (a 7-wide cell takes one tab)', () => {
    const out = formatTable([
      ['UNIT', 'LOAD', 'ACTIVE', 'SUB', 'DESC', 'MACHINE'],
      ['hello.service', 'loaded', 'active', 'running', 'MyApp', '960a9f62.../192.168.2.52'],
    ]);
    assert.equal(
      out,
      'UNIT\t\tLOAD\tACTIVE\tSUB\tDESC\tMACHINE\nhello.service\tloaded\tactive\trunning\tMyApp\t960a9f62.../192.168.2.52\n',
    );
    assert.equal(
      expandTabs(out).split('\n')[1],
      'hello.service   loaded  active  running MyApp   960a9f62.../192.168.2.52',
    );
  });

  it('the apache replicas', () => {
    const out = formatTable([
      ['UNIT', 'LOAD', 'ACTIVE', 'SUB', 'DESC', 'MACHINE'],
      ['apache.1.service', 'loaded', 'active', 'running', 'My Apache Frontend', '960a9f62.../192.168.2.52'],
      ['apache.2.service', 'loaded', 'active', 'running', 'My Apache Frontend', 'deb19cd2.../192.168.2.53'],
    ]);
    assert.equal(out.split('\n')[0], 'UNIT\t\t\tLOAD\tACTIVE\tSUB\tDESC\t\t\tMACHINE');
    assert.equal(
      expandTabs(out),
      [
        'UNIT                    LOAD    ACTIVE  SUB     DESC                    MACHINE',
        'apache.1.service        loaded  active  running My Apache Frontend      960a9f62.../192.168.2.52',
        'apache.2.service        loaded  active  running My Apache Frontend      deb19cd2.../192.168.2.53',
        '',
      ].join('\n'),
    );
  });
});

describe('tabwriter: Go semantics', () => {
  it('never pads the last cell of a line', () => {
    assert.equal(tabwrite('a\tbbbbbbbbbbbbbbbbbbbbb\nccc\td\n'), 'a\tbbbbbbbbbbbbbbbbbbbbb\nccc\td\n');
  });
  it('an 8-wide cell needs a width of 9, hence 16 and two tabs for shorter cells', () => {
    assert.equal(tabwrite('12345678\tx\n1\ty\n'), '12345678\tx\n1\t\ty\n');
  });
  it('a line without the column ends the column block', () => {
    // The middle line has no tab, so the two outer lines align separately.
    assert.equal(tabwrite('aaaaaaaaaa\tx\nmid\nb\ty\n'), 'aaaaaaaaaa\tx\nmid\nb\ty\n');
  });
  it('aligns a column only across the lines that have it', () => {
    assert.equal(tabwrite('a\tb\tc\nx\ty\n'), 'a\tb\tc\nx\ty\n');
    assert.equal(tabwrite('a\tbbbbbbbbb\tc\nx\ty\tz\n'), 'a\tbbbbbbbbb\tc\nx\ty\t\tz\n');
  });
  it('counts code points, not bytes', () => {
    assert.equal(tabwrite('ééééééé\tx\nabcdefgh\ty\n'), 'ééééééé\t\tx\nabcdefgh\ty\n');
  });
  it('pads with spaces when asked (padchar other than TAB)', () => {
    assert.equal(tabwrite('a\tb\nccc\td\n', { padChar: ' ', padding: 2 }), 'a    b\nccc  d\n');
  });
  it('keeps a last line without newline as is', () => {
    assert.equal(tabwrite('a\tb\nlonger\tc'), 'a\tb\nlonger\tc');
  });
  it('renders nothing for no rows', () => {
    assert.equal(formatTable([]), '');
  });
});
