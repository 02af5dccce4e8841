// A seeded Random for reproducible runs: the benchmarks, the njs/Node equivalence spec, and any
// simulation that must replay exactly. The gateways inject Math.random instead.

import type { Random } from './types';

/** Marsaglia's xorshift32: tiny, fast, identical under Node and njs. Not for anything secret. */
export function createSeededRandom(seed: number): Random {
  let state = seed >>> 0 || 1;
  return {
    next: () => {
      state ^= state << 13;
      state >>>= 0;
      state ^= state >>> 17;
      state ^= state << 5;
      state >>>= 0;
      return state / 4294967296;
    },
  };
}
