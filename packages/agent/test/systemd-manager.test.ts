/**
 * SystemdManager against an in-process stand-in for dbus-daemon + systemd:
 * a unix socket speaking the D-Bus wire protocol (dbus-next's own marshaller),
 * answering the Manager methods the adapter uses and emitting signals on
 * demand. It proves what a real systemd cannot show deterministically:
 * exact call batching, signal coalescing, error translation, a failed Hello,
 * a dropped connection, a call that never gets an answer. The real thing is
 * in systemd-manager.int.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { InternalError, NotFoundError, UnavailableError, ValidationError } from '@fleet/core';
import { eventually } from '../../../test/support/eventually.js';
import { SystemdManager, type SystemdManagerOptions, type UnitStatus } from '@fleet/agent';
// Internal helpers, not part of the package's API.
import { escapeBusLabel, unescapeBusLabel, unitNameFromPath, unitObjectPath } from '../src/systemd-escape.js';

const require = createRequire(import.meta.url);

interface WireMessage {
  type: number;
  serial: number;
  path?: string;
  interface?: string;
  member?: string;
  signature?: string;
  body: unknown[];
}
const { Message, Variant } = require('dbus-next') as {
  Message: new (init: Record<string, unknown>) => WireMessage;
  Variant: new (signature: string, value: unknown) => unknown;
};
const { marshallMessage, messageToJsFmt } = require('dbus-next/lib/marshall-compat.js') as {
  marshallMessage: (msg: WireMessage) => [Buffer, unknown[]];
  messageToJsFmt: (msg: unknown) => Record<string, unknown>;
};
const { unmarshalMessages } = require('dbus-next/lib/message.js') as {
  unmarshalMessages: (
    stream: NodeJS.ReadableStream,
    onMessage: (msg: unknown) => void,
    opts: unknown,
  ) => void;
};

const METHOD_RETURN = 2;
const ERROR = 3;
const SIGNAL = 4;
const MANAGER_PATH = '/org/freedesktop/systemd1';
const MANAGER_IFACE = 'org.freedesktop.systemd1.Manager';

interface Call {
  readonly member: string;
  readonly body: unknown[];
}

/** A D-Bus peer that plays dbus-daemon and systemd at once. */
class FakeSystemdBus {
  readonly calls: Call[] = [];
  /** name → [load, active, sub] */
  readonly units = new Map<string, [string, string, string]>();
  /** member → the D-Bus error [name, text] to answer a call's body with, or undefined to answer normally. */
  readonly errors = new Map<string, (body: unknown[]) => [string, string] | undefined>();
  /** Members that never get an answer. */
  readonly hang = new Set<string>();
  /**
   * Member → signals written in the SAME socket write as the next reply to it,
   * so the client reads both at once (a reply followed on the wire by a newer signal).
   */
  readonly trailing = new Map<string, () => Buffer[]>();
  helloError = false;
  private readonly sockets = new Set<net.Socket>();
  private serial = 1;

  private constructor(
    private readonly server: net.Server,
    readonly socketPath: string,
  ) {}

  static async start(dir: string): Promise<FakeSystemdBus> {
    const socketPath = join(dir, 'bus');
    const server = net.createServer();
    const bus = new FakeSystemdBus(server, socketPath);
    server.on('connection', (socket) => bus.accept(socket));
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    return bus;
  }

  get address(): string {
    return `unix:path=${this.socketPath}`;
  }

  members(): string[] {
    return this.calls.map((c) => c.member);
  }

  count(member: string): number {
    return this.calls.filter((c) => c.member === member).length;
  }

  callsOf(member: string): Call[] {
    return this.calls.filter((c) => c.member === member);
  }

  signal(path: string, iface: string, member: string, signature: string, body: unknown[]): void {
    const data = this.signalData(path, iface, member, signature, body);
    for (const socket of this.sockets) socket.write(data);
  }

  signalData(path: string, iface: string, member: string, signature: string, body: unknown[]): Buffer {
    const msg = new Message({
      type: SIGNAL,
      serial: this.serial++,
      path,
      interface: iface,
      member,
      signature,
      body,
      sender: 'org.freedesktop.systemd1',
    });
    return marshallMessage(msg)[0];
  }

