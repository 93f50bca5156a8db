import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Metrics, encodePageToken, parseUnitFile, unitHash } from '@fleet/core';
import type { CommandOutput, JournalOptions, UnitCommands } from '@fleet/api';
import {
  errorOf,
  jsonBody,
  options,
  simpleUnit,
  startHarness,
  type Answer,
  type Harness,
} from './support.js';

const V1 = '/fleet/v1';

function assertJson(a: Answer): void {
  assert.equal(a.headers['content-type'], 'application/json');
  assert.equal(a.headers['server'], 'fleetd/1.2.3');
}

function assertError(a: Answer, code: number, message: string | RegExp): void {
  assert.equal(a.status, code, a.text);
  assertJson(a);
  const err = errorOf(a);
  assert.equal(err.code, code);
  if (typeof message === 'string') assert.equal(err.message, message);
  else assert.match(err.message, message);
}

/** The request fleet's fleetctl v1.0.0 sends to create a unit, byte for byte in shape. */
const fleetctlHeaders = {
  'Content-Type': 'application/json',
  'User-Agent': 'google-api-go-client/0.5',
  Host: 'domain-sock',
};

describe('API: units', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
  });
  after(async () => {
    await h.close();
  });

  it('lists nothing as {} and says who it is', async () => {
    const a = await h.req('GET', `${V1}/units?alt=json`);
    assert.equal(a.status, 200);
    assertJson(a);
    assert.equal(a.text, '{}\n');
  });

  it('creates a unit from a request shaped exactly like fleetctl’s (201), then serves it in Go’s key order', async () => {
    // fleetctl: keys alphabetical, name percent-encoded in the path, ?alt=json, Host domain-sock.
    const body =
      '{"name":"web@1.service","options":[{"name":"Description","section":"Unit","value":"Web"},' +
      '{"name":"ExecStart","section":"Service","value":"/bin/sleep 1000"}]}';
    const created = await h.req('PUT', `${V1}/units/web%401.service?alt=json`, {
      headers: fleetctlHeaders,
      body,
    });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.headers['server'], 'fleetd/1.2.3');
    assert.equal(created.text, '');

    const got = await h.req('GET', `${V1}/units/web%401.service?alt=json`, {
      headers: { 'User-Agent': 'google-api-go-client/0.5', Host: 'domain-sock' },
    });
    assert.equal(got.status, 200);
    assertJson(got);
    assert.equal(
      got.text,
      '{"currentState":"inactive","desiredState":"inactive","name":"web@1.service","options":[' +
        '{"name":"Description","section":"Unit","value":"Web"},' +
        '{"name":"ExecStart","section":"Service","value":"/bin/sleep 1000"}]}\n',
    );
  });

  it('changes the desired state with {"desiredState","name"} (204)', async () => {
    const a = await h.req('PUT', `${V1}/units/web%401.service?alt=json`, {
      headers: fleetctlHeaders,
      body: '{"desiredState":"launched","name":"web@1.service"}',
    });
    assert.equal(a.status, 204, a.text);
    assert.equal((await h.registry.getUnitRecord('web@1.service'))?.desiredState, 'launched');
  });

  it('refuses to update an existing unit without a desired state (409, fleet’s text)', async () => {
    const a = await h.req('PUT', `${V1}/units/web%401.service`, jsonBody({ name: 'web@1.service' }));
    assertError(a, 409, 'must provide DesiredState to update existing unit');
  });

  it('refuses to create without options (409, fleet’s text), also for an empty list', async () => {
    assertError(
      await h.req('PUT', `${V1}/units/new.service`, jsonBody({ desiredState: 'launched' })),
      409,
      'unit does not exist and options field empty',
    );
    assertError(
      await h.req('PUT', `${V1}/units/new.service`, jsonBody({ options: [] })),
      409,
      'unit does not exist and options field empty',
    );
    assert.equal(await h.registry.getUnitRecord('new.service'), undefined);
  });

  it('treats resubmitting identical options as a no-op (204, nothing written)', async () => {
    const before = h.kv.writes;
    const rec = await h.registry.getUnit('web@1.service');
    assert.ok(rec);
    const a = await h.req('PUT', `${V1}/units/web%401.service`, jsonBody({ options: rec.options }));
    assert.equal(a.status, 204);
    assert.equal(h.kv.writes, before);
    assert.equal((await h.registry.getUnitRecord('web@1.service'))?.desiredState, 'launched');
  });

  it('changes the desired state when identical options come with one (204)', async () => {
    const rec = await h.registry.getUnit('web@1.service');
    assert.ok(rec);
    const a = await h.req(
      'PUT',
      `${V1}/units/web%401.service`,
      jsonBody({ desiredState: 'loaded', options: rec.options }),
    );
    assert.equal(a.status, 204);
    const after = await h.registry.getUnitRecord('web@1.service');
    assert.equal(after?.desiredState, 'loaded');
    assert.equal(after?.hash, rec.hash);
  });

  it('replaces a unit whose options changed (201), keeping its desired state unless given', async () => {
    const next = simpleUnit('/bin/sleep 2000');
    const a = await h.req('PUT', `${V1}/units/web%401.service`, jsonBody({ options: next }));
    assert.equal(a.status, 201, a.text);
    let rec = await h.registry.getUnitRecord('web@1.service');
    assert.equal(rec?.hash, unitHash(next));
    assert.equal(rec?.desiredState, 'loaded');

    const third = simpleUnit('/bin/sleep 3000');
    const b = await h.req(
      'PUT',
      `${V1}/units/web%401.service`,
      jsonBody({ desiredState: 'launched', options: third }),
    );
    assert.equal(b.status, 201);
    rec = await h.registry.getUnitRecord('web@1.service');
    assert.equal(rec?.hash, unitHash(third));
    assert.equal(rec?.desiredState, 'launched');
  });

  it('creates with the desired state the body gives', async () => {
    const a = await h.req(
      'PUT',
      `${V1}/units/given.service`,
      jsonBody({ desiredState: 'loaded', options: simpleUnit() }),
    );
    assert.equal(a.status, 201);
    assert.equal((await h.registry.getUnitRecord('given.service'))?.desiredState, 'loaded');
  });

  it('accepts option fields a Go client left out as empty strings', async () => {
    // google-api-go-client omits empty strings: Environment= has no "value".
    const a = await h.req(
      'PUT',
      `${V1}/units/env.service`,
      jsonBody({
        options: [
          { name: 'Environment', section: 'Service' },
          { name: 'ExecStart', section: 'Service', value: '/bin/true' },
        ],
      }),
    );
    assert.equal(a.status, 201, a.text);
    const got = JSON.parse((await h.req('GET', `${V1}/units/env.service`)).text) as { options: unknown[] };
    assert.deepEqual(got.options[0], { name: 'Environment', section: 'Service', value: '' });
  });

  it('answers 404 with fleet’s text for a unit that does not exist (and for impossible names)', async () => {
    assertError(await h.req('GET', `${V1}/units/nope.service`), 404, 'unit does not exist');
    assertError(await h.req('GET', `${V1}/units/no%2Fslash.service`), 404, 'unit does not exist');
    assertError(await h.req('GET', `${V1}/units/w%C3%A9b.service`), 404, 'unit does not exist');
  });

  it('destroys a unit (204), then 404', async () => {
    await h.req('PUT', `${V1}/units/doomed.service`, jsonBody({ options: simpleUnit() }));
    const a = await h.req('DELETE', `${V1}/units/doomed.service?alt=json`);
    assert.equal(a.status, 204);
    assert.equal(a.headers['server'], 'fleetd/1.2.3');
    assert.equal(await h.registry.getUnitRecord('doomed.service'), undefined);
    assertError(await h.req('DELETE', `${V1}/units/doomed.service`), 404, 'unit does not exist');
  });
});

