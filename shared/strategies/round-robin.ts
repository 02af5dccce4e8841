// round-robin — rotate over the eligible replicas.
// Algorithm: one shared counter; the pick is candidates[counter mod n], alternates follow in
// rotation order. O(count). Because the counter is taken modulo the CURRENT candidate list, the
// rotation stays fair when a replica leaves or rejoins the healthy set: no replica inherits a
// departed one's turns twice in a row, as a per-replica "next" pointer would cause.
// Reads: nothing but the candidate order. Options: none. Load-blind by design (the seed's first
// strategy); a baseline, and a good choice only for identical replicas and uniform requests.

import type { ReplicaView, Strategy, StrategyContext } from '../types';

export function createRoundRobin(): Strategy {
  return {
    name: 'round-robin',
    reads: { inFlight: false, latency: false, hashKey: false, tokens: false, body: false, replicaLoad: false },
    order(candidates: ReplicaView[], context: StrategyContext, count: number): ReplicaView[] {
      const n = candidates.length;
      const start = context.nextCursor('round-robin') % n;
      const result: ReplicaView[] = [];
      for (let i = 0; i < n && i < count; i++) result.push(candidates[(start + i) % n]);
      return result;
    },
  };
}
