export * from './agent.js';
export * from './reconcile.js';
export * from './unit-manager.js';
export * from './fake-unit-manager.js';
export * from './systemd-manager.js';
