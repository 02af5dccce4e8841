// Time-decayed, peak-sensitive moving average of latency (the "peak EWMA" of Finagle, linkerd2
// and Kong's latency balancer). The half-life is in TIME, not samples: a replica answering 100
// requests a second and one answering 1 a second forget their past equally fast. Between samples
// the estimate decays toward zero, so a replica that was slow once is probed again eventually
// instead of being starved forever (tower's PeakEwma does the same).

/** Weight the old estimate keeps after `elapsedMs`: 0.5 ** (elapsed / halfLife). */
export function decayWeight(elapsedMs: number, halfLifeMs: number): number {
  if (elapsedMs <= 0) return 1;
  return Math.pow(0.5, elapsedMs / halfLifeMs);
}

/** The estimate as seen at `now`, decayed since it was last updated at `updatedAt`. */
export function readEwma(value: number, updatedAt: number, now: number, halfLifeMs: number): number {
  return value * decayWeight(now - updatedAt, halfLifeMs);
}

/**
 * Blends a new sample into the estimate. `previous` null means no sample yet: the first sample is
 * taken as is. With `peakSensitive`, a sample above the current estimate replaces it at once, so a
 * replica that turns slow is avoided immediately and trusted again only gradually.
 */
export function updateEwma(
  previous: number | null,
  updatedAt: number,
  sample: number,
  now: number,
  halfLifeMs: number,
  peakSensitive: boolean,
): number {
  if (previous === null) return sample;
  if (peakSensitive && sample > previous) return sample;
  const keep = decayWeight(now - updatedAt, halfLifeMs);
  return previous * keep + sample * (1 - keep);
}
