export * from './errors.js';
export * from './glob.js';
export * from './metrics.js';
export * from './requirements.js';
export * from './unit-file.js';
export * from './unit-name.js';
export * from './wire.js';
export * from './version.js';
