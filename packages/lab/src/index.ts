/**
 * fleet-lab: real multi-machine clusters on one host (etcd plus machines that
 * each run their own systemd in their own namespaces), for tests, the demo and
 * benchmarks. See docs/lab.md.
 */
export {
  type AddMachineOptions,
  Cluster,
  type ClusterDescription,
  type ClusterListing,
  Machine,
  type MachineRef,
  type MachineSpec,
  type StartClusterOptions,
  type StopEtcdOptions,
  destroyCluster,
  listClusters,
  openCluster,
  startCluster,
} from './cluster.js';
export { type ExecOptions, MACHINE_EXEC_ENV } from './machine.js';
export type { RunResult } from './proc.js';
export { BOOT_TARGET, ENV_FILE, MASKED_UNITS } from './seed.js';
export type { MachineStatus } from './state.js';
export {
  FLEETD_MAIN,
  FLEETD_NODE_FLAGS,
  REPO_ROOT,
  fleetdEndpoint,
  fleetdServiceText,
  waitForFleetd,
  type FleetdServiceOptions,
} from './fleetd.js';
