/** The version of fleetd, fleetctl and the API (one source for all of them). */
export const VERSION = '0.1.0';
