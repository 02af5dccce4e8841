// response-time — latency-aware: peak EWMA × load (Finagle's and linkerd2's P2C+PeakEWMA cost,
// Kong's `latency` algorithm).
// Cost = latency estimate × (inFlight + 1) / weight. The estimate is the replica's time-decayed,
// peak-sensitive EWMA (ewma.ts; half-life in seconds). Multiplying by (inFlight + 1) turns "how
// fast is it" into "how long would THIS request wait", so the fastest replica does not take
// everything until it, too, is slow.
// Cold start (the seed's flaw was scoring an unseen replica 0, so it attracted all traffic):
// - a replica with no samples and nothing in flight is tried first, once, so it earns a sample;
// - while that first request is out, its estimate is the mean of the sampled replicas' estimates
//   (Kong seeds new targets the same way), so it competes on equal terms, never at zero.
// O(N × count); ties broken at random. Reads: ewmaMs, samples, inFlight, weight.
// Options: response_time.half_life_s, response_time.peak_sensitive (applied when samples are recorded).

import type { ReplicaView, Strategy, StrategyContext } from '../types';
import { cheapestFirst, without } from './ranking';

/** Estimate used when no replica has a sample yet: any positive constant keeps costs comparable. */
const NEUTRAL_ESTIMATE_MS = 1;

export function meanEstimate(candidates: ReplicaView[]): number {
  let sum = 0;
  let sampled = 0;
  for (let i = 0; i < candidates.length; i++) {
    const estimate = candidates[i].ewmaMs;
    if (estimate !== null) {
      sum += estimate;
      sampled++;
    }
  }
  // A decayed estimate can reach 0 after long idleness; keep the mean positive so load still counts.
  return sampled > 0 && sum > 0 ? sum / sampled : NEUTRAL_ESTIMATE_MS;
}

/** A candidate's cost: its latency estimate (or the cold-start `fallback`) times its load with this request. */
function costWith(replica: ReplicaView, fallback: number): number {
  const estimate = replica.ewmaMs === null || replica.ewmaMs <= 0 ? fallback : replica.ewmaMs;
  return (estimate * (replica.inFlight + 1)) / replica.weight;
}

/** Cost function for a candidate set (the cold-start estimate depends on the others). */
export function latencyCost(candidates: ReplicaView[]): (replica: ReplicaView) => number {
  const fallback = meanEstimate(candidates);
  return (replica) => costWith(replica, fallback);
}

/** Replicas that have never answered and have nothing in flight: each gets one exploratory request. */
export function unexplored(candidates: ReplicaView[]): ReplicaView[] {
  const result: ReplicaView[] = [];
  for (let i = 0; i < candidates.length; i++) {
    if (candidates[i].samples === 0 && candidates[i].inFlight === 0) result.push(candidates[i]);
  }
  return result;
}

/** latencyCost of each of `replicas`, with the cold-start estimate `fallback` (one loop, no closure per request). */
function latencyCosts(replicas: ReplicaView[], fallback: number): number[] {
  const costs: number[] = [];
  for (let i = 0; i < replicas.length; i++) costs.push(costWith(replicas[i], fallback));
  return costs;
}

/** Latency-cost order with cold-start exploration first. Shared with the hybrid strategy. */
export function orderByLatency(candidates: ReplicaView[], context: StrategyContext, count: number): ReplicaView[] {
  const fallback = meanEstimate(candidates);
  const fresh = unexplored(candidates);
  // When nothing has been sampled yet every replica is "fresh": plain cost order (= least load) is right.
  if (fresh.length === 0 || fresh.length === candidates.length) return cheapestFirst(candidates, latencyCosts(candidates, fallback), context.random, count);
  const first = cheapestFirst(fresh, latencyCosts(fresh, fallback), context.random, 1);
  if (count <= 1) return first;
  const rest = without(candidates, first);
  return first.concat(cheapestFirst(rest, latencyCosts(rest, fallback), context.random, count - 1));
}

export function createResponseTime(): Strategy {
  return { name: 'response-time', reads: { inFlight: true, latency: true, hashKey: false, tokens: false, body: false, replicaLoad: false }, order: orderByLatency };
}
