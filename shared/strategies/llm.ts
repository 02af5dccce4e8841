// llm — the LLM-aware composite: filters, then weighted scorers, then the best score, the way
// the Gateway API Inference Extension / llm-d scheduler composes its plugins.
//   filter   saturation: replicas whose /metrics show KV-cache usage ≥ llm.kv_saturation or
//            waiting ≥ llm.queue_saturation (per weight) are skipped while another is below
//            (if every replica is saturated, all stay: the least bad still wins on score)
//   scorers  each normalised to [0, 1], higher is better, summed with llm.*_weight:
//            queue   min-max over (running + waiting) / weight from the replicas' /metrics; a
//                    replica without fresh metrics counts its in-flight requests instead
//            kv      1 − KV-cache usage (a replica without it gets the mean of the others)
//            prefix  the share of the prompt's blocks last sent to the replica (prefix-table.ts)
//            tokens  min-max over (estimated tokens in flight + this request's) / weight
//            adapter for a request naming a LoRA adapter, when the replicas report their GPU slots
//                    (vllm:lora_requests_info): 1 where it runs or was sent recently, 0.8 a free
//                    slot, 0.6 loading or evicting a copy loaded elsewhere, 0 evicting the only copy
//                    of another adapter; 0 past models.adapter_balance_factor (model-routing.ts,
//                    adapter-slots.ts, balancer.ts placeAdapter)
//   pick     the highest total, ties at random; alternates by total.
// The pick is then recorded as the holder of the prompt's blocks, as prefix-affinity does.
// A prompt no candidate was sent any block of (prefix_affinity.placement rendezvous, the default;
// not for a LoRA adapter, whose placement decides instead): its rendezvous owner (prefix-placement.ts,
// where every gateway node sends that prefix first) gets the prefix score of min_match of its blocks
// (at least one): presumed, not known, so less than a real match of the whole prefix, and queue, KV
// and token load still outweigh it on a busy owner; enough that nodes without shared state agree on where a new prefix goes when loads are close.
// Defaults follow llm-d (queue 2, KV 2, prefix 3) plus token load 1. The shootout compared them
// with a prefix-heavy (1/1/6/1) and a load-heavy (3/3/1/2) blend over four workloads (BENCHMARKS.md):
// each of those wins where its signal dominates and loses clearly elsewhere (prefix-heavy piles onto
// the hot prefix, load-heavy throws the caches away); the default is never far from the best.
// Users who know their traffic is prefix-rich can raise prefix_weight.
// Because queue and KV come from the replicas themselves, several gateways in front of the same
// replicas see the same load. O(blocks + N × count).
// Reads: the OpenAI body, inFlight, tokens, the replicas' /metrics, weight.
// Options: llm.*, prefix_affinity.block_tokens/max_blocks/table_slots/min_match/placement,
// least_tokens.*, replica_metrics.*.

import type { BalancerConfig } from '../config/types';
import { CHARS_PER_TOKEN } from '../llm-request';
import { prefixBlockHashes } from '../prefix-blocks';
import { prefixOwner, presumedDepth } from '../prefix-placement';
import { candidateTags, deepestMatch, recordRoute, replicaTag } from '../prefix-table';
import type { ReplicaView, Store, Strategy, StrategyContext } from '../types';
import { cheapestFirst } from './ranking';

/** Scores in [0, 1] from loads (lower load = higher score), min-max over the candidates; all equal → 1. */
export function minMaxScores(loads: number[]): number[] {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < loads.length; i++) {
    if (loads[i] < min) min = loads[i];
    if (loads[i] > max) max = loads[i];
  }
  const scores: number[] = [];
  for (let i = 0; i < loads.length; i++) scores.push(max > min ? (max - loads[i]) / (max - min) : 1);
  return scores;
}