  propertiesChanged(unit: string, props: Record<string, string>, invalidated: string[] = []): void {
    const data = this.propertiesChangedData(unit, props, invalidated);
    for (const socket of this.sockets) socket.write(data);
  }

  propertiesChangedData(unit: string, props: Record<string, string>, invalidated: string[] = []): Buffer {
    const changed: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(props)) changed[k] = new Variant('s', v);
    return this.signalData(
      unitObjectPath(unit),
      'org.freedesktop.DBus.Properties',
      'PropertiesChanged',
      'sa{sv}as',
      ['org.freedesktop.systemd1.Unit', changed, invalidated],
    );
  }

  /** Drops every client connection (dbus-daemon restarted, machine gone). */
  dropConnections(): void {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  async close(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    let handshake = Buffer.alloc(0);
    let messages: PassThrough | undefined;
    socket.on('data', (chunk: Buffer) => {
      if (messages) {
        messages.write(chunk);
        return;
      }
      handshake = Buffer.concat([handshake, chunk]);
      for (;;) {
        if (handshake[0] === 0) handshake = handshake.subarray(1);
        const end = handshake.indexOf('\r\n');
        if (end === -1) return;
        const line = handshake.subarray(0, end).toString('ascii');
        handshake = handshake.subarray(end + 2);
        if (line.startsWith('AUTH')) socket.write('OK 0123456789abcdef0123456789abcdef\r\n');
        else if (line === 'BEGIN') {
          messages = new PassThrough();
          unmarshalMessages(messages, (raw) => this.dispatch(socket, new Message(messageToJsFmt(raw))), {});
          if (handshake.length > 0) messages.write(handshake);
          return;
        }
      }
    });
  }

  private reply(socket: net.Socket, to: WireMessage, signature = '', body: unknown[] = []): void {
    const msg = new Message({
      type: METHOD_RETURN,
      serial: this.serial++,
      replySerial: to.serial,
      destination: ':1.7',
      signature,
      body,
    });
    const trailing = this.trailing.get(to.member ?? '');
    this.trailing.delete(to.member ?? '');
    socket.write(Buffer.concat([marshallMessage(msg)[0], ...(trailing?.() ?? [])]));
  }

  private error(socket: net.Socket, to: WireMessage, name: string, text: string): void {
    const msg = new Message({
      type: ERROR,
      serial: this.serial++,
      replySerial: to.serial,
      destination: ':1.7',
      errorName: name,
      signature: 's',
      body: [text],
    });
    socket.write(marshallMessage(msg)[0]);
  }

  private dispatch(socket: net.Socket, msg: WireMessage): void {
    const member = msg.member ?? '';
    const body = msg.body;
    this.calls.push({ member, body });
    if (member === 'Hello') {
      if (this.helloError)
        this.error(socket, msg, 'org.freedesktop.DBus.Error.AccessDenied', 'no hello for you');
      else this.reply(socket, msg, 's', [':1.7']);
      return;
    }
    if (this.hang.has(member)) return;
    const err = this.errors.get(member)?.(body);
    if (err !== undefined) {
      this.error(socket, msg, err[0], err[1]);
      return;
    }
    switch (member) {
      case 'LinkUnitFiles':
      case 'DisableUnitFiles':
        this.reply(socket, msg, 'a(sss)', [[]]);
        return;
      case 'EnableUnitFiles':
        this.reply(socket, msg, 'ba(sss)', [true, []]);
        return;
      case 'Reload':
        this.signal(MANAGER_PATH, MANAGER_IFACE, 'Reloading', 'b', [true]);
        this.reply(socket, msg);
        this.signal(MANAGER_PATH, MANAGER_IFACE, 'Reloading', 'b', [false]);
        return;
      case 'StartUnit':
      case 'StopUnit':
        this.reply(socket, msg, 'o', ['/org/freedesktop/systemd1/job/42']);
        return;
      case 'ListUnitsByNames': {
        const rows = (body[0] as string[]).map((name) => {
          const [load, active, sub] = this.units.get(name) ?? ['not-found', 'inactive', 'dead'];
          return [name, '', load, active, sub, '', unitObjectPath(name), 0, '', '/'];
        });
        this.reply(socket, msg, 'a(ssssssouso)', [rows]);
        return;
      }
      case 'Get':
        this.reply(socket, msg, 'v', [new Variant('u', 4242)]);
        return;
      default:
        this.reply(socket, msg);
    }
  }
}

