import { VERSION } from '@fleet/core';

/** fleetctl's version: core's VERSION, the one source shared with fleetd and the API. */
export const FLEETCTL_VERSION: string = VERSION;