describe('API: PUT validation', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ maxBodyBytes: 4096 });
    await h.registry.createUnit('keep.service', simpleUnit(), 'loaded');
    await h.registry.createUnit('tmpl@.service', simpleUnit(), 'inactive');
  });
  after(async () => {
    await h.close();
  });

  it('requires Content-Type application/json (415), accepting a utf-8 charset', async () => {
    const body = JSON.stringify({ options: simpleUnit() });
    assertError(
      await h.req('PUT', `${V1}/units/ct.service`, { headers: { 'Content-Type': 'text/plain' }, body }),
      415,
      'unsupported Content-Type "text/plain"; expected application/json',
    );
    assertError(
      await h.req('PUT', `${V1}/units/ct.service`, { body }),
      415,
      'missing Content-Type; expected application/json',
    );
    assertError(
      await h.req('PUT', `${V1}/units/ct.service`, {
        headers: { 'Content-Type': 'application/json; charset=latin1' },
        body,
      }),
      415,
      /unsupported charset "latin1"/,
    );
    const ok = await h.req('PUT', `${V1}/units/ct.service`, {
      headers: { 'Content-Type': 'application/json; charset=utf-8' },
      body,
    });
    assert.equal(ok.status, 201, ok.text);
  });

  it('refuses malformed JSON and wrong types, naming the field (400)', async () => {
    const put = (body: string) =>
      h.req('PUT', `${V1}/units/bad.service`, { headers: { 'Content-Type': 'application/json' }, body });
    assertError(await put('{"options": ['), 400, /^unable to decode body: /);
    assertError(await put(''), 400, 'unable to decode body: empty body');
    assertError(await put('[]'), 400, 'unable to decode body: expected a JSON object, got an array');
    assertError(await put('{"name": 5}'), 400, 'unable to decode body: name must be a string, not a number');
    assertError(
      await put('{"desiredState": {"a":1}}'),
      400,
      'unable to decode body: desiredState must be a string, not an object',
    );
    assertError(
      await put('{"options": "x"}'),
      400,
      'unable to decode body: options must be an array, not a string',
    );
    assertError(
      await put('{"options": [7]}'),
      400,
      'unable to decode body: options[0] must be an object, not a number',
    );
    assertError(
      await put('{"options": [{"name":"A","section":"S","value":true}]}'),
      400,
      'unable to decode body: options[0].value must be a string, not a boolean',
    );
    assert.equal(await h.registry.getUnitRecord('bad.service'), undefined);
  });

  it('refuses bytes that are not UTF-8 (400)', async () => {
    const body = Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    assertError(
      await h.req('PUT', `${V1}/units/bad.service`, {
        headers: { 'Content-Type': 'application/json' },
        body,
      }),
      400,
      'unable to decode body: not valid UTF-8',
    );
  });

  it('refuses a body over the limit (413) and stores nothing', async () => {
    const big = JSON.stringify({ options: [{ section: 'Service', name: 'X', value: 'a'.repeat(5000) }] });
    const a = await h.req('PUT', `${V1}/units/big.service`, {
      headers: { 'Content-Type': 'application/json' },
      body: big,
    });
    assertError(a, 413, 'request body too large: the limit is 4096 bytes');
    assert.equal(await h.registry.getUnitRecord('big.service'), undefined);
  });

  it('refuses a name that differs from the URL’s (400, fleet’s text)', async () => {
    assertError(
      await h.req('PUT', `${V1}/units/a.service`, jsonBody({ name: 'b.service', options: simpleUnit() })),
      400,
      'name in URL "a.service" differs from unit name in request body "b.service"',
    );
  });

  it('refuses invalid names with fleet’s texts, decoding the path first', async () => {
    const cases: Array<[string, string]> = [
      ['foo', 'unit name must contain "."'],
      ['foo.', 'unit name cannot end in "."'],
      ['foo.bar', 'invalid unit type: "bar"'],
      ['foo@1.mount', 'invalid unit type for template: "mount"'],
      ['w%C3%A9b.service', 'invalid character "é" in unit name'],
      ['%F0%9F%9A%80.service', 'invalid character "🚀" in unit name'],
      ['a%20b.service', 'invalid character " " in unit name'],
      ['%40x.service', 'unit name cannot start in "@"'],
      [`${'a'.repeat(260)}.service`, 'unit name exceeds maximum length (256)'],
    ];
    for (const [path, message] of cases) {
      assertError(
        await h.req('PUT', `${V1}/units/${path}`, jsonBody({ options: simpleUnit() })),
        400,
        message,
      );
    }
  });

  it('refuses an invalid percent-encoding in the path (400)', async () => {
    assertError(
      await h.req('PUT', `${V1}/units/%E0%A4%A.service`, jsonBody({ options: simpleUnit() })),
      400,
      /^invalid percent-encoding in path segment/,
    );
    assertError(await h.req('GET', `${V1}/state/%`), 400, /^invalid percent-encoding/);
  });

  it('refuses options a unit file cannot hold, with the parser’s and X-Fleet texts (400)', async () => {
    const put = (opts: unknown) => h.req('PUT', `${V1}/units/opts.service`, jsonBody({ options: opts }));
    assertError(
      await put([{ section: 'Service', name: 'ExecStart', value: 'x'.repeat(2100) }]),
      400,
      'line too long (max 2048 bytes)',
    );
    assertError(
      await put(options('[X-Fleet]\nMachineID=abc\nConflicts=foo*\n')),
      400,
      'MachineID cannot be used with Conflicts',
    );
    assertError(
      await put(options('[X-Fleet]\nGlobal=true\nReplaces=x.service\n')),
      400,
      'Global cannot be used with Replaces',
    );
    assertError(
      await put(options('[X-Fleet]\nConflicts=opts*\nMachineOf=opts.x.service\n')),
      400,
      'unresolvable requirements: peer "opts.x.service" matches conflict "opts*"',
    );
    // A newline in a value would smuggle another option into the written unit file.
    assertError(
      await put([{ section: 'Service', name: 'ExecStart', value: '/bin/true\nExecStartPre=/bin/evil' }]),
      400,
      /value cannot be written to a unit file as given/,
    );
    assertError(await put([{ section: 'Ser]vice', name: 'A', value: 'b' }]), 400, /invalid section name/);
    assertError(await put([{ section: 'Service', name: 'A=B', value: 'b' }]), 400, /invalid option name/);
    assertError(await put([{ section: '', name: 'A', value: 'b' }]), 400, /section cannot be empty/);
    assertError(await put([{ section: 'S', name: '', value: 'b' }]), 400, /option name cannot be empty/);
    assertError(await put([{ section: 'S', name: 'A', value: ' padded' }]), 400, /value cannot be written/);
    assert.equal(await h.registry.getUnitRecord('opts.service'), undefined);
    // A continued line (backslash-newline) is what a unit file can hold.
    const ok = await put(options('[Service]\nExecStart=/bin/sh -c \\\n  "echo hi"\n'));
    assert.equal(ok.status, 201, ok.text);
  });

  it('accepts a unit whose sections appear more than once (as fleetctl sends them, in file order)', async () => {
    const text =
      '[Unit]\nDescription=d\n[Service]\nExecStart=/bin/true\n[Unit]\nAfter=x.target\n[X-Fleet]\nGlobal=false\n';
    const r = await h.req('PUT', `${V1}/units/twice.service`, jsonBody({ options: options(text) }));
    assert.equal(r.status, 201, r.text);
    const rec = await h.registry.getUnitRecord('twice.service');
    assert.equal(rec?.hash, unitHash(parseUnitFile(text)));
  });

  it('refuses to activate a template, at creation and later (400)', async () => {
    assertError(
      await h.req(
        'PUT',
        `${V1}/units/foo%40.service`,
        jsonBody({ desiredState: 'launched', options: simpleUnit() }),
      ),
      400,
      'cannot activate template "foo@.service"',
    );
    assert.equal(await h.registry.getUnitRecord('foo@.service'), undefined);
    assertError(
      await h.req(
        'PUT',
        `${V1}/units/tmpl%40.service`,
        jsonBody({ desiredState: 'loaded', name: 'tmpl@.service' }),
      ),
      400,
      'cannot activate template "tmpl@.service"',
    );
    assert.equal((await h.registry.getUnitRecord('tmpl@.service'))?.desiredState, 'inactive');
    const ok = await h.req('PUT', `${V1}/units/tmpl%40.service`, jsonBody({ desiredState: 'inactive' }));
    assert.equal(ok.status, 204);
  });

  it('refuses a desired state that is not one (400) and changes nothing', async () => {
    const before = await h.registry.listUnits();
    assertError(
      await h.req('PUT', `${V1}/units/keep.service`, jsonBody({ desiredState: 'running' })),
      400,
      'invalid desiredState "running": must be inactive, loaded or launched',
    );
    assertError(
      await h.req(
        'PUT',
        `${V1}/units/fresh.service`,
        jsonBody({ desiredState: 'started', options: simpleUnit() }),
      ),
      400,
      /^invalid desiredState "started"/,
    );
    assert.deepEqual((await h.registry.listUnits()).units, before.units);
  });

  it('refuses a circular Replaces (400) and accepts a chain', async () => {
    const a = await h.req(
      'PUT',
      `${V1}/units/ra.service`,
      jsonBody({ options: options('[X-Fleet]\nReplaces=rb.service\n') }),
    );
    assert.equal(a.status, 201);
    const b = await h.req(
      'PUT',
      `${V1}/units/rb.service`,
      jsonBody({ options: options('[X-Fleet]\nReplaces=rc.service\n') }),
    );
    assert.equal(b.status, 201);
    assertError(
      await h.req(
        'PUT',
        `${V1}/units/rc.service`,
        jsonBody({ options: options('[X-Fleet]\nReplaces=r[a]*.service\n') }),
      ),
      400,
      'circular Replaces: rc.service replaces ra.service replaces rb.service replaces rc.service',
    );
    assert.equal(await h.registry.getUnitRecord('rc.service'), undefined);
    // Replacing an existing unit's options is checked the same way.
    assertError(
      await h.req(
        'PUT',
        `${V1}/units/rb.service`,
        jsonBody({ options: options('[X-Fleet]\nReplaces=ra.service\n') }),
      ),
      400,
      'circular Replaces: rb.service replaces ra.service replaces rb.service',
    );
  });
});

