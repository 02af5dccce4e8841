// consistent-hash — sticky routing by key (session, user, consumer) with bounded loads.
// Algorithm: weighted rendezvous hashing (highest random weight, Thaler & Ravishankar 1998;
// weighted form score = weight / -ln(u), Schindelhauer & Schomaker 2005). Every replica scores
// the key; the highest score wins and the descending order is the failover order. Adding or
// removing one of N replicas moves only the keys whose winner changed: about 1/N of them (the
// seed's hash mod N moves almost all). Chosen over a ketama ring because it needs no table: under
// njs every request runs in a fresh VM, and rebuilding 160 points × N and sorting them per request
// would cost more than scoring N replicas. O(N × count) per request (count = 1 + retries).
// Bounded loads (Mirrokni, Thorup, Zadimoghaddam 2016, arXiv 1608.01350): with balance factor c,
// a replica may hold at most ceil(c × (total in flight + 1) × weight / total weight) requests; a
// key whose replica is full walks on to its next-highest-scoring replica. One always fits, since
// the average after placing this request is below the bound. c = 0 disables the bound.
// No key in the request → the configured fallback strategy orders the candidates.
// Reads: id, weight, inFlight, the request's hash key.
// Options: consistent_hash.balance_factor, consistent_hash.fallback, hash_key.

import type { BalancerConfig } from '../config/types';
import type { ReplicaView, Strategy, StrategyContext } from '../types';
import { combineHashes, hashString, unitInterval } from '../hash';
import { memoise } from '../memo';

// Hash of each replica id, memoised: ids rarely change and hashing them was most of a pick's cost.
const idHash = memoise(hashString, 4096);

/** Each candidate's weighted rendezvous score for `key`: weight / -ln(u), u uniform in (0, 1). */
export function rendezvousScores(candidates: ReplicaView[], key: string): number[] {
  const keyHash = hashString(key);
  const scores: number[] = [];
  for (let i = 0; i < candidates.length; i++) scores.push(rendezvousScore(candidates[i], keyHash));
  return scores;
}

/** One candidate's weighted rendezvous score for a key already hashed to 32 bits. */
function rendezvousScore(replica: ReplicaView, keyHash: number): number {
  return replica.weight / -Math.log(unitInterval(combineHashes(keyHash, idHash(replica.id))));
}

/**
 * Index of the highest-scoring candidate for a key already hashed to 32 bits (e.g. a prompt's
 * block hash: prefix placement); -1 when there are none. One pass, no array: O(N).
 */
export function rendezvousOwner(candidates: ReplicaView[], keyHash: number): number {
  let best = -1;
  let bestScore = 0;
  for (let i = 0; i < candidates.length; i++) {
    const score = rendezvousScore(candidates[i], keyHash);
    if (best < 0 || score > bestScore || (score === bestScore && candidates[i].id < candidates[best].id)) {
      best = i;
      bestScore = score;
    }
  }
  return best;
}

/** Index of the highest score not yet taken (ties, practically impossible, go to the smaller id); -1 when none is left. */
function bestRemaining(candidates: ReplicaView[], scores: number[], taken: boolean[]): number {
  let best = -1;
  for (let i = 0; i < candidates.length; i++) {
    if (taken[i]) continue;
    if (best < 0 || scores[i] > scores[best] || (scores[i] === scores[best] && candidates[i].id < candidates[best].id)) best = i;
  }
  return best;
}

/** The `count` highest-scoring candidates for `key`, best first (selection: O(N × count)). */
export function rendezvousOrder(candidates: ReplicaView[], key: string, count?: number): ReplicaView[] {
  const wanted = count === undefined ? candidates.length : Math.min(count, candidates.length);
  const scores = rendezvousScores(candidates, key);
  const taken: boolean[] = [];
  const ordered: ReplicaView[] = [];
  while (ordered.length < wanted) {
    const best = bestRemaining(candidates, scores, taken);
    taken[best] = true;
    ordered.push(candidates[best]);
  }
  return ordered;
}

/** Per-replica in-flight ceiling for bounded loads, counting the request being placed. */
export function loadBound(candidates: ReplicaView[], balanceFactor: number, replica: ReplicaView): number {
  let total = 0;
  let totalWeight = 0;
  for (let i = 0; i < candidates.length; i++) {
    total += candidates[i].inFlight;
    totalWeight += candidates[i].weight;
  }
  return boundFor(balanceFactor, total, totalWeight, replica);
}

function boundFor(balanceFactor: number, totalInFlight: number, totalWeight: number, replica: ReplicaView): number {
  return loadCeiling(balanceFactor, totalInFlight, totalWeight, replica.weight);
}

/**
 * The bounded-load ceiling (consistent hashing with bounded loads): the most requests in flight a
 * replica of `weight` may hold with one more request coming, ceil(c × (total + 1) × weight / total
 * weight). The one formula behind consistent-hash's, prefix-affinity's and the LoRA placement's guards.
 */
export function loadCeiling(balanceFactor: number, totalInFlight: number, totalWeight: number, weight: number): number {
  return Math.ceil((balanceFactor * (totalInFlight + 1) * weight) / totalWeight);
}

/**
 * Rendezvous order with replicas at their bound moved behind those with room, order otherwise
 * kept. Walks the order lazily: usually the first replica or two have room and the walk stops.
 */
export function boundedOrder(candidates: ReplicaView[], key: string, balanceFactor: number, count: number): ReplicaView[] {
  if (balanceFactor <= 0) return rendezvousOrder(candidates, key, count);
  let total = 0;
  let totalWeight = 0;
  for (let i = 0; i < candidates.length; i++) {
    total += candidates[i].inFlight;
    totalWeight += candidates[i].weight;
  }
  const scores = rendezvousScores(candidates, key);
  const taken: boolean[] = [];
  const withRoom: ReplicaView[] = [];
  const full: ReplicaView[] = [];
  while (withRoom.length < count && withRoom.length + full.length < candidates.length) {
    const best = bestRemaining(candidates, scores, taken);
    taken[best] = true;
    const replica = candidates[best];
    if (replica.inFlight + 1 <= boundFor(balanceFactor, total, totalWeight, replica)) withRoom.push(replica);
    else full.push(replica);
  }
  return withRoom.concat(full).slice(0, count);
}

export function createConsistentHash(config: BalancerConfig, fallback: Strategy): Strategy {
  const balanceFactor = config.consistent_hash.balance_factor;
  return {
    name: 'consistent-hash',
    // The bound needs in-flight counts; requests without a key are ordered by the fallback.
    reads: { inFlight: balanceFactor > 0 || fallback.reads.inFlight, latency: fallback.reads.latency, hashKey: true, tokens: fallback.reads.tokens, body: fallback.reads.body, replicaLoad: fallback.reads.replicaLoad },
    order(candidates: ReplicaView[], context: StrategyContext, count: number): ReplicaView[] {
      if (context.hashKey === null) return fallback.order(candidates, context, count);
      return boundedOrder(candidates, context.hashKey, balanceFactor, count);
    },
  };
}
