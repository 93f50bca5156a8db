export * from './args.js';
export * from './config.js';
export * from './fleetd.js';
export * from './identity.js';
export * from './idle-gc.js';
export * from './listeners.js';
export * from './presence.js';
