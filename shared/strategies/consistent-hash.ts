// consistent-hash — sticky routing by key (session, user, consumer) with bounded loads.
// Algorithm: weighted rendezvous hashing (highest random weight, Thaler & Ravishankar 1998;
// weighted form score = weight / -ln(u), Schindelhauer & Schomaker 2005). Every replica scores
// the key; the highest score wins and the descending order is the failover order. Adding or
// removing one of N replicas moves only the keys whose winner changed: about 1/N of them (the
// seed's hash mod N moves almost all). Chosen over a ketama ring because it needs no table: under
// njs every request runs in a fresh VM, and rebuilding 160 points × N and sorting them per request
// would cost more than scoring N replicas. O(N log N) per request.
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

/** Candidates in descending rendezvous score for `key` (ties, practically impossible, by id). */
export function rendezvousOrder(candidates: ReplicaView[], key: string): ReplicaView[] {
  const keyHash = hashString(key);
  const scores: number[] = [];
  const indexes: number[] = [];
  for (let i = 0; i < candidates.length; i++) {
    const u = unitInterval(combineHashes(keyHash, hashString(candidates[i].id)));
    scores.push(candidates[i].weight / -Math.log(u));
    indexes.push(i);
  }
  indexes.sort((a, b) => {
    if (scores[a] !== scores[b]) return scores[b] - scores[a];
    return candidates[a].id < candidates[b].id ? -1 : 1;
  });
  const ordered: ReplicaView[] = [];
  for (let i = 0; i < indexes.length; i++) ordered.push(candidates[indexes[i]]);
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
  return Math.ceil((balanceFactor * (total + 1) * replica.weight) / totalWeight);
}

/** Rendezvous order with replicas at their bound moved behind those with room, order otherwise kept. */
export function boundedOrder(candidates: ReplicaView[], key: string, balanceFactor: number, count: number): ReplicaView[] {
  const ordered = rendezvousOrder(candidates, key);
  if (balanceFactor <= 0) return ordered.slice(0, count);
  const withRoom: ReplicaView[] = [];
  const full: ReplicaView[] = [];
  for (let i = 0; i < ordered.length; i++) {
    if (ordered[i].inFlight + 1 <= loadBound(candidates, balanceFactor, ordered[i])) withRoom.push(ordered[i]);
    else full.push(ordered[i]);
  }
  return withRoom.concat(full).slice(0, count);
}

export function createConsistentHash(config: BalancerConfig, fallback: Strategy): Strategy {
  const balanceFactor = config.consistent_hash.balance_factor;
  return {
    name: 'consistent-hash',
    // The bound needs in-flight counts; requests without a key are ordered by the fallback.
    reads: { inFlight: balanceFactor > 0 || fallback.reads.inFlight, latency: fallback.reads.latency },
    order(candidates: ReplicaView[], context: StrategyContext, count: number): ReplicaView[] {
      if (context.hashKey === null) return fallback.order(candidates, context, count);
      return boundedOrder(candidates, context.hashKey, balanceFactor, count);
    },
  };
}