/** Candidates not saturated by their own /metrics; all of them when every one is. */
export function unsaturated(candidates: ReplicaView[], kvSaturation: number, queueSaturation: number): ReplicaView[] {
  const kept: ReplicaView[] = [];
  for (let i = 0; i < candidates.length; i++) {
    const c = candidates[i];
    const kvFull = c.kvUsage !== null && c.kvUsage >= kvSaturation;
    const queueFull = c.queue !== null && c.queue / c.weight >= queueSaturation;
    if (!kvFull && !queueFull) kept.push(c);
  }
  return kept.length > 0 ? kept : candidates;
}

export function createLlm(config: BalancerConfig, store: Store): Strategy {
  const options = config.llm;
  const prefix = config.prefix_affinity;
  const blockChars = prefix.block_tokens * CHARS_PER_TOKEN;
  const rendezvous = prefix.placement === 'rendezvous';
  let pending: number[] | null = null;
  return {
    name: 'llm',
    reads: { inFlight: true, latency: false, hashKey: false, tokens: true, body: true, replicaLoad: true },
    order(all: ReplicaView[], context: StrategyContext, count: number): ReplicaView[] {
      const candidates = unsaturated(all, options.kv_saturation, options.queue_saturation);
      const n = candidates.length;
      const queueLoads: number[] = [];
      const tokenLoads: number[] = [];
      let kvSum = 0;
      let kvKnown = 0;
      for (let i = 0; i < n; i++) {
        const c = candidates[i];
        queueLoads.push((c.queue !== null ? c.queue : c.inFlight) / c.weight);
        tokenLoads.push((c.tokens + context.requestTokens) / c.weight);
        if (c.kvUsage !== null) {
          kvSum += c.kvUsage;
          kvKnown++;
        }
      }
      const queueScores = minMaxScores(queueLoads);
      const tokenScores = minMaxScores(tokenLoads);
      const kvMean = kvKnown > 0 ? kvSum / kvKnown : 0;
      const totals: number[] = [];
      for (let i = 0; i < n; i++) {
        const kv = candidates[i].kvUsage !== null ? (candidates[i].kvUsage as number) : kvMean;
        const adapter = candidates[i].adapterAffinity;
        totals.push(options.queue_weight * queueScores[i] + options.kv_weight * (1 - kv) + options.tokens_weight * tokenScores[i] + (adapter === undefined ? 0 : options.adapter_weight * adapter));
      }
      const llm = context.llm;
      pending = llm === null ? null : prefixBlockHashes(llm.promptKey, blockChars, prefix.max_blocks, context.hashText);
      if (pending !== null && pending.length > 0 && options.prefix_weight > 0) {
        const match = deepestMatch(store, pending, prefix.table_slots, candidateTags(candidates));
        if (match.depth > 0) totals[match.index] += (options.prefix_weight * match.depth) / pending.length;
        // Not for a LoRA adapter's request (its views carry adapter scores): a presumed owner is a
        // random replica per prompt, and its pull would fight the adapter's placement (measured:
        // ~1.4x the adapter loads on chat prompts that share no prefix).
        else if (rendezvous && (n === 0 || candidates[0].adapterAffinity === undefined)) totals[prefixOwner(candidates, pending)] += (options.prefix_weight * presumedDepth(pending.length, prefix.min_match)) / pending.length;
      }
      const costs: number[] = [];
      for (let i = 0; i < n; i++) costs.push(-totals[i]);
      const ordered = cheapestFirst(candidates, costs, context.random, count);
      // Saturated replicas stay usable as the last alternates.
      if (ordered.length < count && n < all.length) {
        for (let i = 0; i < all.length && ordered.length < count; i++) if (candidates.indexOf(all[i]) < 0) ordered.push(all[i]);
      }
      return ordered;
    },
    afterPick(chosen: ReplicaView): void {
      if (pending !== null && pending.length > 0) recordRoute(store, pending, prefix.table_slots, replicaTag(chosen.id));
      pending = null;
    },
  };
}
