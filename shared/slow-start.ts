// slow-start — Envoy's slow-start ramp for a replica that just became available (new, or
// recovered from unhealthy/ejected). A cold model replica has an empty prefix cache and may
// still be loading weights or compiling kernels; handing it its full share of traffic at once
// turns its first seconds into timeouts. So its weight is scaled by
//   max(minWeightPercent / 100, (t / window) ^ (1 / aggression))   for 0 ≤ t < window,
// and by 1 from t = window on, where t is the time since it became available.
// Source: Envoy's slow start mode (arch_overview/upstream/load_balancing/slow_start;
// slow_start_config: slow_start_window, aggression, min_weight_percent). Envoy's defaults are
// aggression 1.0 (a linear ramp) and min_weight_percent 10. Aggression above 1 ramps up faster
// early (a = 2 is the square root of the time fraction); below 1, slower.
// The minimum matters: Envoy keeps it so its EDF scheduler gets a finite deadline; here it keeps
// a new replica's weight above zero (for any minimum above 0), so a replica in its first
// milliseconds is not mistaken for a zero-weight one and filtered out.
// Envoy's docs floor t at 1 s; we do not (t is exact in milliseconds here). The two differ only in
// a replica's first second, and only where (1 s / window) ^ (1 / aggression) is above the minimum
// (short windows); a 0% minimum gives a factor of 0 at t = 0 here.
// Cost: O(1), one Math.pow.

/** Envoy's slow_start_config, in this project's units. Validated by shared/config. */
export interface SlowStartConfig {
  /** Length of the ramp in seconds; 0 (or less) disables slow start. */
  windowS: number;
  /** Ramp shape: the time fraction is raised to 1 / aggression. 1 = linear. */
  aggression: number;
  /** Lowest multiplier during the ramp, in percent of the replica's weight. */
  minWeightPercent: number;
}

/**
 * Weight multiplier in [minWeightPercent/100, 1] for a replica available since `sinceMs` (ms, same
 * clock as nowMs). windowS <= 0 → 1 (disabled). sinceMs null/undefined (unknown) → 1. nowMs <
 * sinceMs (clock skew) → the minimum. Never NaN: aggression <= 0 (or NaN) is treated as 1, a
 * minimum outside [0, 100] is clamped into it (NaN → 0), a NaN time difference counts as unknown.
 */
export function slowStartFactor(config: SlowStartConfig, sinceMs: number | null, nowMs: number): number {
  const windowMs = config.windowS * 1000;
  // `!(x > 0)` is also true for NaN: a window that is not a positive number means "disabled".
  if (!(windowMs > 0)) return 1;
  if (sinceMs === null || sinceMs === undefined) return 1;
  const elapsedMs = nowMs - sinceMs;
  if (isNaN(elapsedMs)) return 1; // a time we cannot read is an unknown start
  let floor = config.minWeightPercent / 100;
  if (!(floor > 0)) floor = 0;
  if (floor > 1) floor = 1;
  if (elapsedMs < 0) return floor;
  if (elapsedMs >= windowMs) return 1;
  const aggression = config.aggression > 0 ? config.aggression : 1;
  const ramp = Math.pow(elapsedMs / windowMs, 1 / aggression);
  return ramp > floor ? ramp : floor;
}