describe('API: current state, machine and unplaced reason of units', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
    // The engine places units only on live machines.
    await h.registry.registerMachine({ id: 'm1' }, 30, 'o1');
    await h.registry.registerMachine({ id: 'm2' }, 30, 'o2');
    const mk = (
      name: string,
      state: 'inactive' | 'loaded' | 'launched',
      text = '[Service]\nExecStart=/bin/true\n',
    ) => h.registry.createUnit(name, options(text), state);
    await mk('a-submitted.service', 'inactive');
    await mk('b-placed.service', 'launched');
    await h.place('m1', 'b-placed.service');
    await mk('c-loaded.service', 'loaded');
    await h.place('m1', 'c-loaded.service', 'loaded');
    await h.report('m1', 'c-loaded.service', {
      loadState: 'loaded',
      activeState: 'inactive',
      subState: 'dead',
    });
    await mk('d-running.service', 'launched');
    await h.place('m2', 'd-running.service');
    await h.report('m2', 'd-running.service', {
      loadState: 'loaded',
      activeState: 'active',
      subState: 'running',
    });
    // A stale report from a machine it is no longer placed on does not count.
    await h.report('m1', 'd-running.service', {
      loadState: 'loaded',
      activeState: 'failed',
      subState: 'failed',
    });
    await mk('e-crashed.service', 'launched');
    await h.place('m1', 'e-crashed.service');
    await h.report('m1', 'e-crashed.service', {
      loadState: 'loaded',
      activeState: 'failed',
      subState: 'failed',
    });
    await mk('f-nowhere.service', 'launched', '[X-Fleet]\nMachineMetadata=region=eu\n');
    await h.unplaced('f-nowhere.service', 'no machine satisfies MachineMetadata=region=eu');
    await mk('g-global.service', 'launched', '[X-Fleet]\nGlobal=true\n');
    await h.place('m1', 'g-global.service');
    await h.place('m2', 'g-global.service');
    await h.report('m1', 'g-global.service', {
      loadState: 'loaded',
      activeState: 'active',
      subState: 'running',
    });
    await h.report('m2', 'g-global.service', {
      loadState: 'loaded',
      activeState: 'inactive',
      subState: 'dead',
    });
    await mk('h-unplaced-inactive.service', 'inactive');
    await h.unplaced('h-unplaced-inactive.service', 'stale reason');
  });
  after(async () => {
    await h.close();
  });

  const expected: Record<string, { currentState: string; machineID?: string; unplacedReason?: string }> = {
    'a-submitted.service': { currentState: 'inactive' },
    'b-placed.service': { currentState: 'inactive', machineID: 'm1' },
    'c-loaded.service': { currentState: 'loaded', machineID: 'm1' },
    'd-running.service': { currentState: 'launched', machineID: 'm2' },
    'e-crashed.service': { currentState: 'launched', machineID: 'm1' },
    'f-nowhere.service': {
      currentState: 'inactive',
      unplacedReason: 'no machine satisfies MachineMetadata=region=eu',
    },
    'g-global.service': { currentState: 'loaded' },
    'h-unplaced-inactive.service': { currentState: 'inactive' },
  };

  const pick = (u: Record<string, unknown>) => ({
    currentState: u['currentState'],
    ...(u['machineID'] !== undefined ? { machineID: u['machineID'] } : {}),
    ...(u['unplacedReason'] !== undefined ? { unplacedReason: u['unplacedReason'] } : {}),
  });

  it('GET units shows each unit’s current state, machine and reason', async () => {
    const a = await h.req('GET', `${V1}/units`);
    const units = (JSON.parse(a.text) as { units: Array<Record<string, unknown>> }).units;
    assert.deepEqual(
      units.map((u) => u['name']),
      Object.keys(expected),
    );
    for (const u of units) assert.deepEqual(pick(u), expected[u['name'] as string], u['name'] as string);
  });

  it('GET units/{name} agrees with the listing for every unit', async () => {
    for (const [name, want] of Object.entries(expected)) {
      const a = await h.req('GET', `${V1}/units/${encodeURIComponent(name)}`);
      assert.equal(a.status, 200);
      assert.deepEqual(pick(JSON.parse(a.text) as Record<string, unknown>), want, name);
    }
  });

  it('puts unplacedReason last, after fleet’s fields', async () => {
    const a = await h.req('GET', `${V1}/units/f-nowhere.service`);
    assert.deepEqual(Object.keys(JSON.parse(a.text) as object), [
      'currentState',
      'desiredState',
      'name',
      'options',
      'unplacedReason',
    ]);
  });

  it('finds a placement not yet reported by asking the live machines', async () => {
    await h.registry.registerMachine({ id: 'm3' }, 30, 'o3');
    await h.registry.createUnit('i-fresh.service', simpleUnit(), 'launched');
    await h.place('m3', 'i-fresh.service');
    const a = await h.req('GET', `${V1}/units/i-fresh.service`);
    assert.deepEqual(pick(JSON.parse(a.text) as Record<string, unknown>), {
      currentState: 'inactive',
      machineID: 'm3',
    });
  });
});

