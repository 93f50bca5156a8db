/**
 * The version of fleetd, fleetctl and the API: the one source for all of
 * them. Keep it equal to the root package.json's version (a test checks).
 */
export const VERSION = '0.1.0';
