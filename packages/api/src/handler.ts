import type { IncomingMessage, ServerResponse } from 'node:http';
import { METRICS_CONTENT_TYPE, isFleetError, type Metrics } from '@fleet/core';
import type { Registry } from '@fleet/registry';
import type { ApiContext, RequestContext, Route } from './context.js';
import { discoveryDocument } from './discovery.js';
import {
  ClientGoneError,
  DEFAULT_MAX_BODY_BYTES,
  HttpError,
  clip,
  responseClosed,
  sendError,
  sendJson,
} from './http.js';
import { listMachines, patchMachines } from './machines.js';
import { ClusterMirror } from './mirror.js';
import { PageSnapshots } from './paging.js';
import { getState, listStates } from './states.js';
import { unitJournal, unitStatus } from './unit-commands-route.js';
import type { UnitCommands } from './unit-commands.js';
import { deleteUnit, getUnit, listUnits, putUnit } from './units.js';

/** What the API server needs. Everything but the registry and version has a default. */
export interface ApiDeps {
  readonly registry: Registry;
  /** fleetd's version, sent as `Server: fleetd/<version>` and shown in discovery. */
  readonly version: string;
  /** Page size of every listing (fleet's `token_limit`). @default 100 */
  readonly tokenLimit?: number;
  /** Where request counts and latencies are recorded; `/metrics` renders it. No `/metrics` without it. */
  readonly metrics?: Metrics;
  /** Runs status/journal for the `x-unit-commands` routes; they answer 501 without it. */
  readonly unitCommands?: UnitCommands;
  /** Largest request body accepted, in bytes. @default 1048576 */
  readonly maxBodyBytes?: number;
  /** Receives one line per unexpected failure (5xx). @default writes to stderr */
  readonly log?: (message: string) => void;
  /**
   * How long the first page of a listing is kept for the pages after it, in
   * ms (see docs/api.md, paging). 0 re-reads every page, as fleet did.
   * @default 5000
   */
  readonly pageSnapshotTtlMs?: number;
  /**
   * A path prefix in front of `/fleet/v1/` (for a proxy that forwards
   * `http://h:p/prefix/fleet/v1/…` unchanged). @default ''
   */
  readonly basePath?: string;
}

const ONLY_GET = { status: 405, message: 'only GET supported against this resource' };

/** The resources under `/fleet/v1/` (and `/v1-alpha/`), with fleet's texts for wrong methods. */
const ROUTES: readonly Route[] = [
  { id: 'units', pattern: ['units'], methods: { GET: listUnits }, wrongMethod: ONLY_GET },
  {
    id: 'unit',
    pattern: ['units', null],
    methods: { GET: getUnit, PUT: putUnit, DELETE: deleteUnit },
    wrongMethod: { status: 405, message: 'only GET, PUT and DELETE supported against this resource' },
  },
  { id: 'states', pattern: ['state'], methods: { GET: listStates }, wrongMethod: ONLY_GET },
  { id: 'state', pattern: ['state', null], methods: { GET: getState }, wrongMethod: ONLY_GET },
  {
    id: 'machines',
    pattern: ['machines'],
    methods: { GET: listMachines, PATCH: patchMachines },
    wrongMethod: { status: 405, message: 'only GET and PATCH supported against this resource' },
  },
  {
    id: 'unit_status',
    pattern: ['x-unit-commands', null, 'status'],
    methods: { GET: unitStatus },
    wrongMethod: ONLY_GET,
  },
  {
    id: 'unit_journal',
    pattern: ['x-unit-commands', null, 'journal'],
    methods: { GET: unitJournal },
    wrongMethod: ONLY_GET,
  },
];

/** Both roots fleet served; the legacy one answers exactly like the current one. */
const API_ROOTS = ['/fleet/v1', '/v1-alpha'];

const KNOWN_METHODS: ReadonlySet<string> = new Set([
  'GET',
  'PUT',
  'DELETE',
  'PATCH',
  'POST',
  'HEAD',
  'OPTIONS',
]);

