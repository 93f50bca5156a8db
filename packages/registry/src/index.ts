export * from './cache.js';
export * from './election.js';
export * from './etcd-kv.js';
export * from './keyspace.js';
export * from './kv.js';
export * from './memory-kv.js';
export * from './records.js';
export * from './registry.js';