describe('API: paging', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ tokenLimit: 100 });
    for (let i = 0; i < 250; i++) {
      await h.registry.createUnit(
        `u${String(i).padStart(3, '0')}.service`,
        simpleUnit(`/bin/echo ${i}`),
        'inactive',
      );
    }
  });
  after(async () => {
    await h.close();
  });

  type UnitPage = { units?: Array<{ name: string; desiredState?: string }>; nextPageToken?: string };
  const page = async (token?: string): Promise<UnitPage> => {
    const a = await h.req('GET', `${V1}/units?alt=json${token ? `&nextPageToken=${token}` : ''}`);
    assert.equal(a.status, 200, a.text);
    return JSON.parse(a.text) as UnitPage;
  };

  it('serves 250 units as 100 + 100 + 50 with fleet’s tokens, in name order', async () => {
    const p1 = await page();
    assert.equal(p1.units?.length, 100);
    assert.equal(p1.nextPageToken, 'ZAACAA==');
    const p2 = await page(p1.nextPageToken);
    assert.equal(p2.units?.length, 100);
    assert.equal(p2.nextPageToken, 'ZAADAA==');
    const p3 = await page(p2.nextPageToken);
    assert.equal(p3.units?.length, 50);
    assert.equal(p3.nextPageToken, undefined);
    const names = [...(p1.units ?? []), ...(p2.units ?? []), ...(p3.units ?? [])].map((u) => u.name);
    assert.equal(names.length, 250);
    assert.deepEqual(names, [...names].sort());
    assert.equal(new Set(names).size, 250);
  });

  it('honours the limit a first-page token carries (our fleetctl asks for pages of 1,000)', async () => {
    const all = await page('6AMBAA==');
    assert.equal(all.units?.length, 250);
    assert.equal(all.nextPageToken, undefined);
    const two = await page('yAABAA=='); // limit 200, page 1
    assert.equal(two.units?.length, 200);
    assert.equal(two.nextPageToken, 'yAACAA==');
    assert.equal((await page(two.nextPageToken)).units?.length, 50);
  });

  it('puts nextPageToken before units, as Go’s schema does', async () => {
    const a = await h.req('GET', `${V1}/units`);
    assert.deepEqual(Object.keys(JSON.parse(a.text) as object), ['nextPageToken', 'units']);
  });

  it('honours the limit inside a token and answers past the end with {}', async () => {
    const p = await page(encodePageToken({ limit: 50, page: 2 }));
    assert.equal(p.units?.[0]?.name, 'u050.service');
    assert.equal(p.units?.length, 50);
    assert.equal(p.nextPageToken, encodePageToken({ limit: 50, page: 3 }));
    assert.deepEqual(await page(encodePageToken({ limit: 100, page: 9 })), {});
  });

  it('refuses bad tokens (400)', async () => {
    for (const token of ['garbage', 'AAAAAA==', 'ZAAAAA==', '%%', 'ZAACAA']) {
      const a = await h.req('GET', `${V1}/units?nextPageToken=${token}`);
      assertError(a, 400, /^invalid value for nextPageToken/);
    }
  });

  it('cuts later pages from the first page’s snapshot; a write through the API drops it', async () => {
    const p1 = await page();
    // Changed behind this fleetd's back (another fleetd): the snapshot still holds it.
    await h.registry.destroyUnit('u249.service');
    const p3 = await page('ZAADAA==');
    assert.equal(p3.units?.at(-1)?.name, 'u249.service');
    assert.equal(p1.nextPageToken, 'ZAACAA==');
    // A write through this API clears the snapshots: the next later page is fresh.
    const del = await h.req('DELETE', `${V1}/units/u248.service`);
    assert.equal(del.status, 204);
    const fresh = await page('ZAADAA==');
    assert.equal(fresh.units?.length, 48);
    assert.equal(fresh.units?.at(-1)?.name, 'u247.service');
  });

  it('serves listings from one read of etcd plus its watch; later writes show in the next listing', async () => {
    const h2 = await startHarness();
    const original = h2.kv.range.bind(h2.kv);
    let ranges = 0;
    h2.kv.range = async (prefix: string) => {
      ranges++;
      await new Promise((r) => setTimeout(r, 50));
      return original(prefix);
    };
    const list = async (): Promise<UnitPage> => {
      const a = await h2.req('GET', `${V1}/units`);
      assert.equal(a.status, 200, a.text);
      return JSON.parse(a.text) as UnitPage;
    };
    try {
      for (const n of ['a', 'b', 'c']) await h2.registry.createUnit(`${n}.service`, simpleUnit(), 'inactive');
      const answers = await Promise.all([list(), list(), list(), list()]);
      assert.equal(ranges, 1);
      for (const a of answers) assert.deepEqual(a, answers[0]);
      assert.deepEqual(
        answers[0]?.units?.map((u) => u.name),
        ['a.service', 'b.service', 'c.service'],
      );
      // Written behind the API's back (another fleetd): the watch brings it in, no re-read.
      await h2.registry.destroyUnit('a.service');
      await h2.registry.createUnit('z.service', simpleUnit(), 'launched');
      const after = await list();
      assert.equal(ranges, 1);
      assert.deepEqual(
        after.units?.map((u) => [u.name, u.desiredState]),
        [
          ['b.service', 'inactive'],
          ['c.service', 'inactive'],
          ['z.service', 'launched'],
        ],
      );
    } finally {
      await h2.close();
    }
  });

  it('re-reads every page when snapshots are off (pageSnapshotTtlMs 0)', async () => {
    const h2 = await startHarness({ pageSnapshotTtlMs: 0, tokenLimit: 2 });
    try {
      for (const n of ['a', 'b', 'c']) await h2.registry.createUnit(`${n}.service`, simpleUnit(), 'inactive');
      const p1 = JSON.parse((await h2.req('GET', `${V1}/units`)).text) as UnitPage;
      assert.equal(p1.nextPageToken, 'AgACAA==');
      await h2.registry.destroyUnit('c.service');
      const p2 = JSON.parse((await h2.req('GET', `${V1}/units?nextPageToken=AgACAA==`)).text) as UnitPage;
      assert.deepEqual(p2, {});
    } finally {
      await h2.close();
    }
  });
});