/** Splits a request target into its raw path and query, whatever form the client used. */
function splitTarget(target: string): { path: string; query: string } {
  let t = target;
  if (!t.startsWith('/')) {
    // absolute-form (`GET http://host/fleet/v1/units`): only its path and query matter.
    try {
      const u = new URL(t);
      t = `${u.pathname}${u.search}`;
    } catch {
      return { path: '', query: '' };
    }
  }
  const q = t.indexOf('?');
  return q === -1 ? { path: t, query: '' } : { path: t.slice(0, q), query: t.slice(q + 1) };
}

interface Match {
  readonly route: Route | undefined;
  readonly id: string;
  readonly params: string[];
}

/** Finds the route for a raw path; percent-decodes its parameters. @throws HttpError 400 for bad encoding */
function matchRoute(rawPath: string, basePath: string): Match {
  const notFound: Match = { route: undefined, id: 'unknown', params: [] };
  if (!rawPath.startsWith(basePath)) return notFound;
  const path = rawPath.slice(basePath.length);
  if (path === '/metrics') return { route: undefined, id: 'metrics', params: [] };
  const root = API_ROOTS.find((r) => path.startsWith(`${r}/`));
  if (root === undefined) return notFound;
  const segments = path.slice(root.length + 1).split('/');
  // A trailing slash on a resource is tolerated (`units/`).
  if (segments.length > 1 && segments[segments.length - 1] === '') segments.pop();
  if (segments.length === 1 && segments[0] === 'discovery')
    return { route: undefined, id: 'discovery', params: [] };
  for (const route of ROUTES) {
    if (route.pattern.length !== segments.length) continue;
    if (!route.pattern.every((p, i) => p === null || p === segments[i])) continue;
    const params: string[] = [];
    route.pattern.forEach((p, i) => {
      if (p !== null) return;
      try {
        params.push(decodeURIComponent(segments[i] as string));
      } catch {
        throw new HttpError(
          400,
          `invalid percent-encoding in path segment ${JSON.stringify(clip(segments[i] as string))}`,
        );
      }
    });
    return { route, id: route.id, params };
  }
  return notFound;
}

/** Instruments the handler records into, when a Metrics registry is given. */
function instruments(metrics: Metrics) {
  return {
    requests: metrics.counter({
      name: 'fleet_api_requests_total',
      help: 'HTTP API requests answered, by route, method and status code.',
      labelNames: ['route', 'method', 'code'],
    }),
    duration: metrics.histogram({
      name: 'fleet_api_request_duration_seconds',
      help: 'HTTP API request latency in seconds, by route and method.',
      labelNames: ['route', 'method'],
    }),
    inFlight: metrics.gauge({
      name: 'fleet_api_requests_in_flight',
      help: 'HTTP API requests being served.',
    }),
  };
}

/**
 * fleet's HTTP API v1 as a node:http request listener (fleet-compat §6; see
 * docs/api.md). The caller owns the listeners (see {@link ApiServer}). No
 * request can make it throw: every failure becomes a JSON error answer, and
 * an unexpected one is logged and answered `500 internal error`.
 */
/** The request handler, with `close()` to stop its background work (the listing mirror's watch). */
export interface ApiHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  close(): Promise<void>;
}

