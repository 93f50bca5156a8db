export * from './agent.js';
export * from './reconcile.js';
export * from './unit-manager.js';
