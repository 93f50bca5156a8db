import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { unitNameProblem } from '@fleet/core';
import type { UnitCommands } from '@fleet/api';
import { options, request, simpleUnit, startHarness, type Answer, type Harness } from './support.js';

/**
 * R6: malformed input of every kind — unit files, names, JSON bodies, page
 * tokens, paths, methods, queries — thrown at the handler. Every answer must
 * be a 2xx (valid input) or a 4xx with fleet's JSON error envelope; never a
 * 5xx, never a crash; and the units, states and machines stored before the
 * fuzzing must be exactly as they were.
 */

/** Names the fuzzers never generate and never write to. */
const PROTECTED_UNITS = ['zz-protected-a.service', 'zz-protected-b@.service', 'zz-protected-c.service'];
const PROTECTED_MACHINE = 'protected0000machine0000id000000';

/** Requests in flight at once: eight keep-alive connections answer about twice as fast as one. */
const BATCH = 8;

/** Draws BATCH inputs per property run and checks them concurrently. */
function batched<T>(arb: fc.Arbitrary<T>, run: (input: T) => Promise<void>) {
  return fc.asyncProperty(fc.array(arb, { minLength: BATCH, maxLength: BATCH }), async (inputs) => {
    await Promise.all(inputs.map(run));
  });
}

const noop: UnitCommands = {
  status: async () => ({ exitCode: 0, output: 'ok' }),
  journal: async () => ({ exitCode: 0, output: 'ok' }),
};

