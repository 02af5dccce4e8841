// The njs side of the core's injected dependencies: the real clock and random source.
// (shared/ may not touch Date or Math.random; adapters may.)

import type { Clock, Random } from '../../shared/types';

export const systemClock: Clock = { now: () => Date.now() };
export const systemRandom: Random = { next: () => Math.random() };
