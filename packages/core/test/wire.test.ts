import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  JOB_STATES,
  MachineSchema,
  UnitPutBodySchema,
  UnitSchema,
  UnitStateSchema,
  ValidationError,
  decodePageToken,
  encodePageToken,
  isJobState,
  jobStateRank,
} from '@fleet/core';

describe('job states (fleet-compat §4)', () => {
  it('are inactive < loaded < launched', () => {
    assert.deepEqual([...JOB_STATES], ['inactive', 'loaded', 'launched']);
    assert.ok(jobStateRank('inactive') < jobStateRank('loaded'));
    assert.ok(jobStateRank('loaded') < jobStateRank('launched'));
    assert.equal(isJobState('launched'), true);
    assert.equal(isJobState('running'), false);
    assert.equal(isJobState(undefined), false);
  });
});

describe('wire schemas', () => {
  it('accepts fleet JSON entities', () => {
    const unit = UnitSchema.parse({
      currentState: 'launched',
      desiredState: 'launched',
      machineID: 'abc',
      name: 'hello.service',
      options: [{ name: 'ExecStart', section: 'Service', value: '/bin/true' }],
    });
    assert.equal(unit.name, 'hello.service');
    assert.equal(
      UnitStateSchema.parse({ name: 'a.service', systemdActiveState: 'active' }).systemdActiveState,
      'active',
    );
    assert.deepEqual(MachineSchema.parse({ id: 'm', metadata: { a: 'b' } }).metadata, { a: 'b' });
  });
  it('refuses a bad job state and a malformed option', () => {
    assert.equal(UnitSchema.safeParse({ name: 'a.service', desiredState: 'running' }).success, false);
    assert.equal(UnitSchema.safeParse({ name: 'a.service', options: [{ name: 1 }] }).success, false);
  });
  it('PUT bodies keep desiredState as free text for the API to judge', () => {
    const body = UnitPutBodySchema.parse({ name: 'a.service', desiredState: 'bogus' });
    assert.equal(body.desiredState, 'bogus');
    assert.equal(UnitPutBodySchema.parse({ options: null }).options, null);
  });
});

describe('page tokens', () => {
  it('encode like fleet: page 2 at limit 100 is ZAACAA==', () => {
    assert.equal(encodePageToken({ limit: 100, page: 2 }), 'ZAACAA==');
    assert.deepEqual(decodePageToken('ZAACAA=='), { limit: 100, page: 2 });
  });
  it('round-trip every limit and page', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 0xffff }), fc.integer({ min: 1, max: 0xffff }), (limit, page) => {
        const token = encodePageToken({ limit, page });
        assert.match(token, /^[A-Za-z0-9_-]{6}==$/);
        assert.deepEqual(decodePageToken(token), { limit, page });
      }),
    );
  });
  for (const bad of [
    '',
    'x',
    'ZAACAA',
    'ZAACAA=',
    'ZAACAAAA',
    'ZAAC+A==',
    'AAACAA==',
    'ZAAAAA==',
    '!!!!!!==',
  ]) {
    it(`refuses ${JSON.stringify(bad)}`, () => {
      assert.throws(
        () => decodePageToken(bad),
        (err: unknown) =>
          err instanceof ValidationError && err.message.startsWith('invalid value for nextPageToken'),
      );
    });
  }
});

describe('VERSION', () => {
  it('equals the root package.json version', async () => {
    const { readFileSync } = await import('node:fs');
    const { VERSION } = await import('@fleet/core');
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    assert.equal(VERSION, pkg.version);
  });
});
