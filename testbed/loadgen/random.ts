// Seeded randomness for the load generator. A trace must be identical for the same seed on any
// machine, so nothing here touches Math.random. Each concern (arrival times, request shapes, prompt
// text) draws from its own named stream derived from the seed: changing the mix then leaves the
// arrival times of the same seed and rate untouched, and the other way round.

/** A source of uniform numbers in [0, 1). */
export interface Random {
  next(): number;
}

/** 2^32: turns a 32-bit unsigned integer into a fraction in [0, 1). */
const UINT32_RANGE = 4294967296;

/**
 * Mulberry32 (Tommy Ettinger's 32-bit generator): one multiply-xorshift round per draw, passes
 * PractRand up to gigabytes, which is far beyond the 10^4–10^6 draws of a trace.
 * `stream` names an independent sequence for the same seed ('arrivals', 'requests', ...).
 */
export function createRandom(seed: number, stream = ''): Random {
  let state = mixSeed(seed, stream);
  return {
    next: () => {
      state = (state + 0x6d2b79f5) | 0; // Weyl sequence increment of mulberry32
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / UINT32_RANGE;
    },
  };
}

/**
 * FNV-1a over the decimal seed and the stream name, then murmur3's finaliser so that seeds 1 and 2
 * start far apart. Seeds are any finite number (fractions and negatives included).
 */
function mixSeed(seed: number, stream: string): number {
  if (!Number.isFinite(seed)) throw new RangeError(`seed must be a finite number, got ${seed}`);
  const text = String(seed) + '/' + stream;
  let hash = 0x811c9dc5; // FNV-1a 32-bit offset basis
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193); // FNV-1a 32-bit prime
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b); // murmur3 fmix32 constants
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash | 0;
}

/** An integer in [min, max], both inclusive, each equally likely. */
export function uniformInt(random: Random, min: number, max: number): number {
  if (!Number.isInteger(min) || !Number.isInteger(max) || max < min) {
    throw new RangeError(`uniformInt needs integers min <= max, got ${min}..${max}`);
  }
  return min + Math.floor(random.next() * (max - min + 1));
}

/** An exponentially distributed value with the given mean (inverse-CDF method). */
export function exponential(random: Random, mean: number): number {
  // 1 - u lies in (0, 1], so the logarithm is finite.
  return -Math.log(1 - random.next()) * mean;
}

/** An index into `weights`, chosen with probability weight / sum(weights). */
export function weightedIndex(random: Random, weights: readonly number[]): number {
  let total = 0;
  for (const weight of weights) {
    if (!(weight >= 0) || !Number.isFinite(weight)) throw new RangeError(`weights must be finite and >= 0, got ${weight}`);
    total += weight;
  }
  if (total <= 0) throw new RangeError('at least one weight must be positive');
  let remaining = random.next() * total;
  for (let i = 0; i < weights.length; i++) {
    remaining -= weights[i];
    if (remaining < 0) return i;
  }
  // Rounding can leave a sliver at the end: it belongs to the last positive weight.
  for (let i = weights.length - 1; i >= 0; i--) if (weights[i] > 0) return i;
  return weights.length - 1;
}
