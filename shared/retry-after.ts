// How long a client should wait before retrying a request that found no replica (the
// Retry-After header of the 503): the soonest any replica could take traffic again, from what
// the Store knows. Computed only when a pick fails, so it costs nothing on the hot path.
//
// Per replica that can come back by itself (weight > 0, not draining):
// - ejected by passive health: until its ejection ends (then a trial request may go to it);
// - half-open with its single trial out: 1 s (the trial may end at any moment);
// - marked down by active checks: healthy_threshold probe intervals (the soonest it can pass them);
// - reported unhealthy by the gateway (Kong's Admin API, NGINX Plus): UNKNOWN_RECOVERY_S.
// The least of these, bounded to [MIN_RETRY_AFTER_S, MAX_RETRY_AFTER_S]. When no replica can come
// back by itself (none configured, all weight 0 or draining), MAX_RETRY_AFTER_S: an operator has
// to act, and clients should back off as far as they will listen.

import type { BalancerConfig } from './config/types';
import { activelyUnhealthy } from './health/active';
import { keysOf, readNumber } from './replica-state';
import type { Replica, Store } from './types';

/** The header counts whole seconds; 0 would invite an immediate retry into the same 503. */
export const MIN_RETRY_AFTER_S = 1;

/**
 * OpenAI's SDKs (Python and Node) honour a Retry-After of at most 60 s and fall back to their own
 * backoff above it: a longer wait would be ignored anyway.
 */
export const MAX_RETRY_AFTER_S = 60;

/** A replica reported unhealthy by the gateway: the default active-check interval (5 s), the usual pace of such reports. */
export const UNKNOWN_RECOVERY_S = 5;

/** The Retry-After, in whole seconds, of a 503 that found no replica at `now` (ms). */
export function retryAfterSeconds(config: BalancerConfig, replicas: Replica[], store: Store, now: number): number {
  let soonestMs = -1;
  for (let i = 0; i < replicas.length; i++) {
    const replica = replicas[i];
    if (!(replica.weight > 0) || replica.health === 'draining') continue;
    const keys = replica.keys !== undefined ? replica.keys : keysOf(replica.id);
    let waitMs = 0;
    if (replica.health === 'unhealthy') waitMs = UNKNOWN_RECOVERY_S * 1000;
    if (activelyUnhealthy(store, keys)) {
      const active = config.active_health;
      waitMs = Math.max(waitMs, active.enabled ? active.interval_s * active.healthy_threshold * 1000 : UNKNOWN_RECOVERY_S * 1000);
    }
    if (config.passive_health.enabled) {
      const until = readNumber(store, keys.ejectedUntil);
      // Past its ejection but refused anyway: half-open with its trial out.
      if (until > 0) waitMs = Math.max(waitMs, until > now ? until - now : MIN_RETRY_AFTER_S * 1000);
    }
    if (soonestMs < 0 || waitMs < soonestMs) soonestMs = waitMs;
  }
  if (soonestMs < 0) return MAX_RETRY_AFTER_S;
  const seconds = Math.ceil(soonestMs / 1000);
  return Math.min(MAX_RETRY_AFTER_S, Math.max(MIN_RETRY_AFTER_S, seconds));
}
