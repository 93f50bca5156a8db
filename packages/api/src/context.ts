import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from '@fleet/registry';
import type { ClusterMirror } from './mirror.js';
import type { PageSnapshots } from './paging.js';
import type { UnitCommands } from './unit-commands.js';

/** What every route handler gets: the server's dependencies, defaulted. */
export interface ApiContext {
  readonly registry: Registry;
  readonly tokenLimit: number;
  readonly maxBodyBytes: number;
  readonly snapshots: PageSnapshots;
  /** Listings come from this watch-backed copy of the keyspace (started on the first one). */
  readonly mirror: ClusterMirror;
  readonly unitCommands: UnitCommands | undefined;
  readonly log: (message: string) => void;
}

/** One request, with its path parameters already percent-decoded. */
export interface RequestContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly query: URLSearchParams;
  readonly params: readonly string[];
}

export type RouteHandler = (api: ApiContext, rc: RequestContext) => Promise<void>;

/** One resource: its path, its methods, and what a wrong method gets (fleet's texts). */
export interface Route {
  /** Label for metrics: a template, never a raw path. */
  readonly id: string;
  /** Literal segments, and `null` for a parameter. */
  readonly pattern: readonly (string | null)[];
  readonly methods: Readonly<Partial<Record<string, RouteHandler>>>;
  readonly wrongMethod: { readonly status: number; readonly message: string };
}