describe('R6: fuzzed API input', () => {
  let h: Harness;
  const agent = new Agent({ keepAlive: true, maxSockets: BATCH });
  let cases = 0;
  let before_: string;

  const snapshot = async (): Promise<string> => {
    const units = (await h.registry.listUnits()).units.filter((u) => PROTECTED_UNITS.includes(u.name));
    const machines = (await h.registry.listMachines()).filter((m) => m.id === PROTECTED_MACHINE);
    const states = await h.registry.listStates({ machineID: PROTECTED_MACHINE });
    const placements = await h.registry.listPlacements(PROTECTED_MACHINE);
    return JSON.stringify({ units, machines, states, placements });
  };

  /** Sends a request and checks the answer is a 2xx or a well-formed 4xx. */
  const check = async (
    method: string,
    path: string,
    body?: string,
    headers: Record<string, string> = {},
  ): Promise<Answer> => {
    cases++;
    const a = await request(h.target, method, path, {
      agent,
      headers: body === undefined ? headers : { 'Content-Type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body }),
    });
    const where = `${method} ${path} ${body?.slice(0, 200) ?? ''} → ${a.status} ${a.text.slice(0, 300)}`;
    assert.ok(a.status >= 200 && a.status < 500, where);
    assert.equal(a.headers['server'], 'fleetd/1.2.3', where);
    if (a.status >= 400 && method !== 'HEAD') {
      assert.equal(a.headers['content-type'], 'application/json', where);
      const parsed = JSON.parse(a.text) as { error?: { code?: unknown; message?: unknown } };
      assert.equal(parsed.error?.code, a.status, where);
      assert.equal(typeof parsed.error?.message, 'string', where);
      assert.ok((parsed.error?.message as string).length > 0, where);
    } else if (a.status === 200 && method !== 'HEAD') {
      JSON.parse(a.text);
    }
    return a;
  };

  before(async () => {
    h = await startHarness({ tokenLimit: 7, unitCommands: noop, maxBodyBytes: 64 * 1024 });
    await h.registry.registerMachine({ id: PROTECTED_MACHINE, metadata: { role: 'keep' } }, 30, 'owner');
    await h.registry.createUnit(
      'zz-protected-a.service',
      options('[Unit]\nDescription=keep\n[Service]\nExecStart=/bin/sleep 1\n'),
      'launched',
    );
    await h.registry.createUnit('zz-protected-b@.service', simpleUnit(), 'inactive');
    await h.registry.createUnit('zz-protected-c.service', options('[X-Fleet]\nReplaces=fz-*\n'), 'loaded');
    await h.place(PROTECTED_MACHINE, 'zz-protected-a.service');
    await h.report(PROTECTED_MACHINE, 'zz-protected-a.service', {
      loadState: 'loaded',
      activeState: 'active',
    });
    // Some ordinary units so listings have several pages.
    for (let i = 0; i < 20; i++)
      await h.registry.createUnit(`seed-${i}.service`, simpleUnit(`/bin/echo ${i}`), 'inactive');
    before_ = await snapshot();
  });

  after(async () => {
    agent.destroy();
    await h.close();
  });

  // ---- generators ---------------------------------------------------------

  const anyText = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.string({
      unit: fc.constantFrom('a', '.', '@', '-', '\\', ':', '_', '%', '/', ' ', '\n', '"', '=', '[', ']'),
      maxLength: 30,
    }),
  );

  const unitFileLine = fc.oneof(
    fc.constantFrom(
      '[Unit]',
      '[Service]',
      '[X-Fleet]',
      '[Install]',
      '[Bad',
      '[X] garbage',
      '',
      '# c',
      '; c',
      '  ',
      '\\',
    ),
    fc
      .tuple(
        fc.constantFrom(
          'Description',
          'ExecStart',
          'MachineID',
          'MachineOf',
          'MachineMetadata',
          'Conflicts',
          'Global',
          'Replaces',
          'X-ConditionMachineID',
          'X-Conflicts',
          'Foo',
          '',
          ' Spaced ',
        ),
        fc.oneof(
          anyText,
          fc.constantFrom('true', '"a=b" "c=d"', 'a=b=c', 'zz-protected-*', 'fz-*', '%n %p %i', 'x\\'),
        ),
      )
      .map(([k, v]) => `${k}=${v}`),
    anyText,
    fc.constant(`ExecStart=${'x'.repeat(2050)}`),
  );

  const unitFileText = fc
    .tuple(fc.array(unitFileLine, { maxLength: 12 }), fc.constantFrom('\n', '\r\n'))
    .map(([lines, nl]) => lines.join(nl));

  /** Names that are never a protected unit (the fuzz must not touch them). */
  const fuzzName = fc
    .oneof(
      anyText,
      fc
        .tuple(
          fc.string({ maxLength: 12 }),
          fc.constantFrom('.service', '.socket', '.mount', '@.service', '@1.timer', '.', ''),
        )
        .map(([a, b]) => `fz-${a}${b}`),
      fc.constantFrom('', '.', '@.service', 'a@.mount', 'a/b.service', '..', '%', 'fz-a.service'),
    )
    .filter((n) => n !== '' && !PROTECTED_UNITS.includes(n));

  const optionObject = fc.record(
    {
      section: fc.oneof(
        anyText,
        fc.constantFrom('Service', 'X-Fleet', 'Unit'),
        fc.integer(),
        fc.constant(null),
      ),
      name: fc.oneof(
        anyText,
        fc.constantFrom('ExecStart', 'Global', 'Replaces', 'Conflicts', 'MachineID'),
        fc.boolean(),
      ),
      value: fc.oneof(
        anyText,
        fc.constantFrom('/bin/true', 'true', 'zz-protected-a.service', '*'),
        fc.constant(null),
      ),
    },
    { requiredKeys: [] },
  );

  const jsonBody = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
    fc
      .record(
        {
          name: fc.oneof(fuzzName, fc.integer(), fc.constant(null), fc.constantFrom(...PROTECTED_UNITS)),
          desiredState: fc.oneof(
            fc.constantFrom('inactive', 'loaded', 'launched', 'bogus', ''),
            fc.jsonValue({ maxDepth: 1 }),
          ),
          options: fc.oneof(fc.array(optionObject, { maxLength: 6 }), fc.jsonValue({ maxDepth: 2 })),
          currentState: fc.string(),
        },
        { requiredKeys: [] },
      )
      .map((v) => JSON.stringify(v)),
    anyText,
    fc.constantFrom('', '{', '[]', 'null', '{"options":[{}]}', '\u0000', '{"name":"\\ud800"}'),
  );

  const pageToken = fc.oneof(
    fc.string({ maxLength: 12 }),
    fc.base64String({ maxLength: 12 }),
    fc.tuple(fc.nat(65535), fc.nat(65535)).map(([limit, page]) => {
      const b = Buffer.alloc(4);
      b.writeUInt16LE(limit, 0);
      b.writeUInt16LE(page, 2);
      return b.toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
    }),
    fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a).toString('base64')),
  );

  /** A raw path segment; may be a broken percent-encoding on purpose. */
  const segment = fc.oneof(
    fc.constantFrom(
      'fleet',
      'v1',
      'v1-alpha',
      'units',
      'state',
      'machines',
      'discovery',
      'x-unit-commands',
      'status',
      'journal',
      'metrics',
      '..',
      '.',
      '',
      '%',
      '%2',
      '%ZZ',
      '%2F',
      '%00',
      '%C3%28',
      '%F0%9F%9A%80',
    ),
    fuzzName.map((n) => encodeURIComponent(n)),
  );

  const method = fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'POST', 'OPTIONS', 'HEAD');

  const decodedSegments = (path: string): string[] =>
    path.split('/').map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    });

  // ---- properties -----------------------------------------------------------

  // numRuns × BATCH requests each; 11,000 in all. No shrinking (endOnFailure): over HTTP it
  // would take minutes, and the first counterexample is printed with its seed.

  it('unit files: any text, parsed or not, PUT as options gets 201 or a 4xx', async () => {
    const { parseUnitFile } = await import('@fleet/core');
    let n = 0;
    const input = fc.tuple(unitFileText, fc.constantFrom(undefined, 'inactive', 'launched'));
    await fc.assert(
      batched(input, async ([text, desiredState]) => {
        let opts;
        try {
          opts = parseUnitFile(text);
        } catch {
          // The parser refused it: send the lines as raw options instead.
          opts = text.split('\n').map((l) => ({ section: 'Service', name: 'ExecStart', value: l }));
        }
        const name = `fz-file-${n++}.service`;
        const a = await check(
          'PUT',
          `/fleet/v1/units/${name}`,
          JSON.stringify({ desiredState, options: opts }),
        );
        assert.ok([201, 400, 409].includes(a.status), `${a.status} ${a.text}`);
      }),
      { numRuns: Math.ceil(2000 / BATCH), endOnFailure: true },
    );
  });

  it('unit names: PUT, GET, DELETE and state lookups of any name', async () => {
    const input = fc.tuple(fuzzName, fc.constantFrom('PUT', 'GET', 'DELETE', 'STATE'));
    await fc.assert(
      batched(input, async ([name, op]) => {
        const enc = encodeURIComponent(name);
        if (op === 'PUT') {
          const a = await check('PUT', `/fleet/v1/units/${enc}`, JSON.stringify({ options: simpleUnit() }));
          const problem = unitNameProblem(name);
          if (problem !== undefined) {
            assert.equal(a.status, 400);
            assert.equal((JSON.parse(a.text) as { error: { message: string } }).error.message, problem);
          } else {
            assert.ok([201, 204].includes(a.status), a.text);
          }
        } else if (op === 'GET') {
          assert.ok([200, 404].includes((await check('GET', `/fleet/v1/units/${enc}?alt=json`)).status));
        } else if (op === 'DELETE') {
          assert.ok([204, 404].includes((await check('DELETE', `/fleet/v1/units/${enc}`)).status));
        } else {
          assert.ok([200, 404].includes((await check('GET', `/fleet/v1/state/${enc}`)).status));
        }
      }),
      { numRuns: Math.ceil(2500 / BATCH), endOnFailure: true },
    );
  });

  it('JSON bodies: anything PUT to an unprotected unit gets 2xx or 4xx', async () => {
    const input = fc.tuple(
      jsonBody,
      fc.constantFrom('fz-body.service', 'fz-body@.service', 'fz-body@1.service'),
    );
    await fc.assert(
      batched(input, async ([body, name]) => {
        await check('PUT', `/fleet/v1/units/${encodeURIComponent(name)}`, body);
      }),
      { numRuns: Math.ceil(2000 / BATCH), endOnFailure: true },
    );
  });

  it('page tokens and queries on every listing get 200 or 400', async () => {
    const input = fc.tuple(pageToken, fc.constantFrom('units', 'state', 'machines'), fc.option(anyText));
    await fc.assert(
      batched(input, async ([token, collection, filter]) => {
        const extra =
          filter === null
            ? ''
            : `&machineID=${encodeURIComponent(filter)}&unitName=${encodeURIComponent(filter)}`;
        const a = await check(
          'GET',
          `/fleet/v1/${collection}?alt=json&nextPageToken=${encodeURIComponent(token)}${extra}`,
        );
        assert.ok([200, 400].includes(a.status), a.text);
      }),
      { numRuns: Math.ceil(2000 / BATCH), endOnFailure: true },
    );
  });

  it('paths and methods: any combination gets 2xx or 4xx', async () => {
    const input = fc
      .tuple(
        fc.constantFrom('/fleet/v1/', '/v1-alpha/', '/', '//', '/fleet/'),
        fc.array(segment, { maxLength: 5 }),
        method,
        fc.option(jsonBody),
        fc.option(
          fc.constantFrom('alt=json', 'alt=xml', 'lines=5&output=cat', 'lines=0', 'output=x', 'machineID=m'),
        ),
      )
      // Writes may go anywhere except to what the fuzz promised to leave alone.
      .filter(
        ([root, segs]) =>
          !decodedSegments(`${root}${segs.join('/')}`).some(
            (s) => PROTECTED_UNITS.includes(s) || s.includes(PROTECTED_MACHINE),
          ),
      );
    await fc.assert(
      batched(input, async ([root, segs, m, body, query]) => {
        const path = `${root}${segs.join('/')}`;
        await check(m, `${path}${query === null ? '' : `?${query}`}`, body ?? undefined);
      }),
      { numRuns: Math.ceil(1500 / BATCH), endOnFailure: true },
    );
  });

  it('PATCH /machines: any body gets 204 or 400', async () => {
    const op = fc.record(
      {
        op: fc.oneof(fc.constantFrom('add', 'remove', 'replace', 'move', ''), fc.integer()),
        path: fc.oneof(
          anyText,
          fc.tuple(fc.constantFrom('fz-m1', 'fz-m2', ''), anyText).map(([m, k]) => `/${m}/metadata/${k}`),
        ),
        value: fc.oneof(
          fc.record({ value: fc.oneof(anyText, fc.integer()) }, { requiredKeys: [] }),
          fc.jsonValue({ maxDepth: 1 }),
        ),
      },
      { requiredKeys: [] },
    );
    const input = fc.oneof(
      fc.array(op, { maxLength: 4 }).map((v) => JSON.stringify(v)),
      jsonBody,
    );
    await fc.assert(
      batched(input, async (body) => {
        const a = await check('PATCH', '/fleet/v1/machines', body);
        assert.ok([204, 400].includes(a.status), a.text);
      }),
      { numRuns: Math.ceil(1000 / BATCH), endOnFailure: true },
    );
  });

  it('left everything stored before the fuzzing exactly as it was, and logged no internal error', async () => {
    assert.ok(cases >= 10_000, `only ${cases} cases ran`);
    assert.equal(await snapshot(), before_);
    assert.deepEqual(h.logs, []);
    // And the server still answers normally.
    const a = await check('GET', '/fleet/v1/units/zz-protected-a.service');
    assert.equal(a.status, 200);
    assert.equal((JSON.parse(a.text) as { currentState: string }).currentState, 'launched');
  });
});
