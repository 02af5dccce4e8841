// Latency distributions. Percentiles come from an HDR histogram (hdr-histogram-js): constant memory
// per metric however long the run, and a bounded relative error. Mean and max are kept exactly
// beside it (a sum and a maximum cost nothing), so only percentiles carry histogram error.
//
// Percentile definition: HdrHistogram's, i.e. nearest rank: the p-th percentile of n values is the
// ceil(p/100 × n)-th smallest (at least the 1st), reported as the highest value of its histogram
// bucket, so it is never below the true value and above it by at most 1 part in 10^3.

import * as hdr from 'hdr-histogram-js';

/** Histograms record integers; microseconds keep sub-millisecond ITLs apart. */
export const MICROS_PER_MS = 1000;
/** 3 significant digits: a value is known to within 0.1% (1 µs below 1 ms, 1 ms above 1 s). */
export const SIGNIFICANT_DIGITS = 3;
/** Initial range: one hour in µs; the histogram grows itself if a value goes beyond. */
const INITIAL_HIGHEST_US = 3_600 * 1_000_000;

/** What the report prints for one metric; every value in milliseconds, null when count is 0. */
export interface MetricSummary {
  count: number;
  meanMs: number | null;
  p50Ms: number | null;
  p90Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
}

/** One latency metric: recorded in ms, summarised in ms. */
export class MetricHistogram {
  private readonly histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: INITIAL_HIGHEST_US,
    numberOfSignificantValueDigits: SIGNIFICANT_DIGITS,
    autoResize: true,
  });
  private sumMs = 0;
  private maxMs = -Infinity;
  private recorded = 0;

  get count(): number {
    return this.recorded;
  }

  /** Records one value. Negative values (clock steps) are recorded as 0; NaN and Infinity are refused. */
  record(valueMs: number): void {
    if (!Number.isFinite(valueMs)) throw new RangeError(`cannot record ${valueMs} ms`);
    const ms = Math.max(0, valueMs);
    this.histogram.recordValue(Math.round(ms * MICROS_PER_MS));
    this.sumMs += ms;
    if (ms > this.maxMs) this.maxMs = ms;
    this.recorded++;
  }

  recordAll(valuesMs: readonly number[]): void {
    for (const value of valuesMs) this.record(value);
  }

  /** The p-th percentile (0 < p ≤ 100) in ms, or null when nothing was recorded. */
  percentileMs(p: number): number | null {
    if (!(p > 0 && p <= 100)) throw new RangeError(`percentile must be in (0, 100], got ${p}`);
    if (this.recorded === 0) return null;
    // The top bucket's upper edge can exceed the exact maximum; a percentile never should.
    return Math.min(this.histogram.getValueAtPercentile(p) / MICROS_PER_MS, this.maxMs);
  }

  summary(): MetricSummary {
    if (this.recorded === 0) return { count: 0, meanMs: null, p50Ms: null, p90Ms: null, p99Ms: null, maxMs: null };
    return {
      count: this.recorded,
      meanMs: this.sumMs / this.recorded,
      p50Ms: this.percentileMs(50),
      p90Ms: this.percentileMs(90),
      p99Ms: this.percentileMs(99),
      maxMs: this.maxMs,
    };
  }
}

/** Summary of a list of values: the histogram path, for when the values are at hand. */
export function summarise(valuesMs: readonly number[]): MetricSummary {
  const histogram = new MetricHistogram();
  histogram.recordAll(valuesMs);
  return histogram.summary();
}
