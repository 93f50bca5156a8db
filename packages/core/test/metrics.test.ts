import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Counter, METRICS_CONTENT_TYPE, Metrics } from '@fleet/core';

describe('Metrics: Prometheus text format 0.0.4', () => {
  it('renders a labelled counter with HELP, TYPE and sorted series', () => {
    const m = new Metrics();
    const c = m.counter({ name: 'x_requests_total', help: 'Requests.', labelNames: ['route', 'code'] });
    c.inc({ route: 'units', code: '200' });
    c.inc({ route: 'units', code: '200' }, 2);
    c.inc({ route: 'machines', code: '404' });
    assert.equal(c.get({ route: 'units', code: '200' }), 3);
    assert.equal(
      m.render(),
      '# HELP x_requests_total Requests.\n' +
        '# TYPE x_requests_total counter\n' +
        'x_requests_total{route="machines",code="404"} 1\n' +
        'x_requests_total{route="units",code="200"} 3\n',
    );
    assert.equal(METRICS_CONTENT_TYPE, 'text/plain; version=0.0.4; charset=utf-8');
  });

  it('renders an unlabelled metric as 0 before its first update', () => {
    const m = new Metrics();
    m.gauge({ name: 'x_machines', help: 'Live machines.' });
    assert.equal(m.render(), '# HELP x_machines Live machines.\n# TYPE x_machines gauge\nx_machines 0\n');
  });

  it('gauges go up and down; collectors run before each render', () => {
    const m = new Metrics();
    const g = m.gauge({ name: 'x_units', help: 'Units by state.', labelNames: ['state'] });
    let n = 0;
    const remove = m.onCollect(() => {
      n++;
      g.reset();
      g.set({ state: 'launched' }, n * 10);
    });
    g.set({ state: 'stale' }, 5);
    assert.match(m.render(), /^x_units\{state="launched"\} 10$/m);
    assert.doesNotMatch(m.render(), /stale/);
    assert.match(m.render(), /^x_units\{state="launched"\} 30$/m);
    remove();
    g.inc({ state: 'launched' });
    g.dec({ state: 'launched' }, 0.5);
    assert.equal(g.get({ state: 'launched' }), 30.5);
    m.onCollect(() => {
      throw new Error('broken collector');
    });
    assert.match(m.render(), /x_units\{state="launched"\} 30.5/);
  });

  it('renders histograms with cumulative buckets, +Inf, _sum and _count', () => {
    const m = new Metrics();
    const h = m.histogram({ name: 'x_seconds', help: 'Latency.', labelNames: ['route'], buckets: [0.1, 1] });
    h.observe({ route: 'a' }, 0.05);
    h.observe({ route: 'a' }, 0.1);
    h.observe({ route: 'a' }, 0.5);
    h.observe({ route: 'a' }, 7);
    assert.equal(
      m.render(),
      '# HELP x_seconds Latency.\n' +
        '# TYPE x_seconds histogram\n' +
        'x_seconds_bucket{route="a",le="0.1"} 2\n' +
        'x_seconds_bucket{route="a",le="1"} 3\n' +
        'x_seconds_bucket{route="a",le="+Inf"} 4\n' +
        'x_seconds_sum{route="a"} 7.65\n' +
        'x_seconds_count{route="a"} 4\n',
    );
    const stop = h.startTimer({ route: 'b' });
    const seconds = stop();
    assert.ok(seconds >= 0 && seconds < 1);
    assert.equal(h.get({ route: 'b' }).count, 1);
  });

  it('escapes label values and help text; formats special values', () => {
    const m = new Metrics();
    const g = m.gauge({ name: 'x_odd', help: 'Back\\slash\nnewline.', labelNames: ['v'] });
    g.set({ v: 'a"b\\c\nd' }, Infinity);
    g.set({ v: 'nan' }, NaN);
    g.set({ v: 'neg' }, -Infinity);
    const text = m.render();
    assert.ok(text.startsWith('# HELP x_odd Back\\\\slash\\nnewline.\n'));
    assert.match(text, /^x_odd\{v="a\\"b\\\\c\\nd"\} \+Inf$/m);
    assert.match(text, /^x_odd\{v="nan"\} NaN$/m);
    assert.match(text, /^x_odd\{v="neg"\} -Inf$/m);
  });

  it('sorts metrics by name across kinds', () => {
    const m = new Metrics();
    m.counter({ name: 'b_total', help: 'b' });
    m.gauge({ name: 'a_gauge', help: 'a' });
    const names = [...m.render().matchAll(/^# TYPE (\S+)/gm)].map((x) => x[1]);
    assert.deepEqual(names, ['a_gauge', 'b_total']);
  });

  it('returns the existing metric for an identical registration and refuses a different one', () => {
    const m = new Metrics();
    const a = m.counter({ name: 'x_total', help: 'x', labelNames: ['k'] });
    const b = m.counter({ name: 'x_total', help: 'x', labelNames: ['k'] });
    assert.equal(a, b);
    assert.ok(a instanceof Counter);
    assert.throws(() => m.gauge({ name: 'x_total', help: 'x', labelNames: ['k'] }), /already registered/);
    assert.throws(() => m.counter({ name: 'x_total', help: 'x', labelNames: ['j'] }), /already registered/);
    m.histogram({ name: 'x_seconds', help: 'x', buckets: [1, 2] });
    assert.throws(() => m.histogram({ name: 'x_seconds', help: 'x', buckets: [1, 3] }), /other buckets/);
    assert.equal(m.get('x_total'), a);
  });

  it('refuses bad names, bad labels, bad buckets and decreasing counters', () => {
    const m = new Metrics();
    assert.throws(() => m.counter({ name: '1bad', help: '' }), /invalid metric name/);
    assert.throws(() => m.counter({ name: 'ok_total', help: '', labelNames: ['__x'] }), /invalid label/);
    assert.throws(() => m.counter({ name: 'ok_total', help: '', labelNames: ['a', 'a'] }), /duplicate/);
    assert.throws(() => m.histogram({ name: 'h', help: '', labelNames: ['le'] }), /reserved/);
    assert.throws(() => m.histogram({ name: 'h2', help: '', buckets: [2, 1] }), /ascending/);
    assert.throws(() => m.histogram({ name: 'h3', help: '', buckets: [1, Infinity] }), /finite/);
    const c = m.counter({ name: 'c_total', help: '', labelNames: ['a'] });
    assert.throws(() => c.inc({ a: 'x' }, -1), /cannot decrease/);
    // Labels are checked at run time too (callers outside TypeScript, or casts).
    assert.throws(() => c.inc(), /label a must be a string/);
    assert.throws(() => c.inc({ a: 'x', b: 'y' } as unknown as { a: string }), /expected labels a/);
  });
});
