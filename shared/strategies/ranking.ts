// Ordering helpers shared by the cost-based strategies. Ties are broken uniformly at random:
// the seed's sketch returned the FIRST minimum, which sends every tie to replica 0.

import type { Random, ReplicaView } from '../types';

/** Marks a candidate already placed: never a real cost (costs are finite; llm's are negated scores). */
const TAKEN = -Infinity;

/**
 * The `count` cheapest candidates, cheapest first, ties decided uniformly at random. Selection
 * rather than a full sort: count is 1 + retries, usually 2, so this is O(N × count).
 * costs[i] is candidates[i]'s, computed by the strategy in its own loop (a cost function called
 * per candidate was most of an order's cost in the njs interpreters); the array is used up.
 * One random draw per place, and only when it is tied: the first pass counts the tied minima,
 * the second takes the drawn one (a draw per tie cost ~1.2 µs each under the njs engine).
 */
export function cheapestFirst<T>(candidates: T[], costs: number[], random: Random, count: number): T[] {
  const result: T[] = [];
  const wanted = count < candidates.length ? count : candidates.length;
  while (result.length < wanted) {
    let best = -1;
    let ties = 0;
    for (let i = 0; i < costs.length; i++) {
      const cost = costs[i];
      if (cost === TAKEN) continue;
      if (best < 0 || cost < costs[best]) {
        best = i;
        ties = 1;
      } else if (cost === costs[best]) {
        ties++;
      }
    }
    if (ties > 1) {
      // The k-th of the tied minima, k uniform in [0, ties).
      let k = randomIndex(random, ties);
      const min = costs[best];
      for (let i = best; i < costs.length; i++) {
        if (costs[i] === min && k-- === 0) {
          best = i;
          break;
        }
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
