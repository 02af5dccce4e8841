// When requests are sent, as offsets in milliseconds from the start of a run. Computed up front so
// that a trace is a plain list that can be replayed, unchanged, through every gateway and strategy.
//
// poisson: independent arrivals at a mean rate (exponential gaps), the model vLLM's
//   benchmark_serving (--request-rate with burstiness 1) and llm-d's inference-perf use for
//   independent users; bursts and lulls are part of the load.
// uniform: exactly one request every 1/rate seconds, for debugging and for runs where only the
//   mean matters.

import { exponential, type Random } from './random';

export type ArrivalMode = 'poisson' | 'uniform';

export const ARRIVAL_MODES: readonly ArrivalMode[] = ['poisson', 'uniform'];

const MS_PER_S = 1000;

/** Arrival offsets (ms, ascending, each in [0, durationS * 1000)) for `mode`. */
export function arrivalTimesMs(mode: ArrivalMode, ratePerS: number, durationS: number, random: Random): number[] {
  switch (mode) {
    case 'poisson':
      return poissonArrivalTimesMs(random, ratePerS, durationS);
    case 'uniform':
      return uniformArrivalTimesMs(ratePerS, durationS);
    default:
      throw new RangeError(`unknown arrival mode '${String(mode)}' (expected ${ARRIVAL_MODES.join(' | ')})`);
  }
}

/**
 * A Poisson process: gaps are exponential with mean 1/rate, the first arrival one gap after 0.
 * The number of arrivals in [0, duration) is then Poisson(rate × duration), not fixed.
 */
export function poissonArrivalTimesMs(random: Random, ratePerS: number, durationS: number): number[] {
  checkRateAndDuration(ratePerS, durationS);
  const meanGapMs = MS_PER_S / ratePerS;
  const durationMs = durationS * MS_PER_S;
  const times: number[] = [];
  let at = exponential(random, meanGapMs);
  while (at < durationMs) {
    times.push(at);
    at += exponential(random, meanGapMs);
  }
  return times;
}

/** One arrival every 1/rate seconds starting at 0: floor-ish rate × duration arrivals, no variance. */
export function uniformArrivalTimesMs(ratePerS: number, durationS: number): number[] {
  checkRateAndDuration(ratePerS, durationS);
  const durationMs = durationS * MS_PER_S;
  const times: number[] = [];
  // i × 1000 / rate rather than a running sum: no accumulated rounding over long runs.
  for (let i = 0; (i * MS_PER_S) / ratePerS < durationMs; i++) times.push((i * MS_PER_S) / ratePerS);
  return times;
}

function checkRateAndDuration(ratePerS: number, durationS: number): void {
  if (!(ratePerS > 0) || !Number.isFinite(ratePerS)) throw new RangeError(`ratePerS must be a positive number, got ${ratePerS}`);
  if (!(durationS > 0) || !Number.isFinite(durationS)) throw new RangeError(`durationS must be a positive number, got ${durationS}`);
}