describe('API: unit states', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ tokenLimit: 2 });
    await h.registry.createUnit('a.service', simpleUnit(), 'launched');
    await h.registry.createUnit('b.service', simpleUnit(), 'launched');
    await h.place('m2', 'a.service');
    await h.report('m2', 'a.service', {
      hash: 'h2',
      loadState: 'loaded',
      activeState: 'active',
      subState: 'running',
    });
    await h.report('m1', 'a.service', {
      hash: 'h1',
      loadState: 'loaded',
      activeState: 'inactive',
      subState: 'dead',
    });
    await h.report('m1', 'b.service', {
      hash: 'hb',
      loadState: 'loaded',
      activeState: 'active',
      subState: 'running',
    });
    await h.report('m0', 'c.service', { hash: 'hc' });
  });
  after(async () => {
    await h.close();
  });

  type StatePage = { states?: Array<Record<string, string>>; nextPageToken?: string };
  const all = async (query = ''): Promise<Array<Record<string, string>>> => {
    const out: Array<Record<string, string>> = [];
    let token: string | undefined;
    do {
      const a = await h.req('GET', `${V1}/state?alt=json${query}${token ? `&nextPageToken=${token}` : ''}`);
      assert.equal(a.status, 200, a.text);
      const p = JSON.parse(a.text) as StatePage;
      out.push(...(p.states ?? []));
      token = p.nextPageToken;
    } while (token !== undefined);
    return out;
  };

  it('lists states by unit then machine, paged, with fleet’s field names and order', async () => {
    const states = await all();
    assert.deepEqual(
      states.map((s) => `${s['name']}@${s['machineID']}`),
      ['a.service@m1', 'a.service@m2', 'b.service@m1', 'c.service@m0'],
    );
    assert.deepEqual(Object.keys(states[1] ?? {}), [
      'hash',
      'machineID',
      'name',
      'systemdActiveState',
      'systemdLoadState',
      'systemdSubState',
    ]);
    assert.deepEqual(states[3], { hash: 'hc', machineID: 'm0', name: 'c.service' });
  });

  it('filters by machineID and unitName', async () => {
    assert.deepEqual(
      (await all('&machineID=m1')).map((s) => s['name']),
      ['a.service', 'b.service'],
    );
    assert.deepEqual(
      (await all('&unitName=a.service')).map((s) => s['machineID']),
      ['m1', 'm2'],
    );
    assert.deepEqual(await all('&unitName=a.service&machineID=m2').then((s) => s.length), 1);
    assert.deepEqual(await all('&unitName=not%20a%20unit'), []);
  });

  it('GET state/{unit}: the placed machine’s report wins over others', async () => {
    const a = await h.req('GET', `${V1}/state/a.service?alt=json`);
    assert.equal(a.status, 200);
    assertJson(a);
    assert.deepEqual(JSON.parse(a.text), {
      hash: 'h2',
      machineID: 'm2',
      name: 'a.service',
      systemdActiveState: 'active',
      systemdLoadState: 'loaded',
      systemdSubState: 'running',
    });
  });

  it('GET state/{unit}: 404 with fleet’s text when nothing is reported', async () => {
    assertError(await h.req('GET', `${V1}/state/zzz.service`), 404, 'unit state does not exist');
    assertError(await h.req('GET', `${V1}/state/not-a-name`), 404, 'unit state does not exist');
  });

  it('GET state/{unit}: without a placement, the lowest machine ID', async () => {
    await h.report('m9', 'b.service', { hash: 'x' });
    await h.report('m0', 'b.service', { hash: 'y' });
    const a = await h.req('GET', `${V1}/state/b.service`);
    assert.equal((JSON.parse(a.text) as { machineID: string }).machineID, 'm0');
  });
});

