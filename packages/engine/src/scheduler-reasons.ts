/**
 * Why a task exists, one constant text per cause, so that every log line of
 * the executor explains the decision (as fleet's reconcilers did).
 */
export const REASONS = {
  // unschedule
  unitGone: 'unit no longer exists',
  unitInactive: 'unit is inactive',
  machineGone: 'machine is no longer live',
  duplicate: 'unit was scheduled on more than one machine',
  machineIDMismatch: 'machine does not match MachineID',
  metadataMismatch: 'machine does not satisfy MachineMetadata',
  conflict: 'conflicts with another unit on the machine',
  peerNotHere: 'MachineOf peer is not on the machine',
  machineOfCycle: 'MachineOf requirements form a cycle',
  replaced: 'machine taken by a unit that replaces it',
  invalid: "placement no longer satisfies the unit's requirements",
  // schedule
  placed: 'placed on the least-loaded eligible machine',
  pinned: 'placed on the machine named by MachineID',
  followsPeer: 'placed on the machine of its MachineOf peers',
  takesOver: 'placed on the machine of a unit it replaces',
  global: 'global unit placed on an eligible machine',
} as const;

/** A value of {@link REASONS}. */
export type Reason = (typeof REASONS)[keyof typeof REASONS];

/** Texts for {@link Decision.unplaced}: specific to the constraint that failed. */
export const UNPLACED = {
  noLiveMachines: 'no live machines',
  machineIDNotLive: (machineID: string): string => `MachineID=${machineID} is not a live machine`,
  waitingForPeer: (peer: string): string => `waiting for peer ${peer} to be placed`,
  machineOfCycle: (members: readonly string[]): string =>
    `MachineOf requirements form a cycle: ${members.join(', ')}`,
  peersApart: (a: string, b: string): string => `MachineOf peers ${a} and ${b} are not on one machine`,
  noMetadataMatch: (metadata: string): string => `no machine satisfies MachineMetadata=${metadata}`,
  pinnedMetadata: (machineID: string, metadata: string): string =>
    `machine ${machineID} does not satisfy MachineMetadata=${metadata}`,
  peerMetadata: (peer: string, metadata: string): string =>
    `the machine of peer ${peer} does not satisfy MachineMetadata=${metadata}`,
  pinnedPeer: (machineID: string, peer: string): string =>
    `peer ${peer} is not on the machine named by MachineID=${machineID}`,
  /** `where` is e.g. `every machine`, `every eligible machine`, `machine abc…`. */
  conflicts: (names: readonly string[], more: boolean, where: string): string =>
    names.length === 1 && !more
      ? `conflicts with ${names[0]} on ${where}`
      : `conflicts with units on ${where}: ${names.join(', ')}${more ? ', …' : ''}`,
  noEligibleMachine: 'no eligible machine',
} as const;
