// Passive health: outlier detection from real traffic, after Envoy's outlier detector.
// - `consecutive_failures` failures in a row (the configured kinds: connect error, timeout, 5xx,
//   429) eject a replica for base × (number of ejections), capped at max_ejection_s.
// - At most max_ejected_percent of the replicas are ejected at once (but always at least one may
//   be), so a bad deploy of the backend cannot make the balancer eject everything.
// - When the ejection expires the replica is half-open: exactly one trial request may go to it.
//   Success closes it; failure ejects it again at once, for longer.
// - The ejection count is forgotten once the replica has stayed healthy for max_ejection_s.

import type { FailureKind, PassiveHealthConfig } from '../config/types';
import type { Outcome, Replica, Store } from '../types';
import { keysOf, readNumber } from '../replica-state';
import type { ReplicaKeys } from '../replica-state';

export type Verdict = 'success' | 'failure' | 'neutral';
export type PassiveState = 'active' | 'ejected' | 'half-open';

/** Classifies an attempt. A client abort says nothing about the replica: neutral. */
export function classifyOutcome(outcome: Outcome, kinds: FailureKind[]): Verdict {
  if (outcome.error === 'aborted') return 'neutral';
  let kind: FailureKind | null = null;
  if (outcome.error === 'connect-error' || outcome.error === 'timeout') kind = outcome.error;
  else if (outcome.status >= 500 && outcome.status <= 599) kind = '5xx';
  else if (outcome.status === 429) kind = '429';
  else if (outcome.status === 0) kind = 'connect-error';
  if (kind === null) return 'success';
  // An index loop, not indexOf: njs hands preloaded config arrays over without Array.prototype.
  for (let i = 0; i < kinds.length; i++) {
    if (kinds[i] === kind) return 'failure';
  }
  return 'success';
}

export function passiveState(store: Store, keys: ReplicaKeys, now: number): PassiveState {
  const until = readNumber(store, keys.ejectedUntil);
  if (until === 0) return 'active';
  return now < until ? 'ejected' : 'half-open';
}

/** Milliseconds a claimed trial may stay silent before another request may try instead. */
function trialTimeoutMs(config: PassiveHealthConfig): number {
  // A trial request that never reports (its log phase lost) must not pin the replica half-open
  // forever; one base ejection period is long enough for any request we would wait for.
  return config.base_ejection_s * 1000;
}

/** True while a trial request is out on a half-open replica (so it is not a candidate). */
export function trialInProgress(store: Store, keys: ReplicaKeys, now: number, config: PassiveHealthConfig): boolean {
  if (readNumber(store, keys.trialClaims) === 0) return false;
  return now - readNumber(store, keys.trialClaimedAt) < trialTimeoutMs(config);
}

/** Atomically claims the single trial of a half-open replica; true when this caller won it. */
export function claimTrial(store: Store, keys: ReplicaKeys, now: number, config: PassiveHealthConfig): boolean {
  const claims = store.incr(keys.trialClaims, 1, 0);
  if (claims === 1 || !trialInProgress(store, keys, now, config)) {
    store.set(keys.trialClaims, 1);
    store.set(keys.trialClaimedAt, now);
    return true;
  }
  return false;
}

function releaseTrial(store: Store, keys: ReplicaKeys): void {
  store.delete(keys.trialClaims);
  store.delete(keys.trialClaimedAt);
}

function eject(store: Store, keys: ReplicaKeys, now: number, config: PassiveHealthConfig): void {
  const maxMs = config.max_ejection_s * 1000;
  const liftedAt = readNumber(store, keys.ejectionLiftedAt);
  let ejections = readNumber(store, keys.ejections);
  if (liftedAt > 0 && now - liftedAt >= maxMs) ejections = 0;
  ejections += 1;
  store.set(keys.ejections, ejections);
  store.set(keys.ejectedUntil, now + Math.min(config.base_ejection_s * 1000 * ejections, maxMs));
  store.set(keys.consecutiveFailures, 0);
  releaseTrial(store, keys);
}

function ejectionAllowed(store: Store, replicas: Replica[], id: string, config: PassiveHealthConfig): boolean {
  let alreadyOut = 0;
  for (let i = 0; i < replicas.length; i++) {
    const keys = replicas[i].keys !== undefined ? (replicas[i].keys as ReplicaKeys) : keysOf(replicas[i].id);
    if (replicas[i].id !== id && readNumber(store, keys.ejectedUntil) > 0) alreadyOut++;
  }
  const allowed = Math.max(1, Math.floor((replicas.length * config.max_ejected_percent) / 100));
  return alreadyOut + 1 <= allowed;
}

/** Applies one attempt's verdict to the replica's passive health. */
export function recordVerdict(
  store: Store,
  replicas: Replica[],
  id: string,
  keys: ReplicaKeys,
  verdict: Verdict,
  now: number,
  config: PassiveHealthConfig,
): void {
  if (verdict === 'failure') store.incr(keys.failures, 1, 0);
  if (!config.enabled) return;
  const state = passiveState(store, keys, now);
  if (verdict === 'neutral') {
    if (state === 'half-open') releaseTrial(store, keys);
    return;
  }
  if (verdict === 'success') {
    store.set(keys.consecutiveFailures, 0);
    if (state === 'half-open') {
      store.delete(keys.ejectedUntil);
      store.set(keys.ejectionLiftedAt, now);
      // Back in service: slow start ramps its share up again.
      store.set(keys.availableSince, now);
      releaseTrial(store, keys);
    }
    return;
  }
  if (state === 'half-open') {
    eject(store, keys, now, config);
    return;
  }
  const failures = store.incr(keys.consecutiveFailures, 1, 0);
  if (state === 'active' && failures >= config.consecutive_failures && ejectionAllowed(store, replicas, id, config)) {
    eject(store, keys, now, config);
  }
}
