/**
 * fleet's HTTP API v1, as served by fleetd: a request handler over the
 * Registry, the listeners for it, and the unit-command hook behind ours
 * `x-unit-commands` routes. See docs/api.md.
 */
export { createApiHandler, type ApiDeps, type ApiHandler } from './handler.js';
export { ClusterMirror, type ClusterMirrorOptions, type ClusterView } from './mirror.js';
export {
  ApiServer,
  isLoopbackHost,
  type ApiServerOptions,
  type TcpListenOptions,
  type TlsListenOptions,
  type UnixListenOptions,
} from './server.js';
export {
  JOURNAL_OUTPUT_MODES,
  MAX_JOURNAL_LINES,
  localUnitCommands,
  validateJournalOptions,
  type CommandOutput,
  type JournalOptions,
  type LocalUnitCommandsOptions,
  type UnitCommands,
} from './unit-commands.js';
export { currentStateOn, type MachineJson, type UnitJson, type UnitStateJson } from './views.js';