/** An error rule: always, or only when the call's first argument equals `onlyFor`. */
const fail =
  (name: string, text: string, onlyFor?: unknown) =>
  (body: unknown[]): [string, string] | undefined =>
    onlyFor === undefined || JSON.stringify(body[0]) === JSON.stringify(onlyFor) ? [name, text] : undefined;

describe('systemd object paths', () => {
  it('escapes like sd_bus_path_encode and round-trips', () => {
    assert.equal(escapeBusLabel('hello.service'), 'hello_2eservice');
    assert.equal(escapeBusLabel('a-b@1.service'), 'a_2db_401_2eservice');
    assert.equal(escapeBusLabel('1st.service'), '_31st_2eservice', 'a leading digit is escaped');
    assert.equal(escapeBusLabel(''), '_');
    assert.equal(unitObjectPath('x\\y.service'), '/org/freedesktop/systemd1/unit/x_5cy_2eservice');
    for (const name of ['hello.service', 'a-b@1.service', '1st.service', 'x\\y:z_w.socket', 'été.service']) {
      assert.equal(unescapeBusLabel(escapeBusLabel(name)), name);
      assert.equal(unitNameFromPath(unitObjectPath(name)), name);
    }
    assert.equal(unitNameFromPath('/org/freedesktop/systemd1'), undefined);
    assert.equal(unitNameFromPath('/org/freedesktop/systemd1/unit/a/b'), undefined);
    assert.equal(unescapeBusLabel('bad_zz'), undefined);
  });
});