export function createApiHandler(deps: ApiDeps): ApiHandler {
  const serverHeader = `fleetd/${deps.version}`;
  if (!/^[\x20-\x7e]*$/.test(serverHeader)) {
    throw new Error(`version ${JSON.stringify(deps.version)} cannot be sent in a Server header`);
  }
  const tokenLimit = deps.tokenLimit ?? 100;
  if (!Number.isInteger(tokenLimit) || tokenLimit < 1 || tokenLimit > 0xffff) {
    throw new Error(`tokenLimit must be an integer from 1 to 65535, got ${tokenLimit}`);
  }
  const log =
    deps.log ??
    ((message: string) => {
      process.stderr.write(`${message}\n`);
    });
  const api: ApiContext = {
    registry: deps.registry,
    tokenLimit,
    maxBodyBytes: deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    snapshots: new PageSnapshots(deps.pageSnapshotTtlMs ?? 5000),
    mirror: new ClusterMirror(deps.registry, { log }),
    unitCommands: deps.unitCommands,
    log,
  };
  const basePath = (deps.basePath ?? '').replace(/\/+$/, '');
  const metrics = deps.metrics;
  const inst = metrics === undefined ? undefined : instruments(metrics);
  const discovery = discoveryDocument(deps.version);

  const serve = async (
    req: IncomingMessage,
    res: ServerResponse,
    onRoute: (id: string) => void,
  ): Promise<void> => {
    res.setHeader('Server', serverHeader);
    const method = req.method ?? '';
    const { path, query: rawQuery } = splitTarget(req.url ?? '');
    const match = matchRoute(path, basePath);
    onRoute(match.id);
    const query = new URLSearchParams(rawQuery);
    const alt = query.get('alt');
    if (alt !== null && alt !== 'json') {
      throw new HttpError(400, `unsupported alt ${JSON.stringify(clip(alt, 40))}: only json is served`);
    }
    if (match.id === 'metrics') {
      if (metrics === undefined) throw new HttpError(404, 'metrics are not enabled on this fleetd');
      if (method !== 'GET')
        throw new HttpError(405, 'only GET supported against this resource', { Allow: 'GET' });
      const text = metrics.render();
      res.statusCode = 200;
      res.setHeader('Content-Type', METRICS_CONTENT_TYPE);
      res.setHeader('Content-Length', Buffer.byteLength(text));
      res.end(text);
      return;
    }
    if (match.id === 'discovery') {
      // fleet answered 400, not 405, for a wrong method here.
      if (method !== 'GET') throw new HttpError(400, 'only GET supported against this resource');
      sendJson(res, 200, discovery);
      return;
    }
    const route = match.route;
    if (route === undefined) throw new HttpError(404, `no such resource: ${clip(path)}`);
    const handler = route.methods[method];
    if (handler === undefined) {
      throw new HttpError(route.wrongMethod.status, route.wrongMethod.message, {
        Allow: Object.keys(route.methods).join(', '),
      });
    }
    const rc: RequestContext = { req, res, query, params: match.params };
    await handler(api, rc);
  };

  const answerFailure = (req: IncomingMessage, res: ServerResponse, err: unknown): void => {
    if (err instanceof ClientGoneError) {
      res.destroy();
      return;
    }
    if (responseClosed(res)) {
      // Too late to answer: the failure can only be logged.
      log(`api: ${req.method} ${clip(req.url ?? '')}: failed after answering: ${describe(err)}`);
      return;
    }
    if (err instanceof HttpError) {
      sendError(res, err.status, err.message, err.headers);
      return;
    }
    if (isFleetError(err)) {
      switch (err.kind) {
        case 'validation':
          sendError(res, 400, err.message);
          return;
        case 'not-found':
          sendError(res, 404, err.message);
          return;
        case 'conflict':
          sendError(res, 409, err.message);
          return;
        case 'unavailable':
          // "cannot reach etcd at …" from the registry, or a machine that did not answer.
          sendError(res, 503, err.message, { 'Retry-After': '1' });
          return;
        case 'internal':
          break;
      }
    }
    log(`api: ${req.method} ${clip(req.url ?? '')}: internal error: ${describe(err)}`);
    sendError(res, 500, 'internal error');
  };

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const started = process.hrtime.bigint();
    let routeId = 'unknown';
    const methodLabel = KNOWN_METHODS.has(req.method ?? '') ? (req.method as string) : 'other';
    // Errors on the sockets themselves (client reset) are not ours to throw.
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    if (inst !== undefined) {
      inst.inFlight.inc();
      res.once('close', () => {
        inst.inFlight.dec();
        const code = res.writableFinished ? String(res.statusCode) : 'aborted';
        inst.requests.inc({ route: routeId, method: methodLabel, code });
        inst.duration.observe(
          { route: routeId, method: methodLabel },
          Number(process.hrtime.bigint() - started) / 1e9,
        );
      });
    }
    serve(req, res, (id) => (routeId = id))
      .catch((err: unknown) => answerFailure(req, res, err))
      .catch((err: unknown) => {
        // Last resort: answering the failure failed too. Never let it escape.
        try {
          log(`api: could not answer ${req.method} ${clip(req.url ?? '')}: ${describe(err)}`);
          res.destroy();
        } catch {
          // nothing left to do
        }
      });
  };
  return Object.assign(handler, { close: () => api.mirror.close() });
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.stack ?? `${err.name}: ${err.message}`;
  return String(err);
}
