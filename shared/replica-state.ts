// Per-replica metrics in the Store, under short keys (`r:<id>:<field>`): short because the njs
// shared dictionary holds them in a fixed-size zone. Reading builds the ReplicaView strategies see;
// writing happens only when a request starts or ends (selection never mutates metrics).

import type { Replica, ReplicaView, Store } from './types';
import { readEwma, updateEwma } from './ewma';

export const FIELD = {
  inFlight: 'if',
  picks: 'pk',
  failures: 'fl',
  samples: 'ns',
  ewma: 'ew',
  ewmaAt: 'ea',
  ttft: 'tt',
  ttftAt: 'ta',
  consecutiveFailures: 'cf',
  ejections: 'ej',
  ejectedUntil: 'eu',
  ejectionLiftedAt: 'el',
  trialClaims: 'tc',
  trialClaimedAt: 'tca',
} as const;

export function replicaKey(id: string, field: string): string {
  return 'r:' + id + ':' + field;
}

export function readNumber(store: Store, id: string, field: string): number {
  const value = store.get(replicaKey(id, field));
  return value === undefined ? 0 : value;
}

/**
 * The latency estimate at `now`, or null before the first sample.
 * Decayed toward zero since the last sample (see ewma.ts for why).
 */
export function readLatency(store: Store, id: string, now: number, halfLifeMs: number): number | null {
  if (readNumber(store, id, FIELD.samples) === 0) return null;
  return readEwma(readNumber(store, id, FIELD.ewma), readNumber(store, id, FIELD.ewmaAt), now, halfLifeMs);
}

export function buildView(store: Store, replica: Replica, now: number, halfLifeMs: number, halfOpen: boolean): ReplicaView {
  const inFlight = readNumber(store, replica.id, FIELD.inFlight);
  return {
    id: replica.id,
    address: replica.address,
    weight: replica.weight,
    // In-flight counts are decremented by a log handler; never let a lost race show a negative load.
    inFlight: inFlight > 0 ? inFlight : 0,
    ewmaMs: readLatency(store, replica.id, now, halfLifeMs),
    samples: readNumber(store, replica.id, FIELD.samples),
    halfOpen: halfOpen,
  };
}

export function recordStart(store: Store, id: string): void {
  store.incr(replicaKey(id, FIELD.inFlight), 1, 0);
  store.incr(replicaKey(id, FIELD.picks), 1, 0);
}

export function recordEnd(store: Store, id: string): void {
  const key = replicaKey(id, FIELD.inFlight);
  if (store.incr(key, -1, 0) < 0) store.set(key, 0);
}

/** Folds one latency sample (and time to first byte, when known) into the replica's estimates. */
export function recordLatency(
  store: Store,
  id: string,
  latencyMs: number,
  ttftMs: number | null,
  now: number,
  halfLifeMs: number,
  peakSensitive: boolean,
): void {
  const hadSamples = readNumber(store, id, FIELD.samples) > 0;
  const ewmaKey = replicaKey(id, FIELD.ewma);
  const ewmaAtKey = replicaKey(id, FIELD.ewmaAt);
  const previous = hadSamples ? readNumber(store, id, FIELD.ewma) : null;
  store.set(ewmaKey, updateEwma(previous, readNumber(store, id, FIELD.ewmaAt), latencyMs, now, halfLifeMs, peakSensitive));
  store.set(ewmaAtKey, now);
  if (ttftMs !== null) {
    const ttftKey = replicaKey(id, FIELD.ttft);
    const previousTtft = store.get(ttftKey);
    const ttftAt = readNumber(store, id, FIELD.ttftAt);
    store.set(ttftKey, updateEwma(previousTtft === undefined ? null : previousTtft, ttftAt, ttftMs, now, halfLifeMs, peakSensitive));
    store.set(replicaKey(id, FIELD.ttftAt), now);
  }
  store.incr(replicaKey(id, FIELD.samples), 1, 0);
}