describe('API: machines', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
    await h.registry.registerMachine(
      { id: 'bbb', primaryIP: '10.0.0.2', metadata: { zone: 'b', arch: 'x86' } },
      30,
      'ob',
    );
    await h.registry.registerMachine({ id: 'aaa' }, 30, 'oa');
  });
  after(async () => {
    await h.close();
  });

  it('lists live machines by ID with sorted metadata, leaving empty fields out', async () => {
    const a = await h.req('GET', `${V1}/machines?alt=json`);
    assert.equal(a.status, 200);
    assertJson(a);
    assert.equal(
      a.text,
      '{"machines":[{"id":"aaa"},{"id":"bbb","metadata":{"arch":"x86","zone":"b"},"primaryIP":"10.0.0.2"}]}\n',
    );
  });

  it('PATCH adds, replaces and removes dynamic metadata (204)', async () => {
    const patch = (ops: unknown) => h.req('PATCH', `${V1}/machines?alt=json`, jsonBody(ops));
    let a = await patch([
      { op: 'add', path: '/aaa/metadata/role', value: { value: 'db' } },
      { op: 'replace', path: '/bbb/metadata/zone', value: { value: 'c' } },
    ]);
    assert.equal(a.status, 204, a.text);
    const machines = JSON.parse((await h.req('GET', `${V1}/machines`)).text) as {
      machines: Array<{ id: string; metadata?: Record<string, string> }>;
    };
    assert.deepEqual(machines.machines[0]?.metadata, { role: 'db' });
    assert.deepEqual(machines.machines[1]?.metadata, { arch: 'x86', zone: 'c' });
    a = await patch([{ op: 'remove', path: '/aaa/metadata/role' }]);
    assert.equal(a.status, 204);
    const after = JSON.parse((await h.req('GET', `${V1}/machines`)).text) as { machines: Array<object> };
    assert.deepEqual(after.machines[0], { id: 'aaa' });
    assert.equal((await patch([])).status, 204);
  });

  it('PATCH refuses bad operations with fleet’s texts (400), all or nothing', async () => {
    const patch = (ops: unknown) => h.req('PATCH', `${V1}/machines`, jsonBody(ops));
    const good = { op: 'add', path: '/aaa/metadata/ok', value: { value: 'v' } };
    assertError(
      await patch([good, { op: 'move', path: '/aaa/metadata/x' }]),
      400,
      'invalid op: expect add, remove, or replace',
    );
    assertError(
      await patch([good, { op: 'add', path: '/aaa/meta/x', value: { value: 'v' } }]),
      400,
      'machine metadata path invalid',
    );
    assertError(
      await patch([{ op: 'add', path: '/aaa/metadata/bad key', value: { value: 'v' } }]),
      400,
      'machine metadata path invalid',
    );
    assertError(
      await patch([{ op: 'add', path: '/aaa/metadata/x' }]),
      400,
      'invalid value: add and replace require a value',
    );
    assertError(
      await patch([{ op: 'replace', path: '/aaa/metadata/x', value: {} }]),
      400,
      'invalid value: add and replace require a value',
    );
    assertError(
      await patch({ op: 'add' }),
      400,
      'unable to decode body: expected a JSON array of operations',
    );
    assertError(
      await patch([{ op: 'add', path: 7 }]),
      400,
      'unable to decode body: [0].path must be a string',
    );
    assertError(
      await patch([{ op: 'add', path: '/a/metadata/b', value: { value: 1 } }]),
      400,
      'unable to decode body: [0].value.value must be a string',
    );
    assertError(
      await h.req('PATCH', `${V1}/machines`, { headers: { 'Content-Type': 'application/json' }, body: '' }),
      400,
      'unable to decode body: empty body',
    );
    const machines = JSON.parse((await h.req('GET', `${V1}/machines`)).text) as { machines: Array<object> };
    assert.deepEqual(machines.machines[0], { id: 'aaa' });
  });
});

