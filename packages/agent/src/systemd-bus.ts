/**
 * A narrow, typed wrapper over dbus-next's low-level API: one connection, raw
 * method calls (`bus.call(new Message(…))`, no per-object introspection) and a
 * stream of signals. It is the one place that knows dbus-next's quirks, and the
 * boundary where D-Bus failures become @fleet/core errors (see {@link translateBusError}):
 *
 * - A failed `Hello` makes dbus-next throw inside a `.catch` — an unhandled
 *   rejection that would crash the process even with an `error` listener. The
 *   bus class is subclassed so that the Hello promise never rejects; the
 *   failure is reported through the connect promise instead.
 * - dbus-next never settles calls that are pending when the connection drops,
 *   and has no call timeout. Every call here is tracked: it rejects with an
 *   UnavailableError when the stream closes or after `callTimeoutMs`.
 * - Late `error` events (writes to a closed stream) are always listened to.
 * - Messages are numbered in the order they arrive ({@link BusSignal.seq},
 *   {@link SystemdBus.callOrdered}): dbus-next dispatches a signal at once but
 *   hands a reply over through a promise, so a reply that arrived *before* a
 *   signal is seen *after* it. Whoever mixes replies and signals about the
 *   same state needs the arrival order to keep the newer one.
 */
import { createRequire } from 'node:module';
import {
  InternalError,
  NotFoundError,
  UnavailableError,
  ValidationError,
  errorMessage,
  type FleetError,
} from '@fleet/core';

// dbus-next is CommonJS and its bundled types do not cover the pieces used
// here (the MessageBus class and the connection factory), so they are loaded
// through require and typed narrowly below.
const require = createRequire(import.meta.url);

/** Fields of a D-Bus message this module reads or writes. */
interface RawMessage {
  type: number;
  serial: number | null;
  replySerial?: number;
  path?: string;
  interface?: string;
  member?: string;
  errorName?: string;
  signature?: string;
  body: unknown[];
}

interface RawMessageInit {
  destination: string;
  path: string;
  interface: string;
  member: string;
  signature?: string;
  body?: unknown[];
}

interface RawStream {
  destroyed: boolean;
  on(event: 'close', listener: () => void): unknown;
  destroy(): void;
}

interface RawConnection {
  stream: RawStream;
}

interface RawBus {
  _methodReturnHandlers: Record<number, unknown>;
  call(msg: RawMessage): Promise<RawMessage | null>;
  on(event: string, listener: (...args: never[]) => void): unknown;
  once(event: string, listener: (...args: never[]) => void): unknown;
  emit(event: string, ...args: unknown[]): boolean;
}

interface RawDBusError extends Error {
  type: string;
  text: string;
}

const { Message, DBusError } = require('dbus-next') as {
  Message: new (init: RawMessageInit) => RawMessage;
  DBusError: new (type: string, text: string) => RawDBusError;
};
const MessageBus = require('dbus-next/lib/bus.js') as new (connection: RawConnection) => RawBus;
const createConnection = require('dbus-next/lib/connection.js') as (options: {
  busAddress: string;
}) => RawConnection;

const METHOD_RETURN = 2;
const ERROR = 3;
const SIGNAL = 4;

/** Arrival order of every message on every connection of this process. */
let arrivals = 0;
const HELLO_FAILED = 'fleet:hello-failed';

/** dbus-next's bus, except that a failed Hello never becomes an unhandled rejection. */
class HelloSafeBus extends MessageBus {
  override call(msg: RawMessage): Promise<RawMessage | null> {
    const reply = super.call(msg);
    // Only the constructor sends Hello; its rejection handler rethrows, so
    // hand it a promise that never rejects and report the failure as an event.
    if (msg.member !== 'Hello' || msg.interface !== 'org.freedesktop.DBus') return reply;
    return new Promise((resolve) => {
      reply.then(resolve, (err: unknown) => {
        this.emit(HELLO_FAILED, err);
      });
    });
  }
}

/** A signal as delivered to {@link BusOptions.onSignal}. */
export interface BusSignal {
  readonly path: string;
  readonly interface: string;
  readonly member: string;
  readonly body: readonly unknown[];
  /** Arrival order among all messages (signals and replies) of this process. */
  readonly seq: number;
}

/** One method call. */
export interface BusCall {
  readonly destination: string;
  readonly path: string;
  readonly interface: string;
  readonly member: string;
  /** D-Bus signature of `body`, e.g. `asbb`. */
  readonly signature?: string;
  readonly body?: readonly unknown[];
  /** Context added to a translated error's fields (unit names …). */
  readonly fields?: Readonly<Record<string, unknown>>;
}

export interface BusOptions {
  /** D-Bus address, e.g. `unix:path=/run/dbus/system_bus_socket`. */
  readonly address: string;
  /** Deadline for connecting (socket, auth, Hello) and for each call's reply. */
  readonly timeoutMs: number;
  readonly onSignal: (signal: BusSignal) => void;
  /** Called once when the connection is lost (not after {@link SystemdBus.close}). */
  readonly onDisconnect: (error: UnavailableError) => void;
  readonly log: (message: string) => void;
}

