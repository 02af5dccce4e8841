// hybrid — the seed's composition, built from the other strategies' parts:
//   1. filter: drop replicas with max_concurrent or more requests in flight (if ALL are that busy,
//      keep them all: saturation is a reason to prefer, never to refuse);
//   2. sticky: when hybrid.sticky is on and the request has a hash key, rendezvous order of the
//      key over the remaining replicas (the same keys stay on the same replica while it has room);
//   3. otherwise: latency cost order (peak EWMA × (inFlight + 1) / weight, as response-time).
// Saturated replicas come last as failover alternates. O(N × count).
// Reads: inFlight, ewmaMs, samples, weight, the hash key. Options: hybrid.sticky, hybrid.max_concurrent.

import type { BalancerConfig } from '../config/types';
import type { ReplicaView, Strategy, StrategyContext } from '../types';
import { rendezvousOrder } from './consistent-hash';
import { without } from './ranking';
import { orderByLatency } from './response-time';

export function createHybrid(config: BalancerConfig): Strategy {
  const sticky = config.hybrid.sticky;
  const maxConcurrent = config.hybrid.max_concurrent;
  return {
    name: 'hybrid',
    reads: { inFlight: true, latency: true, hashKey: sticky, tokens: false, body: false, replicaLoad: false },
    order(candidates: ReplicaView[], context: StrategyContext, count: number): ReplicaView[] {
      const open: ReplicaView[] = [];
      for (let i = 0; i < candidates.length; i++) {
        if (candidates[i].inFlight < maxConcurrent) open.push(candidates[i]);
      }
      const pool = open.length > 0 ? open : candidates;
      const ordered =
        sticky && context.hashKey !== null
          ? rendezvousOrder(pool, context.hashKey, count)
          : orderByLatency(pool, context, count);
      if (ordered.length >= count || pool === candidates) return ordered;
      return ordered.concat(orderByLatency(without(candidates, pool), context, count - ordered.length));
    },
  };
}