describe('SystemdManager over a fake bus', () => {
  let dir: string;
  let bus: FakeSystemdBus;
  let manager: SystemdManager | undefined;
  const logs: string[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);

  before(() => {
    process.on('unhandledRejection', onUnhandled);
  });
  after(() => {
    process.off('unhandledRejection', onUnhandled);
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sm-fake-'));
    bus = await FakeSystemdBus.start(dir);
    logs.length = 0;
  });
  afterEach(async () => {
    await manager?.close();
    manager = undefined;
    await bus.close();
    await rm(dir, { recursive: true, force: true });
    assert.deepEqual(unhandled, [], 'no unhandled rejections');
  });

  const make = (options: SystemdManagerOptions = {}) => {
    manager = new SystemdManager({
      busAddress: bus.address,
      rootPath: join(dir, 'root'),
      unitsDirectory: '/run/fleet/units',
      log: (m) => logs.push(m),
      ...options,
    });
    return manager;
  };
  const svc = (name: string, install = false) => ({
    name,
    text: `[Service]\nExecStart=/bin/sleep 1000\n${install ? '[Install]\nWantedBy=multi-user.target\n' : ''}`,
    install,
  });
  const recorder = () => {
    const seen: UnitStatus[] = [];
    return { seen, listener: (s: UnitStatus) => seen.push(s) };
  };

  it('start: Hello, two match rules, Subscribe; idempotent', async () => {
    const m = make();
    await Promise.all([m.start(), m.start()]);
    await m.start();
    assert.deepEqual(bus.members(), ['Hello', 'AddMatch', 'AddMatch', 'Subscribe']);
    const rules = bus.callsOf('AddMatch').map((c) => String(c.body[0]));
    assert.match(rules[0] ?? '', /interface='org\.freedesktop\.systemd1\.Manager'/);
    assert.match(
      rules[1] ?? '',
      /member='PropertiesChanged',path_namespace='\/org\/freedesktop\/systemd1\/unit'/,
    );
    assert.equal(m.connected, true);
  });

  it('a failed Hello rejects start() with UnavailableError and crashes nothing', async () => {
    bus.helloError = true;
    const m = make();
    await assert.rejects(m.start(), (err: unknown) => {
      assert.ok(err instanceof UnavailableError);
      assert.match(err.message, /no hello for you/);
      return true;
    });
    assert.equal(m.connected, false);
  });

  it('an unreachable bus is UnavailableError', async () => {
    const m = make({ busAddress: `unix:path=${join(dir, 'nothing-here')}` });
    await assert.rejects(m.start(), UnavailableError);
    await assert.rejects(m.statuses(['a.service']), UnavailableError);
  });

  it('writeAndLink: atomic 0644 files under rootPath, ONE LinkUnitFiles with systemd-side paths, ONE EnableUnitFiles', async () => {
    const m = make();
    const files = [svc('a.service'), svc('b.service', true), svc('c.service', true)];
    await m.writeAndLink(files);
    assert.equal(bus.count('LinkUnitFiles'), 1);
    assert.deepEqual(bus.callsOf('LinkUnitFiles')[0]?.body, [
      ['/run/fleet/units/a.service', '/run/fleet/units/b.service', '/run/fleet/units/c.service'],
      true,
      true,
    ]);
    assert.deepEqual(bus.callsOf('EnableUnitFiles')[0]?.body, [
      ['/run/fleet/units/b.service', '/run/fleet/units/c.service'],
      true,
      true,
    ]);
    const hostDir = join(dir, 'root/run/fleet/units');
    assert.deepEqual((await readdir(hostDir)).sort(), ['a.service', 'b.service', 'c.service']);
    assert.equal((await stat(join(hostDir, 'a.service'))).mode & 0o777, 0o644);
    assert.equal(await readFile(join(hostDir, 'b.service'), 'utf8'), files[1]?.text);
    // temp files and non-unit names are not units
    await writeFile(join(hostDir, '.x.service.1234.tmp'), 'partial');
    await writeFile(join(hostDir, 'README'), 'not a unit');
    const read = await m.readUnitFiles();
    assert.deepEqual([...read.keys()], ['a.service', 'b.service', 'c.service']);
    assert.equal(read.get('a.service'), files[0]?.text);
  });

  it('writeAndLink of a unit that lost [Install] disables it before linking again', async () => {
    const m = make();
    await m.writeAndLink([svc('a.service', true)]);
    bus.calls.length = 0;
    await m.writeAndLink([svc('a.service', false)]);
    assert.deepEqual(bus.members(), ['DisableUnitFiles', 'LinkUnitFiles']);
  });

  it('invalid names are ValidationErrors before anything is written or called', async () => {
    const m = make();
    await m.start();
    bus.calls.length = 0;
    await assert.rejects(
      m.writeAndLink([{ name: '../../etc/passwd', text: 'x', install: false }]),
      ValidationError,
    );
    await assert.rejects(m.startUnit('no-type'), ValidationError);
    await assert.rejects(m.statuses(['a/b.service']), ValidationError);
    assert.deepEqual(bus.members(), []);
  });

  it('start/stop use mode replace; the job is not awaited', async () => {
    const m = make();
    await m.startUnit('a.service');
    await m.stopUnit('b.service');
    assert.deepEqual(bus.callsOf('StartUnit')[0]?.body, ['a.service', 'replace']);
    assert.deepEqual(bus.callsOf('StopUnit')[0]?.body, ['b.service', 'replace']);
  });

  it('translates D-Bus errors once, with the D-Bus name in fields', async () => {
    const m = make();
    bus.errors.set('StartUnit', fail('org.freedesktop.systemd1.NoSuchUnit', 'Unit a.service not found.'));
    await assert.rejects(m.startUnit('a.service'), (err: unknown) => {
      assert.ok(err instanceof NotFoundError);
      assert.equal(err.fields['dbusError'], 'org.freedesktop.systemd1.NoSuchUnit');
      assert.equal(err.fields['unit'], 'a.service');
      return true;
    });
    bus.errors.set(
      'StartUnit',
      fail('org.freedesktop.DBus.Error.InvalidArgs', 'Unit name a.service is not valid.'),
    );
    await assert.rejects(m.startUnit('a.service'), ValidationError);
    bus.errors.set('StartUnit', fail('org.freedesktop.systemd1.TransactionIsDestructive', 'nope'));
    await assert.rejects(m.startUnit('a.service'), (err: unknown) => {
      assert.ok(err instanceof InternalError);
      assert.equal(err.fields['dbusError'], 'org.freedesktop.systemd1.TransactionIsDestructive');
      return true;
    });
    // stopping a unit systemd does not know is already done
    bus.errors.set('StopUnit', fail('org.freedesktop.systemd1.NoSuchUnit', 'Unit b.service not loaded.'));
    await m.stopUnit('b.service');
  });

  it('unload: stop each, ONE DisableUnitFiles(runtime), reset-failed the failed ones (errors ignored), files removed', async () => {
    const m = make();
    await m.writeAndLink([svc('a.service'), svc('b.service'), svc('d.service')]);
    bus.units.set('a.service', ['loaded', 'deactivating', 'stop']);
    bus.units.set('b.service', ['loaded', 'failed', 'failed']);
    bus.units.set('d.service', ['loaded', 'failed', 'failed']);
    bus.calls.length = 0;
    bus.errors.set('ResetFailedUnit', fail('org.freedesktop.systemd1.NoSuchUnit', 'not loaded', 'b.service'));
    bus.errors.set('StopUnit', fail('org.freedesktop.systemd1.NoSuchUnit', 'not loaded', 'c.service'));
    await m.unload(['a.service', 'b.service', 'c.service', 'd.service']);
    assert.equal(bus.count('StopUnit'), 4);
    assert.deepEqual(
      bus.callsOf('DisableUnitFiles').map((c) => c.body),
      [[['a.service', 'b.service', 'd.service'], true]],
      'c.service has no file here: not ours, not disabled',
    );
    assert.equal(bus.count('ListUnitsByNames'), 1);
    assert.deepEqual(
      bus.callsOf('ResetFailedUnit').map((c) => c.body[0]),
      ['b.service', 'd.service'],
    );
    assert.equal(bus.count('Reload'), 0, 'the caller reloads once');
    assert.deepEqual([...(await m.readUnitFiles()).keys()], []);
  });

  it('unload: a name DisableUnitFiles does not know falls back to one call per name', async () => {
    const m = make();
    // z.service has a file, but its link was removed behind our back
    await m.writeAndLink([svc('a.service'), svc('z.service')]);
    bus.calls.length = 0;
    // systemd fails the whole batch for one unknown name
    bus.errors.set('DisableUnitFiles', (body) =>
      (body[0] as string[]).includes('z.service')
        ? ['org.freedesktop.systemd1.NoSuchUnit', 'no z']
        : undefined,
    );
    await m.unload(['a.service', 'z.service']);
    assert.deepEqual(
      bus.callsOf('DisableUnitFiles').map((c) => c.body[0]),
      [['a.service', 'z.service'], ['a.service'], ['z.service']],
    );
    assert.deepEqual([...(await m.readUnitFiles()).keys()], []);
  });

  it('unload: a unit whose stop failed keeps its file; the error is rethrown', async () => {
    const m = make();
    await m.writeAndLink([svc('a.service'), svc('b.service')]);
    bus.errors.set('StopUnit', fail('org.freedesktop.systemd1.TransactionIsDestructive', 'no', 'b.service'));
    await assert.rejects(m.unload(['a.service', 'b.service']), InternalError);
    assert.deepEqual([...(await m.readUnitFiles()).keys()], ['b.service']);
    assert.deepEqual(
      bus.callsOf('DisableUnitFiles').map((c) => c.body),
      [[['a.service'], true]],
    );
  });

  it('statuses: ONE ListUnitsByNames; unknown units are not-found', async () => {
    const m = make();
    bus.units.set('a.service', ['loaded', 'active', 'running']);
    const s = await m.statuses(['a.service', 'x.service', 'a.service']);
    assert.equal(bus.count('ListUnitsByNames'), 1);
    assert.deepEqual(bus.callsOf('ListUnitsByNames')[0]?.body, [['a.service', 'x.service']]);
    assert.deepEqual(s.get('a.service'), {
      name: 'a.service',
      loadState: 'loaded',
      activeState: 'active',
      subState: 'running',
    });
    assert.equal(s.get('x.service')?.loadState, 'not-found');
    assert.equal(await m.mainPID('a.service'), 4242);
    assert.equal((await m.statuses([])).size, 0);
  });

  it('watch: one batched baseline, then signals; partial signals coalesce into one ListUnitsByNames', async () => {
    const m = make();
    const r = recorder();
    for (const n of ['a.service', 'b.service', 'c.service']) bus.units.set(n, ['loaded', 'inactive', 'dead']);
    m.watch(new Set(['a.service', 'b.service', 'c.service']), r.listener);
    await eventually(() => r.seen.length === 3, { timeoutMs: 2000 });
    assert.equal(bus.count('ListUnitsByNames'), 1, 'baseline in one call');

    // full signal: no call
    bus.propertiesChanged('a.service', { ActiveState: 'active', SubState: 'running' });
    await eventually(() => r.seen.length === 4, { timeoutMs: 2000 });
    assert.deepEqual(r.seen.at(-1), {
      name: 'a.service',
      loadState: 'loaded',
      activeState: 'active',
      subState: 'running',
    });
    assert.equal(bus.count('ListUnitsByNames'), 1);

    // an unwatched unit's signal is ignored; repeated states are not re-reported
    bus.propertiesChanged('zzz.service', { ActiveState: 'active', SubState: 'running' });
    bus.propertiesChanged('a.service', { ActiveState: 'active', SubState: 'running' });

    // invalidated-only signals for two units: one fetch for both
    bus.units.set('b.service', ['loaded', 'failed', 'failed']);
    bus.units.set('c.service', ['loaded', 'active', 'exited']);
    bus.propertiesChanged('b.service', {}, ['ActiveState', 'SubState']);
    bus.propertiesChanged('c.service', {}, ['ActiveState']);
    await eventually(() => r.seen.length === 6, { timeoutMs: 2000 });
    assert.equal(bus.count('ListUnitsByNames'), 2);
    assert.deepEqual(bus.callsOf('ListUnitsByNames')[1]?.body, [['b.service', 'c.service']]);
    assert.deepEqual(
      r.seen.slice(4).map((s) => `${s.name} ${s.activeState}/${s.subState}`),
      ['b.service failed/failed', 'c.service active/exited'],
    );
  });

  it('a reply followed at once by a newer signal: the newer state wins (dbus-next hands replies over later)', async () => {
    const m = make();
    const r = recorder();
    bus.units.set('a.service', ['loaded', 'inactive', 'dead']);
    // The baseline answer says inactive; the unit starts right after and its signal follows the
    // answer on the wire, in the same read.
    bus.trailing.set('ListUnitsByNames', () => {
      bus.units.set('a.service', ['loaded', 'active', 'running']);
      return [
        bus.propertiesChangedData('a.service', {
          LoadState: 'loaded',
          ActiveState: 'active',
          SubState: 'running',
        }),
      ];
    });
    m.watch(new Set(['a.service']), r.listener);
    await eventually(() => bus.count('ListUnitsByNames') > 0 && r.seen.length > 0, { timeoutMs: 2000 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const last = r.seen.at(-1);
    assert.equal(`${last?.activeState}/${last?.subState}`, 'active/running', JSON.stringify(r.seen));
  });

  it('watch: Reloading(false) resyncs every watched unit in ONE call; unwatching stops reports', async () => {
    const m = make();
    const r = recorder();
    bus.units.set('a.service', ['loaded', 'active', 'running']);
    bus.units.set('b.service', ['loaded', 'active', 'running']);
    m.watch(new Set(['a.service', 'b.service']), r.listener);
    await eventually(() => r.seen.length === 2, { timeoutMs: 2000 });
    bus.units.set('b.service', ['not-found', 'inactive', 'dead']);
    await m.reload();
    await eventually(() => r.seen.length === 3, { timeoutMs: 2000 });
    assert.deepEqual(r.seen.at(-1), {
      name: 'b.service',
      loadState: 'not-found',
      activeState: 'inactive',
      subState: 'dead',
    });
    assert.equal(bus.count('ListUnitsByNames'), 2);
    assert.deepEqual(bus.callsOf('ListUnitsByNames')[1]?.body, [['a.service', 'b.service']]);

    m.watch(new Set(['b.service']), r.listener);
    bus.propertiesChanged('a.service', { ActiveState: 'failed', SubState: 'failed' });
    bus.propertiesChanged('b.service', { ActiveState: 'active', SubState: 'running' });
    await eventually(() => r.seen.length === 4, { timeoutMs: 2000 });
    assert.equal(r.seen.at(-1)?.name, 'b.service');
  });

  it('an idle watcher makes no D-Bus calls', async () => {
    const m = make();
    const r = recorder();
    const names = new Set(Array.from({ length: 50 }, (_, i) => `u${i}.service`));
    m.watch(names, r.listener);
    await eventually(() => r.seen.length === 50, { timeoutMs: 2000 });
    const before = bus.calls.length;
    const countsBefore = m.callCounts();
    await new Promise((resolve) => setTimeout(resolve, 300)); // the window being measured, not a wait for an outcome
    assert.equal(bus.calls.length, before);
    assert.deepEqual(m.callCounts(), countsBefore);
  });

  it('a call that never gets an answer times out as UnavailableError', async () => {
    const m = make({ callTimeoutMs: 100 });
    await m.start();
    bus.hang.add('Reload');
    await assert.rejects(m.reload(), (err: unknown) => {
      assert.ok(err instanceof UnavailableError);
      assert.equal(err.fields['dbusError'], 'fleet.Bus.Timeout');
      return true;
    });
  });

  it('a dropped connection rejects pending calls, is reported, and the next call reconnects and resyncs', async () => {
    const disconnects: UnavailableError[] = [];
    const m = make({ onDisconnect: (e) => disconnects.push(e) });
    const r = recorder();
    bus.units.set('a.service', ['loaded', 'active', 'running']);
    m.watch(new Set(['a.service']), r.listener);
    await eventually(() => r.seen.length === 1, { timeoutMs: 2000 });
    bus.hang.add('Reload');
    const pending = m.reload();
    await eventually(() => bus.count('Reload') === 1, { timeoutMs: 2000 });
    bus.dropConnections();
    await assert.rejects(pending, UnavailableError);
    await eventually(() => disconnects.length === 1, { timeoutMs: 2000 });
    assert.equal(m.connected, false);

    bus.hang.clear();
    bus.units.set('a.service', ['loaded', 'failed', 'failed']);
    bus.calls.length = 0;
    await m.startUnit('b.service');
    assert.deepEqual(bus.members().slice(0, 4), ['Hello', 'AddMatch', 'AddMatch', 'Subscribe']);
    await eventually(() => r.seen.length === 2, { timeoutMs: 2000 });
    assert.equal(r.seen.at(-1)?.activeState, 'failed', 'changes missed while disconnected are caught up');
  });

  it('reconnect() re-establishes the connection explicitly', async () => {
    const m = make();
    await m.start();
    await m.reconnect();
    assert.equal(bus.count('Hello'), 2);
    assert.equal(bus.count('Subscribe'), 2);
    assert.equal(m.connected, true);
  });

  it('close: idempotent, never stops units, later calls are unavailable', async () => {
    const m = make();
    await m.start();
    m.watch(new Set(['a.service']), () => undefined);
    await m.close();
    await m.close();
    assert.equal(bus.count('StopUnit'), 0);
    await assert.rejects(m.startUnit('a.service'), UnavailableError);
  });

  it('a throwing listener is logged, not fatal', async () => {
    const m = make();
    bus.units.set('a.service', ['loaded', 'active', 'running']);
    m.watch(new Set(['a.service']), () => {
      throw new Error('listener bug');
    });
    await eventually(() => logs.some((l) => l.includes('listener bug')), { timeoutMs: 2000 });
    await m.statuses(['a.service']);
  });
});