/** A synthetic D-Bus error name for failures that never reached the bus. */
const CONNECTION_CLOSED = 'fleet.Bus.ConnectionClosed';
const CALL_TIMEOUT = 'fleet.Bus.Timeout';
const CONNECT_FAILED = 'fleet.Bus.ConnectFailed';

const UNAVAILABLE_ERRORS: ReadonlySet<string> = new Set([
  CONNECTION_CLOSED,
  CALL_TIMEOUT,
  CONNECT_FAILED,
  'org.freedesktop.DBus.Error.Disconnected',
  'org.freedesktop.DBus.Error.NoReply',
  'org.freedesktop.DBus.Error.Timeout',
  'org.freedesktop.DBus.Error.TimedOut',
  'org.freedesktop.DBus.Error.ServiceUnknown',
  'org.freedesktop.DBus.Error.NameHasNoOwner',
  'org.freedesktop.DBus.Error.NoServer',
  'org.freedesktop.DBus.Error.NoNetwork',
  'org.freedesktop.DBus.Error.LimitsExceeded',
  'org.freedesktop.DBus.Error.NoMemory',
  'org.freedesktop.systemd1.ShuttingDown',
]);

/** systemd's answers to a unit whose name or file is wrong: the caller's input, not a bug. */
const VALIDATION_ERRORS: ReadonlySet<string> = new Set([
  'org.freedesktop.DBus.Error.InvalidArgs',
  'org.freedesktop.systemd1.BadUnitSetting',
  'org.freedesktop.systemd1.LoadFailed',
]);

const NOT_FOUND_ERRORS: ReadonlySet<string> = new Set([
  'org.freedesktop.systemd1.NoSuchUnit',
  'org.freedesktop.DBus.Error.FileNotFound',
]);

/**
 * Translates anything a D-Bus call may throw into a FleetError whose fields
 * carry the D-Bus error name (`dbusError`) and the given context. FleetErrors
 * pass through unchanged.
 */
export function translateBusError(err: unknown, fields: Readonly<Record<string, unknown>> = {}): FleetError {
  if (err instanceof UnavailableError || err instanceof InternalError) return err;
  if (err instanceof ValidationError || err instanceof NotFoundError) return err;
  let name: string;
  let text: string;
  if (err instanceof DBusError) {
    name = err.type;
    text = err.text;
  } else {
    // dbus-next throws plain Errors when writing to a closed stream; anything
    // else (a marshalling error) is a bug in the caller.
    text = errorMessage(err);
    name = /closed stream|stream is closed/i.test(text) ? CONNECTION_CLOSED : 'fleet.Bus.LocalError';
  }
  const all = { ...fields, dbusError: name };
  const options = { fields: all, cause: err };
  if (UNAVAILABLE_ERRORS.has(name)) return new UnavailableError(`systemd is unavailable: ${text}`, options);
  if (NOT_FOUND_ERRORS.has(name)) return new NotFoundError(text, options);
  if (VALIDATION_ERRORS.has(name)) return new ValidationError(text, options);
  return new InternalError(`systemd D-Bus call failed: ${text}`, options);
}

function unavailable(name: string, message: string, fields: Readonly<Record<string, unknown>> = {}) {
  return new UnavailableError(message, { fields: { ...fields, dbusError: name } });
}

/** One connection to a D-Bus daemon. Create with {@link SystemdBus.connect}. */
export class SystemdBus {
  private readonly pending = new Set<(error: UnavailableError) => void>();
  /** Serial of each call awaiting a reply → the reply's arrival order, once it arrived. */
  private readonly replyArrivals = new Map<number, number>();
  private open = false;

  private constructor(
    private readonly raw: RawBus,
    private readonly stream: RawStream,
    private readonly options: BusOptions,
  ) {}