describe('API: routing, methods, discovery, errors', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
    await h.registry.createUnit('x.service', simpleUnit(), 'inactive');
  });
  after(async () => {
    await h.close();
  });

  it('answers wrong methods with 405 and fleet’s texts', async () => {
    const cases: Array<[string, string, string]> = [
      ['POST', 'units', 'only GET supported against this resource'],
      ['DELETE', 'units', 'only GET supported against this resource'],
      ['POST', 'units/x.service', 'only GET, PUT and DELETE supported against this resource'],
      ['PATCH', 'units/x.service', 'only GET, PUT and DELETE supported against this resource'],
      ['PUT', 'state', 'only GET supported against this resource'],
      ['DELETE', 'state/x.service', 'only GET supported against this resource'],
      ['PUT', 'machines', 'only GET and PATCH supported against this resource'],
      ['DELETE', 'machines', 'only GET and PATCH supported against this resource'],
      ['HEAD', 'units', ''],
    ];
    for (const [method, path, message] of cases) {
      const a = await h.req(method, `${V1}/${path}`);
      assert.equal(a.status, 405, `${method} ${path}`);
      assert.equal(a.headers['server'], 'fleetd/1.2.3');
      if (method !== 'HEAD') assertError(a, 405, message);
    }
    assert.equal((await h.req('POST', `${V1}/machines`)).headers['allow'], 'GET, PATCH');
  });

  it('answers unknown paths with 404 in the error envelope', async () => {
    for (const path of [
      '/',
      '/fleet/v1',
      '/fleet/v1/',
      '/fleet/v2/units',
      `${V1}/unitsx`,
      `${V1}/units/a/b`,
      '//x',
      '/v1-alpha',
    ]) {
      const a = await h.req('GET', path);
      assertError(a, 404, /^no such resource/);
    }
  });

  it('serves the legacy /v1-alpha/ root like /fleet/v1/', async () => {
    const a = await h.req('GET', '/v1-alpha/units/x.service?alt=json');
    assert.equal(a.status, 200);
    assert.equal((JSON.parse(a.text) as { name: string }).name, 'x.service');
    assert.equal((await h.req('GET', '/v1-alpha/units')).status, 200);
    assert.equal(
      (await h.req('PUT', '/v1-alpha/units/y.service', jsonBody({ options: simpleUnit() }))).status,
      201,
    );
  });

  it('accepts ?alt=json and trailing slashes; refuses other alt values', async () => {
    assert.equal((await h.req('GET', `${V1}/units/?alt=json`)).status, 200);
    assert.equal((await h.req('GET', `${V1}/units/x.service/`)).status, 200);
    assertError(await h.req('GET', `${V1}/units?alt=xml`), 400, 'unsupported alt "xml": only json is served');
  });

  it('accepts an absolute-form request target', async () => {
    assert.equal((await h.req('GET', `http://domain-sock${V1}/units/x.service?alt=json`)).status, 200);
  });

  it('serves a discovery document; other methods get 400', async () => {
    const a = await h.req('GET', `${V1}/discovery?alt=json`);
    assert.equal(a.status, 200);
    assertJson(a);
    const doc = JSON.parse(a.text) as Record<string, unknown>;
    assert.equal(doc['kind'], 'discovery#restDescription');
    assert.equal(doc['name'], 'fleet');
    assert.equal(doc['version'], 'v1');
    const resources = doc['resources'] as Record<string, { methods: Record<string, { path: string }> }>;
    assert.equal(resources['Units']?.methods['Get']?.path, 'units/{unitName}');
    assert.equal(resources['Machines']?.methods['List']?.path, 'machines');
    assert.equal((await h.req('GET', '/v1-alpha/discovery')).status, 200);
    assertError(await h.req('POST', `${V1}/discovery`), 400, 'only GET supported against this resource');
  });

  it('answers 503 with "cannot reach etcd" while the store is away, then recovers', async () => {
    h.kv.unavailable = true;
    try {
      const a = await h.req('GET', `${V1}/units`);
      assertError(a, 503, /^cannot reach etcd/);
      assert.equal(a.headers['retry-after'], '1');
      assertError(
        await h.req('PUT', `${V1}/units/z.service`, jsonBody({ options: simpleUnit() })),
        503,
        /^cannot reach etcd/,
      );
    } finally {
      h.kv.unavailable = false;
    }
    assert.equal((await h.req('GET', `${V1}/units`)).status, 200);
  });

  it('answers an unexpected failure with 500 "internal error", logs it, leaks no stack', async () => {
    await h.registry.createUnit('boom.service', simpleUnit(), 'inactive');
    const original = h.registry.getUnit.bind(h.registry);
    h.registry.getUnit = async () => {
      throw new TypeError('secret detail');
    };
    try {
      const a = await h.req('GET', `${V1}/units/boom.service`);
      assertError(a, 500, 'internal error');
      assert.doesNotMatch(a.text, /secret|TypeError|at /);
      assert.ok(h.logs.some((l) => l.includes('secret detail')));
    } finally {
      h.registry.getUnit = original;
    }
    assert.equal((await h.req('GET', `${V1}/units/boom.service`)).status, 200);
  });

  it('survives a client that goes away in the middle of a PUT body', async () => {
    const { connect } = await import('node:net');
    const port = 'port' in h.target ? h.target.port : 0;
    await new Promise<void>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.write(
          `PUT ${V1}/units/half.service HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"opt`,
        );
        setTimeout(() => {
          s.destroy();
          resolve();
        }, 20);
      });
    });
    assert.equal((await h.req('GET', `${V1}/units`)).status, 200);
    assert.equal(await h.registry.getUnitRecord('half.service'), undefined);
  });

  it('refuses a version that cannot be a header, and a bad token limit, at creation', async () => {
    const { createApiHandler } = await import('@fleet/api');
    assert.throws(() => createApiHandler({ registry: h.registry, version: 'x\ny' }), /Server header/);
    assert.throws(
      () => createApiHandler({ registry: h.registry, version: '1', tokenLimit: 0 }),
      /tokenLimit/,
    );
  });

  it('serves under a configured base path', async () => {
    const h2 = await startHarness({ basePath: '/prefix/' });
    try {
      assert.equal((await h2.req('GET', `/prefix${V1}/units`)).status, 200);
      assertError(await h2.req('GET', `${V1}/units`), 404, /^no such resource/);
    } finally {
      await h2.close();
    }
  });
});

