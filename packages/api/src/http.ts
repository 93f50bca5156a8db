import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * HTTP plumbing shared by every route: an error type that carries its status
 * code, fleet's JSON error envelope, JSON responses and a bounded body reader.
 */

/** An error that is already an HTTP answer (status, message, extra headers). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** Default bound of a request body: 1 MiB (a unit body is limited by its lines, not by this). */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** True once nothing more can be written (answered already, or the client went away). */
export function responseClosed(res: ServerResponse): boolean {
  return res.headersSent || res.writableEnded || res.destroyed;
}

/**
 * Sends `body` as JSON with a trailing newline (as Go's json.Encoder writes
 * it). Keys appear in the order the object was built in; callers build
 * objects in fleet's field order.
 */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  if (responseClosed(res)) return;
  const text = `${JSON.stringify(body)}\n`;
  res.statusCode = status;
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

/** An answer without a body (201 Created, 204 No Content). */
export function sendEmpty(res: ServerResponse, status: number): void {
  if (responseClosed(res)) return;
  res.statusCode = status;
  if (status !== 204) res.setHeader('Content-Length', 0);
  res.end();
}

/** fleet's error envelope: `{"error":{"code":404,"message":"unit does not exist"}}`. */
export function sendError(
  res: ServerResponse,
  status: number,
  message: string,
  headers: Readonly<Record<string, string>> = {},
): void {
  sendJson(res, status, { error: { code: status, message } }, headers);
}

/**
 * Checks that a request body is declared as JSON. Accepts parameters (such as
 * `charset=utf-8`) as long as a charset, if given, is UTF-8.
 * @throws HttpError 415
 */
export function requireJsonContentType(req: IncomingMessage): void {
  const header = req.headers['content-type'];
  const [type = '', ...params] = (header ?? '').split(';').map((s) => s.trim());
  if (type.toLowerCase() !== 'application/json') {
    throw new HttpError(
      415,
      header === undefined
        ? 'missing Content-Type; expected application/json'
        : `unsupported Content-Type ${JSON.stringify(clip(header))}; expected application/json`,
    );
  }
  for (const p of params) {
    const eq = p.indexOf('=');
    if (eq === -1 || p.slice(0, eq).trim().toLowerCase() !== 'charset') continue;
    const charset = p
      .slice(eq + 1)
      .trim()
      .replace(/^"(.*)"$/, '$1')
      .toLowerCase();
    if (charset !== 'utf-8' && charset !== 'utf8') {
      throw new HttpError(415, `unsupported charset ${JSON.stringify(clip(charset))}; expected utf-8`);
    }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads the whole body as UTF-8, refusing more than `maxBytes` (413) and
 * bytes that are not UTF-8 (400). Rejects if the client aborts.
 */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    return Promise.reject(tooLarge(maxBytes));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err: Error | undefined, text?: string): void => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
      if (err) {
        // Discard whatever else arrives; the answer says why we stopped reading.
        req.resume();
        reject(err);
      } else resolve(text ?? '');
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) finish(tooLarge(maxBytes));
      else chunks.push(chunk);
    };
    const onEnd = (): void => {
      try {
        finish(undefined, utf8.decode(Buffer.concat(chunks)));
      } catch {
        finish(new HttpError(400, 'unable to decode body: not valid UTF-8'));
      }
    };
    const onError = (err: Error): void => finish(new ClientGoneError(err.message));
    const onAborted = (): void => finish(new ClientGoneError('request aborted'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

function tooLarge(maxBytes: number): HttpError {
  // The rest of the body is not read: close the connection after answering.
  return new HttpError(413, `request body too large: the limit is ${maxBytes} bytes`, {
    Connection: 'close',
  });
}

/** The client went away while we read its request; nothing can be answered. */
export class ClientGoneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClientGoneError';
  }
}

/** Shortens user input quoted in an error message. */
export function clip(s: string, max = 200): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}
