// The in-memory Store: a plain object of numbers, so state is JSON-serialisable as it is.
// Kong's adapter keeps one per plugin-server process; tests use it with a fake clock.

import type { Store } from './types';

export interface MemoryStore extends Store {
  /** A JSON-serialisable copy of every key. */
  dump(): Record<string, number>;
}

export function createMemoryStore(initial?: Record<string, number>): MemoryStore {
  const data: Record<string, number> = Object.create(null);
  if (initial) {
    const keys = Object.keys(initial);
    for (let i = 0; i < keys.length; i++) data[keys[i]] = initial[keys[i]];
  }
  return {
    get: (key) => data[key],
    set: (key, value) => {
      data[key] = value;
    },
    incr: (key, delta, init) => {
      const current = data[key];
      const next = (current === undefined ? (init ?? 0) : current) + delta;
      data[key] = next;
      return next;
    },
    delete: (key) => {
      delete data[key];
    },
    dump: () => {
      const copy: Record<string, number> = {};
      const keys = Object.keys(data);
      for (let i = 0; i < keys.length; i++) copy[keys[i]] = data[keys[i]];
      return copy;
    },
  };
}