  /** Connects, authenticates and says Hello; rejects with an UnavailableError on failure or timeout. */
  static async connect(options: BusOptions): Promise<SystemdBus> {
    const fields = { address: options.address };
    let connection: RawConnection;
    try {
      connection = createConnection({ busAddress: options.address });
    } catch (err) {
      throw new UnavailableError(`cannot connect to D-Bus at ${options.address}: ${errorMessage(err)}`, {
        fields: { ...fields, dbusError: CONNECT_FAILED },
        cause: err,
      });
    }
    const raw = new HelloSafeBus(connection);
    const stream = connection.stream;
    // Not open (no calls, no signals) until Hello has been answered.
    const bus = new SystemdBus(raw, stream, options);
    let failConnect: ((err: unknown) => void) | undefined;
    // Listen for the whole lifetime: dbus-next emits `error` for late writes
    // to a closed stream, and an unheard `error` event throws.
    raw.on('error', (err: unknown) => {
      if (failConnect) failConnect(err);
      else options.log(`D-Bus connection error: ${errorMessage(err)}`);
    });
    raw.on('message', (msg: RawMessage) => {
      const seq = ++arrivals;
      if (msg.type === SIGNAL && bus.open) bus.deliver(msg, seq);
      else if ((msg.type === METHOD_RETURN || msg.type === ERROR) && msg.replySerial !== undefined) {
        if (bus.replyArrivals.has(msg.replySerial)) bus.replyArrivals.set(msg.replySerial, seq);
      }
    });
    stream.on('close', () => {
      if (failConnect) failConnect(new Error('connection closed'));
      else
        bus.closed(unavailable(CONNECTION_CLOSED, `D-Bus connection to ${options.address} closed`, fields));
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => fail(new Error(`no answer within ${options.timeoutMs} ms`)),
        options.timeoutMs,
      );
      const fail = (err: unknown) => {
        clearTimeout(timer);
        failConnect = undefined;
        stream.destroy();
        reject(
          new UnavailableError(`cannot connect to D-Bus at ${options.address}: ${errorMessage(err)}`, {
            fields: { ...fields, dbusError: CONNECT_FAILED },
            cause: err,
          }),
        );
      };
      failConnect = fail;
      raw.once(HELLO_FAILED, fail);
      raw.once('connect', () => {
        clearTimeout(timer);
        failConnect = undefined;
        bus.open = true;
        resolve();
      });
    });
    return bus;
  }

  get connected(): boolean {
    return this.open;
  }

  /** Sends one method call; resolves with the reply's body. Rejects only with FleetErrors. */
  call(spec: BusCall): Promise<unknown[]> {
    return this.callOrdered(spec).then((r) => r.body);
  }

  /**
   * Like {@link call}, also giving the reply's arrival order (comparable with
   * {@link BusSignal.seq}): a signal with a higher `seq` is newer than the reply.
   */
  callOrdered(spec: BusCall): Promise<{ body: unknown[]; seq: number }> {
    const fields = { ...spec.fields, member: spec.member };
    if (!this.open) {
      return Promise.reject(unavailable(CONNECTION_CLOSED, 'D-Bus connection is closed', fields));
    }
    const msg = new Message({
      destination: spec.destination,
      path: spec.path,
      interface: spec.interface,
      member: spec.member,
      signature: spec.signature ?? '',
      body: [...(spec.body ?? [])],
    });
    return new Promise<{ body: unknown[]; seq: number }>((resolve, reject) => {
      let settled = false;
      const settle = () => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        this.pending.delete(onClose);
        if (msg.serial !== null) this.replyArrivals.delete(msg.serial);
        return true;
      };
      const onClose = (error: UnavailableError) => {
        if (settle()) reject(new UnavailableError(error.message, { fields: { ...fields, ...error.fields } }));
      };
      const timer = setTimeout(() => {
        if (msg.serial !== null) delete this.raw._methodReturnHandlers[msg.serial];
        if (settle()) {
          reject(
            unavailable(
              CALL_TIMEOUT,
              `systemd did not answer ${spec.member} within ${this.options.timeoutMs} ms`,
              fields,
            ),
          );
        }
      }, this.options.timeoutMs);
      this.pending.add(onClose);
      const sent = this.raw.call(msg);
      // dbus-next assigned the serial while sending.
      if (msg.serial !== null) this.replyArrivals.set(msg.serial, 0);
      sent.then(
        (reply) => {
          const seq = msg.serial === null ? 0 : (this.replyArrivals.get(msg.serial) ?? 0);
          if (settle()) resolve({ body: reply?.body ?? [], seq });
        },
        (err: unknown) => {
          if (settle()) reject(translateBusError(err, fields));
        },
      );
    });
  }

  /** Closes the connection; pending calls reject with an UnavailableError. Idempotent. */
  close(): void {
    if (!this.open) return;
    this.rejectPending(unavailable(CONNECTION_CLOSED, 'D-Bus connection closed by the client'));
    this.open = false;
    this.stream.destroy();
  }

  private closed(error: UnavailableError): void {
    if (!this.open) return;
    this.open = false;
    this.rejectPending(error);
    this.options.onDisconnect(error);
  }

  private rejectPending(error: UnavailableError): void {
    const pending = [...this.pending];
    this.pending.clear();
    for (const reject of pending) reject(error);
  }

  private deliver(msg: RawMessage, seq: number): void {
    try {
      this.options.onSignal({
        path: msg.path ?? '',
        interface: msg.interface ?? '',
        member: msg.member ?? '',
        body: msg.body,
        seq,
      });
    } catch (err) {
      // dbus-next would answer a throwing handler with an error *reply*; a
      // signal handler's bug must not touch the bus.
      this.options.log(`D-Bus signal handler failed: ${errorMessage(err)}`);
    }
  }
}
