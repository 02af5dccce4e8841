// least-connections — fewest in-flight requests relative to capacity.
// Cost = (inFlight + 1) / weight. The +1 makes weight matter for idle replicas too: with zero in
// flight everywhere, a weight-2 replica (cost 0.5) still beats a weight-1 one (cost 1), and a
// replica's cost reflects the load it WOULD carry with this request (Kong's balancer does the same).
// choices 0: scan all candidates, O(N × count), ties broken at random.
// choices k ≥ 2: sample k distinct candidates at random and take the cheapest (power of k
// choices, Mitzenmacher 2001; Envoy's least-request default is 2): O(k) for the pick, avoiding the
// herd that a full scan causes when several gateways share stale counts. Alternates: the other
// sampled ones, then the rest by cost.
// Reads: inFlight, weight. Options: least_connections.choices.

import type { BalancerConfig } from '../config/types';
import type { ReplicaView, Strategy, StrategyContext } from '../types';
import { cheapestFirst, randomIndex, without } from './ranking';

export function connectionCost(replica: ReplicaView): number {
  return (replica.inFlight + 1) / replica.weight;
}

/** The `count` least connected candidates, cheapest first, ties at random (costs in one loop, no call per candidate). */
export function leastConnected(candidates: ReplicaView[], context: StrategyContext, count: number): ReplicaView[] {
  const costs: number[] = [];
  for (let i = 0; i < candidates.length; i++) costs.push((candidates[i].inFlight + 1) / candidates[i].weight);
  return cheapestFirst(candidates, costs, context.random, count);
}

/** k distinct candidates drawn uniformly (partial Fisher–Yates over an index array). */
export function sampleDistinct(candidates: ReplicaView[], k: number, context: StrategyContext): ReplicaView[] {
  const indexes: number[] = [];
  for (let i = 0; i < candidates.length; i++) indexes.push(i);
  const sample: ReplicaView[] = [];
  for (let i = 0; i < k && i < indexes.length; i++) {
    const j = i + randomIndex(context.random, indexes.length - i);
    const swap = indexes[i];
    indexes[i] = indexes[j];
    indexes[j] = swap;
    sample.push(candidates[indexes[i]]);
  }
  return sample;
}

export function createLeastConnections(config: BalancerConfig): Strategy {
  const choices = config.least_connections.choices;
  return {
    name: 'least-connections',
    reads: { inFlight: true, latency: false, hashKey: false, tokens: false, body: false, replicaLoad: false },
    order(candidates: ReplicaView[], context: StrategyContext, count: number): ReplicaView[] {
      if (choices < 2 || choices >= candidates.length) {
        return leastConnected(candidates, context, count);
      }
      const sampled = leastConnected(sampleDistinct(candidates, choices, context), context, choices);
      if (sampled.length >= count) return sampled.slice(0, count);
      const rest = leastConnected(without(candidates, sampled), context, count - sampled.length);
      return sampled.concat(rest);
    },
  };
}