describe('API: /metrics', () => {
  it('counts requests by route, method and code and times them', async () => {
    const metrics = new Metrics();
    metrics.gauge({ name: 'fleet_engine_units', help: 'registered elsewhere' }).set(undefined, 7);
    const h = await startHarness({ metrics });
    try {
      await h.req('GET', `${V1}/units`);
      await h.req('GET', `${V1}/units`);
      await h.req('GET', `${V1}/units/nope.service`);
      await h.req('PROPFIND', `${V1}/units`);
      await h.req('GET', '/elsewhere/x');
      const a = await h.req('GET', '/metrics');
      assert.equal(a.status, 200);
      assert.equal(a.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
      assert.equal(a.headers['server'], 'fleetd/1.2.3');
      assert.match(a.text, /^fleet_api_requests_total\{route="units",method="GET",code="200"\} 2$/m);
      assert.match(a.text, /^fleet_api_requests_total\{route="unit",method="GET",code="404"\} 1$/m);
      assert.match(a.text, /^fleet_api_requests_total\{route="units",method="other",code="405"\} 1$/m);
      assert.match(a.text, /^fleet_api_requests_total\{route="unknown",method="GET",code="404"\} 1$/m);
      assert.match(a.text, /^fleet_api_request_duration_seconds_count\{route="units",method="GET"\} 2$/m);
      assert.match(
        a.text,
        /^fleet_api_request_duration_seconds_bucket\{route="units",method="GET",le="\+Inf"\} 2$/m,
      );
      assert.match(a.text, /^fleet_engine_units 7$/m);
      assertError(await h.req('POST', '/metrics'), 405, 'only GET supported against this resource');
    } finally {
      await h.close();
    }
  });

  it('is absent without a Metrics registry', async () => {
    const h = await startHarness();
    try {
      assertError(await h.req('GET', '/metrics'), 404, 'metrics are not enabled on this fleetd');
    } finally {
      await h.close();
    }
  });
});

describe('API: x-unit-commands (ours)', () => {
  const calls: string[] = [];
  const fake: UnitCommands = {
    status: async (unit, machineID): Promise<CommandOutput> => {
      calls.push(`status ${unit} ${machineID}`);
      return { exitCode: 3, output: `● ${unit} - inactive\n` };
    },
    journal: async (unit, machineID, opts: JournalOptions): Promise<CommandOutput> => {
      calls.push(`journal ${unit} ${machineID} ${opts.lines} ${opts.output ?? '-'}`);
      return { exitCode: 0, output: 'line\n' };
    },
  };
  let h: Harness;
  before(async () => {
    h = await startHarness({ unitCommands: fake });
    await h.registry.registerMachine({ id: 'm1' }, 30, 'o1');
    await h.registry.registerMachine({ id: 'm2' }, 30, 'o2');
    await h.registry.createUnit('web@1.service', simpleUnit(), 'launched');
    await h.place('m1', 'web@1.service');
    await h.report('m1', 'web@1.service', { loadState: 'loaded', activeState: 'active' });
    await h.registry.createUnit('lonely.service', simpleUnit(), 'launched');
    await h.unplaced('lonely.service', 'no machine satisfies MachineID=zzz');
    await h.registry.createUnit('everywhere.service', options('[X-Fleet]\nGlobal=true\n'), 'launched');
    await h.place('m1', 'everywhere.service');
    await h.place('m2', 'everywhere.service');
  });
  after(async () => {
    await h.close();
  });

  it('runs status for the machine the unit is placed on', async () => {
    calls.length = 0;
    const a = await h.req('GET', `${V1}/x-unit-commands/web%401.service/status?alt=json`);
    assert.equal(a.status, 200, a.text);
    assertJson(a);
    assert.equal(a.text, '{"exitCode":3,"output":"● web@1.service - inactive\\n"}\n');
    assert.deepEqual(calls, ['status web@1.service m1']);
  });

  it('runs journal with bounded lines and an allowed output mode', async () => {
    calls.length = 0;
    assert.equal((await h.req('GET', `${V1}/x-unit-commands/web%401.service/journal`)).status, 200);
    assert.equal(
      (await h.req('GET', `${V1}/x-unit-commands/web%401.service/journal?lines=20&output=short-iso`)).status,
      200,
    );
    assert.deepEqual(calls, ['journal web@1.service m1 10 -', 'journal web@1.service m1 20 short-iso']);
    for (const q of ['lines=0', 'lines=10001', 'lines=-1', 'lines=1e3', 'lines=abc']) {
      assertError(
        await h.req('GET', `${V1}/x-unit-commands/web%401.service/journal?${q}`),
        400,
        /^invalid lines/,
      );
    }
    assertError(
      await h.req('GET', `${V1}/x-unit-commands/web%401.service/journal?output=--follow`),
      400,
      /^invalid output mode "--follow"/,
    );
    assert.equal(calls.length, 2);
  });

  it('explains why a command cannot run (404, 400)', async () => {
    assertError(await h.req('GET', `${V1}/x-unit-commands/nope.service/status`), 404, 'unit does not exist');
    assertError(await h.req('GET', `${V1}/x-unit-commands/a%3Bb.service/status`), 404, 'unit does not exist');
    assertError(
      await h.req('GET', `${V1}/x-unit-commands/lonely.service/status`),
      404,
      'unit lonely.service is not placed on any machine: no machine satisfies MachineID=zzz',
    );
    assertError(
      await h.req('GET', `${V1}/x-unit-commands/everywhere.service/status`),
      400,
      'unit everywhere.service runs on 2 machines; choose one with machineID= (m1, m2)',
    );
    assertError(
      await h.req('GET', `${V1}/x-unit-commands/web%401.service/status?machineID=m2`),
      404,
      'unit web@1.service is not placed on machine "m2"',
    );
    calls.length = 0;
    assert.equal(
      (await h.req('GET', `${V1}/x-unit-commands/everywhere.service/status?machineID=m2`)).status,
      200,
    );
    assert.deepEqual(calls, ['status everywhere.service m2']);
    assertError(
      await h.req('POST', `${V1}/x-unit-commands/web%401.service/status`),
      405,
      'only GET supported against this resource',
    );
  });

  it('answers 501 when this fleetd has no unit commands', async () => {
    const h2 = await startHarness();
    try {
      assertError(
        await h2.req('GET', `${V1}/x-unit-commands/web%401.service/status`),
        501,
        'unit commands (status, journal) are not available on this fleetd',
      );
    } finally {
      await h2.close();
    }
  });
});
