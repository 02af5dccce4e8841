// prefix-affinity — send a prompt where its prefix was sent before (a warm KV cache), unless that
// would overload a replica. vLLM and SGLang skip the prefill of a cached prefix: routing a
// conversation's next turn, or another request with the same long system prompt, to the replica
// that already holds it saves most of its time to first token. Round robin and least-connections
// throw that away; prefix-only routing melts the replica of a hot prefix (the "death spiral"
// users of cache-aware routers report). This follows SGLang's cache-aware router with a bound:
//   1. imbalance: when max − min in-flight > balance_abs AND max > balance_rel × min, least load
//      (SGLang's balance_abs_threshold / balance_rel_threshold);
//   2. the replica holding the deepest matching prefix (prefix-table.ts) when the match covers at
//      least min_match of the prompt's blocks and that replica is under the bounded-load ceiling
//      ceil(balance_factor × (total in flight + 1) × weight / total weight) (Mirrokni et al.);
//   3. no candidate holds the prefix (or less than min_match of it): with placement rendezvous (the
//      default) its rendezvous owner (prefix-placement.ts: a weighted rendezvous hash of the prompt's
//      first block), under the same bounded-load ceiling — so every gateway node, with or without
//      shared state, sends a new prefix to the same replica;
//   4. otherwise (placement least-load, no full block, or the holder/owner is at its ceiling) least
//      load ((inFlight + 1) / weight, random tie-break).
// The pick is then recorded as the holder of every block of the prompt (afterPick): a hot prefix
// that overflows its replica moves to the next and is cached there too, so it spreads instead of
// piling up. Blocks: block_tokens × 4 characters of the prompt (system prompt and every earlier turn
// included), at most max_blocks, chained hashes (prefix-blocks.ts).
// Reads: the OpenAI body, inFlight, weight; the prefix table in the Store. O(blocks + N × count).
// Options: prefix_affinity.block_tokens, max_blocks, table_slots, min_match, balance_abs,
// balance_rel, balance_factor, placement.

import type { BalancerConfig } from '../config/types';
import { prefixBlockHashes } from '../prefix-blocks';
import { candidateTags, deepestMatch, recordRoute, replicaTag } from '../prefix-table';
import { CHARS_PER_TOKEN } from '../llm-request';
import { prefixOwner } from '../prefix-placement';
import type { ReplicaView, Store, Strategy, StrategyContext } from '../types';
import { leastConnected } from './least-connections';
import { without } from './ranking';
import { loadCeiling } from './consistent-hash';

/** Whether the in-flight spread calls for least load first (SGLang's two thresholds, both required). */
export function imbalanced(candidates: ReplicaView[], balanceAbs: number, balanceRel: number): boolean {
  let min = Infinity;
  let max = 0;
  for (let i = 0; i < candidates.length; i++) {
    const load = candidates[i].inFlight / candidates[i].weight;
    if (load < min) min = load;
    if (load > max) max = load;
  }
  return max - min > balanceAbs && max > balanceRel * min;
}

/** Whether `replica` can take one more request under the bounded-load ceiling (factor 0: no bound). */
export function underBound(candidates: ReplicaView[], replica: ReplicaView, balanceFactor: number): boolean {
  if (balanceFactor <= 0) return true;
  let total = 0;
  let totalWeight = 0;
  for (let i = 0; i < candidates.length; i++) {
    total += candidates[i].inFlight;
    totalWeight += candidates[i].weight;
  }
  return replica.inFlight + 1 <= loadCeiling(balanceFactor, total, totalWeight, replica.weight);
}

export function createPrefixAffinity(config: BalancerConfig, store: Store): Strategy {
  const options = config.prefix_affinity;
  const blockChars = options.block_tokens * CHARS_PER_TOKEN;
  const rendezvous = options.placement === 'rendezvous';
  // The chain computed by `order`, recorded by `afterPick` in the same synchronous pick.
  let pending: number[] | null = null;
  return {
    name: 'prefix-affinity',
    reads: { inFlight: true, latency: false, hashKey: false, tokens: false, body: true, replicaLoad: false },
    order(candidates: ReplicaView[], context: StrategyContext, count: number): ReplicaView[] {
      const llm = context.llm;
      pending = llm === null ? null : prefixBlockHashes(llm.promptKey, blockChars, options.max_blocks, context.hashText);
      if (pending !== null && pending.length > 0 && !imbalanced(candidates, options.balance_abs, options.balance_rel)) {
        const match = deepestMatch(store, pending, options.table_slots, candidateTags(candidates));
        // The table's holder when it knows the prefix; else (rendezvous) the prefix's owner.
        let preferred = -1;
        if (match.depth > 0 && match.depth >= options.min_match * pending.length) preferred = match.index;
        else if (rendezvous) preferred = prefixOwner(candidates, pending);
        if (preferred >= 0 && underBound(candidates, candidates[preferred], options.balance_factor)) {
          const holder = candidates[preferred];
          if (count <= 1) return [holder];
          return [holder].concat(leastConnected(without(candidates, [holder]), context, count - 1));
        }
      }
      return leastConnected(candidates, context, count);
    },
    afterPick(chosen: ReplicaView): void {
      if (pending !== null && pending.length > 0) recordRoute(store, pending, options.table_slots, replicaTag(chosen.id));
      pending = null;
    },
  };
}
