export * from './decide.js';
export * from './engine.js';
