// Passive health: outlier detection from real traffic, after Envoy's outlier detector.
// - `consecutive_failures` failures in a row (the configured kinds: connect error, timeout, 5xx,
//   429) eject a replica for base × (number of ejections), capped at max_ejection_s.
// - At most max_ejected_percent of the replicas are ejected at once (but always at least one may
//   be), so a bad deploy of the backend cannot make the balancer eject everything.
// - When the ejection expires the replica is half-open: exactly one trial request may go to it.
//   Success closes it; failure ejects it again at once, for longer.
// - The ejection count is forgotten once the replica has stayed healthy for max_ejection_s.
// - `consecutive_connect_errors` connect errors in a row eject sooner (default: the first): a
//   refused connection means the process is gone, and where a request cannot move to another
//   replica (Kong) every attempt on it is a client error. A passing active probe lifts such an
//   ejection (health/active.ts): the replica is back, no client request has to find out.
// - Failure rate (Envoy's failure-percentage ejection, fitted to small fleets): a replica whose
//   share of failed attempts over the last failure_rate_window_s (decaying counts) reaches
//   failure_rate_threshold, and is failure_rate_relative times the other replicas' combined share,
//   is ejected once it has failure_rate_min_requests. Failures that are rarely consecutive (30%
//   errors) are caught this way; a fleet-wide burst (everyone failing alike) is not an outlier.

import type { FailureKind, PassiveHealthConfig } from '../config/types';
import type { Outcome, Replica, Store } from '../types';
import { keysOf, readNumber } from '../replica-state';
import type { ReplicaKeys } from '../replica-state';

export type Verdict = 'success' | 'failure' | 'neutral';

/** Why a replica was ejected (stored under keys.ejectedFor). */
export const EJECTED_FOR_FAILURES = 1;
export const EJECTED_FOR_CONNECT_ERRORS = 2;
export const EJECTED_FOR_FAILURE_RATE = 3;
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

function eject(store: Store, keys: ReplicaKeys, now: number, config: PassiveHealthConfig, reason: number): void {
  const maxMs = config.max_ejection_s * 1000;
  const liftedAt = readNumber(store, keys.ejectionLiftedAt);
  let ejections = readNumber(store, keys.ejections);
  if (liftedAt > 0 && now - liftedAt >= maxMs) ejections = 0;
  ejections += 1;
  store.set(keys.ejections, ejections);
  store.set(keys.ejectedUntil, now + Math.min(config.base_ejection_s * 1000 * ejections, maxMs));
  store.set(keys.consecutiveFailures, 0);
  store.set(keys.consecutiveConnectErrors, 0);
  store.set(keys.ejectedFor, reason);
  // Back from this ejection, the replica's failure share is judged afresh.
  store.delete(keys.rateRequests);
  store.delete(keys.rateFailures);
  releaseTrial(store, keys);
}

/** Ends a passive ejection now (a passing active probe showed a connect-error ejection is over). */
export function liftEjection(store: Store, keys: ReplicaKeys, now: number): void {
  store.delete(keys.ejectedUntil);
  store.set(keys.ejectionLiftedAt, now);
  store.set(keys.availableSince, now);
  releaseTrial(store, keys);
}

/** True while the replica is ejected (or half-open) after connect errors: the kind a passing probe may lift. */
export function ejectedForConnectErrors(store: Store, keys: ReplicaKeys): boolean {
  return readNumber(store, keys.ejectedUntil) > 0 && readNumber(store, keys.ejectedFor) === EJECTED_FOR_CONNECT_ERRORS;
}

/** A decaying count at `now`: e-folding time windowMs, so it sums roughly the last window's events. */
function decayed(value: number, at: number, now: number, windowMs: number): number {
  if (value <= 0 || now <= at) return value > 0 ? value : 0;
  return value * Math.exp((at - now) / windowMs);
}

/**
 * Folds one judged attempt into the replica's decaying request and failure counts and returns
 * whether its failure share now makes it an outlier among `replicas`.
 */
function failureRateOutlier(store: Store, replicas: Replica[], id: string, keys: ReplicaKeys, failed: boolean, now: number, config: PassiveHealthConfig): boolean {
  const windowMs = config.failure_rate_window_s * 1000;
  const at = readNumber(store, keys.rateAt);
  const requests = decayed(readNumber(store, keys.rateRequests), at, now, windowMs) + 1;
  const failures = decayed(readNumber(store, keys.rateFailures), at, now, windowMs) + (failed ? 1 : 0);
  store.set(keys.rateRequests, requests);
  store.set(keys.rateFailures, failures);
  store.set(keys.rateAt, now);
  // Judged only on a failure: a success can only lower the share.
  if (!failed || requests < config.failure_rate_min_requests) return false;
  const share = failures / requests;
  if (share < config.failure_rate_threshold) return false;
  let othersRequests = 0;
  let othersFailures = 0;
  for (let i = 0; i < replicas.length; i++) {
    if (replicas[i].id === id) continue;
    const other = replicas[i].keys !== undefined ? (replicas[i].keys as ReplicaKeys) : keysOf(replicas[i].id);
    const otherAt = readNumber(store, other.rateAt);
    othersRequests += decayed(readNumber(store, other.rateRequests), otherAt, now, windowMs);
    othersFailures += decayed(readNumber(store, other.rateFailures), otherAt, now, windowMs);
  }
  const othersShare = othersRequests > 0 ? othersFailures / othersRequests : 0;
  return share >= config.failure_rate_relative * othersShare;
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

/**
 * Applies one attempt's verdict to the replica's passive health. `connectError`: the failure was
 * a connect error (counted toward consecutive_connect_errors as well).
 */
export function recordVerdict(
  store: Store,
  replicas: Replica[],
  id: string,
  keys: ReplicaKeys,
  verdict: Verdict,
  now: number,
  config: PassiveHealthConfig,
  connectError?: boolean,
): void {
  if (verdict === 'failure') store.incr(keys.failures, 1, 0);
  if (!config.enabled) return;
  const state = passiveState(store, keys, now);
  if (verdict === 'neutral') {
    if (state === 'half-open') releaseTrial(store, keys);
    return;
  }
  const rateOutlier = state === 'active' && config.failure_rate_threshold > 0 && failureRateOutlier(store, replicas, id, keys, verdict === 'failure', now, config);
  if (verdict === 'success') {
    store.set(keys.consecutiveFailures, 0);
    store.set(keys.consecutiveConnectErrors, 0);
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
    eject(store, keys, now, config, connectError === true ? EJECTED_FOR_CONNECT_ERRORS : EJECTED_FOR_FAILURES);
    return;
  }
  const failures = store.incr(keys.consecutiveFailures, 1, 0);
  let connectErrors = 0;
  if (connectError === true) connectErrors = store.incr(keys.consecutiveConnectErrors, 1, 0);
  else store.set(keys.consecutiveConnectErrors, 0);
  if (state !== 'active') return;
  let reason = 0;
  if (connectErrors >= config.consecutive_connect_errors) reason = EJECTED_FOR_CONNECT_ERRORS;
  else if (failures >= config.consecutive_failures) reason = EJECTED_FOR_FAILURES;
  else if (rateOutlier) reason = EJECTED_FOR_FAILURE_RATE;
  if (reason !== 0 && ejectionAllowed(store, replicas, id, config)) eject(store, keys, now, config, reason);
}
