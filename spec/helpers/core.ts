// Test doubles for the core: a clock the test moves, a scripted or seeded random source,
// and a config builder on top of the real validator.

import { validate, formatErrors } from '../../shared/config/index';
import type { BalancerConfig } from '../../shared/config/types';
import type { Clock, Random, Replica, ReplicaView } from '../../shared/types';

export interface FakeClock extends Clock {
  advance(ms: number): void;
  set(ms: number): void;
}

export function fakeClock(start = 1_000_000): FakeClock {
  let t = start;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
    set: (ms) => {
      t = ms;
    },
  };
}

/** Returns the scripted values in order, then repeats the last one. */
export function scriptedRandom(values: number[]): Random {
  let i = 0;
  return { next: () => values[Math.min(i++, values.length - 1)] };
}

/** Deterministic PRNG (mulberry32) for long randomised runs. */
export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  return {
    next: () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    },
  };
}

/** A validated config; throws with the validator's own message when the input is wrong. */
export function configOf(input: Record<string, unknown>): BalancerConfig {
  const result = validate(input);
  if (!result.ok) throw new Error(formatErrors(result.errors));
  return result.config;
}

export function replicas(weights: number[]): Replica[] {
  return weights.map((weight, i) => ({ id: `r${i}`, address: `10.0.0.${i + 1}:8000`, weight }));
}

export function view(id: string, fields: Partial<ReplicaView> = {}): ReplicaView {
  return { id, address: `${id}:8000`, weight: 1, inFlight: 0, ewmaMs: null, tokens: 0, queue: null, kvUsage: null, samples: 0, halfOpen: false, ...fields };
}
