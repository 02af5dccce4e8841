// Ordering helpers shared by the cost-based strategies. Ties are broken uniformly at random:
// the seed's sketch returned the FIRST minimum, which sends every tie to replica 0.

import type { Random, ReplicaView } from '../types';

export type CostFunction = (replica: ReplicaView) => number;

/** Marks a candidate already placed: real costs are never below 0 (weights are > 0). */
const TAKEN = -Infinity;

/**
 * The `count` cheapest candidates, cheapest first, each tie decided by a fair coin.
 * Selection rather than a full sort: count is 1 + retries, usually 2, so this is O(N × count).
 */
export function cheapestFirst(candidates: ReplicaView[], cost: CostFunction, random: Random, count: number): ReplicaView[] {
  const costs: number[] = [];
  for (let i = 0; i < candidates.length; i++) costs.push(cost(candidates[i]));
  const result: ReplicaView[] = [];
  const wanted = Math.min(count, candidates.length);
  while (result.length < wanted) {
    let best = -1;
    let ties = 0;
    for (let i = 0; i < candidates.length; i++) {
      if (costs[i] === TAKEN) continue;
      if (best < 0 || costs[i] < costs[best]) {
        best = i;
        ties = 1;
      } else if (costs[i] === costs[best]) {
        // Reservoir sampling over the tied minima: each of k ties wins with probability 1/k.
        ties++;
        if (random.next() * ties < 1) best = i;
      }
    }
    costs[best] = TAKEN;
    result.push(candidates[best]);
  }
  return result;
}

/** Index in [0, n) from the random source. */
export function randomIndex(random: Random, n: number): number {
  const index = Math.floor(random.next() * n);
  return index < n ? index : n - 1;
}

/** The members of `all` not in `chosen`, in their original order. */
export function without(all: ReplicaView[], chosen: ReplicaView[]): ReplicaView[] {
  const rest: ReplicaView[] = [];
  for (let i = 0; i < all.length; i++) {
    if (chosen.indexOf(all[i]) < 0) rest.push(all[i]);
  }
  return rest;
}
