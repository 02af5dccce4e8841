// least-tokens — fewest estimated tokens in flight relative to capacity (token-aware load).
// A connection count treats a 10-token question and a 4,000-token prompt alike; an LLM replica's
// work is its tokens: prefill grows with the prompt, the batch slot is held for every output token,
// and the KV cache fills with both. Load = the estimated tokens of the requests in flight on the
// replica (prompt + expected output, counted at start and released at the end of each attempt,
// shared/replica-state.ts), the same idea as llm-d's token-aware "sticky until saturated" routing
// and the Gateway API Inference Extension's KV-cache scorers, from the gateway's own bookkeeping.
// Cost = (tokens in flight + this request's tokens) / weight; ties (an idle fleet) at random.
// Uncached prompt (least_tokens.discount_cached_prefix, on by default): the part of the prompt a
// replica was last sent (prefix_affinity's block table, shared/prefix-table.ts) is likely still in
// its prefix cache and costs it no prefill, so on that replica only the rest counts — in the cost
// and in what is counted in flight once it is chosen. The pick is recorded in the table. A
// conversation's next turn thus stays where its history is until the load says otherwise:
// llm-d's "sticky until saturated", from the gateway's own bookkeeping.
// A prompt no candidate was sent any block of (prefix_affinity.placement rendezvous, the default):
// its rendezvous owner (prefix-placement.ts, the replica every gateway node sends that prefix to
// first) is presumed to hold min_match of its blocks (at least one) for the ORDER only: it wins
// among replicas loaded within that many tokens, so nodes without shared state agree on where a new
// prefix goes. Only presumed: it is not counted as cached in flight (the full prompt is).
// The request's estimate comes from its OpenAI body (shared/llm-request.ts): prompt tokens by the
// ~4 characters per token rule, plus max_tokens capped at least_tokens.max_output_tokens (or
// least_tokens.default_output_tokens when unset); a request without a readable body counts
// least_tokens.default_request_tokens. O(N × count). Reads: tokens, weight.
// prefill_weight (default 1) weighs a prompt token the replica would prefill against a token in
// flight, in the order only (what is counted in flight stays the estimate): above 1 a prompt stays
// with its prefix's replica under more load, as Dynamo's KV router weighs prefill blocks
// (overlap_score_weight) — measured on fleet-prefixes in BENCHMARKS.md.
// Options: least_tokens.default_output_tokens, max_output_tokens, default_request_tokens,
// discount_cached_prefix, prefill_weight; prefix_affinity.block_tokens, max_blocks, table_slots (the table),
// min_match and placement (the unknown prefix's owner).

import type { BalancerConfig } from '../config/types';
import { CHARS_PER_TOKEN, readLlmRequest } from '../llm-request';
import type { LlmRequest } from '../llm-request';
import { prefixBlockHashes } from '../prefix-blocks';
import { prefixOwner, presumedDepth } from '../prefix-placement';
import { candidateTags, matchDepths, recordRoute, replicaTag } from '../prefix-table';
import type { ReplicaView, Store, Strategy, StrategyContext } from '../types';
import { cheapestFirst } from './ranking';

/** A request's estimated tokens: prompt + expected output; no OpenAI body (null): the configured default. */
export function tokensOf(config: BalancerConfig, llm: LlmRequest | null): number {
  const options = config.least_tokens;
  if (llm === null) return options.default_request_tokens;
  const output = llm.maxTokens === null ? options.default_output_tokens : Math.min(llm.maxTokens, options.max_output_tokens);
  return llm.promptTokens + output;
}

/** The OpenAI request in a parsed JSON body, or null (absent, not JSON, not OpenAI). */
export function llmRequestOf(body: unknown): LlmRequest | null {
  if (body === undefined || body === null) return null;
  const parsed = readLlmRequest(body);
  return parsed.ok ? parsed.request : null;
}

/** tokensOf the parsed JSON body. */
export function requestTokenEstimate(config: BalancerConfig, body: unknown): number {
  return tokensOf(config, llmRequestOf(body));
}

export function createLeastTokens(config: BalancerConfig, store: Store): Strategy {
  const discount = config.least_tokens.discount_cached_prefix;
  const prefillWeight = config.least_tokens.prefill_weight;
  const prefix = config.prefix_affinity;
  const blockChars = prefix.block_tokens * CHARS_PER_TOKEN;
  const rendezvous = prefix.placement === 'rendezvous';
  // Set by `order`, read by cachedPromptTokens and afterPick in the same synchronous pick: the
  // prompt's block chain, and the cached prompt tokens per candidate id.
  let pending: number[] | null = null;
  let cachedById: Record<string, number> | null = null;
  return {
    name: 'least-tokens',
    reads: { inFlight: false, latency: false, hashKey: false, tokens: true, body: true, replicaLoad: false },
    order(candidates: ReplicaView[], context: StrategyContext, count: number): ReplicaView[] {
      const own = context.requestTokens;
      const llm = context.llm;
      pending = discount && llm !== null ? prefixBlockHashes(llm.promptKey, blockChars, prefix.max_blocks, context.hashText) : null;
      cachedById = null;
      // Costs computed in these loops, not by a closure per request and a call per candidate.
      const costs: number[] = [];
      if (pending === null || pending.length === 0 || llm === null) {
        for (let i = 0; i < candidates.length; i++) costs.push((candidates[i].tokens + own) / candidates[i].weight);
        return cheapestFirst(candidates, costs, context.random, count);
      }
      const depths = matchDepths(store, pending, prefix.table_slots, candidateTags(candidates));
      const cached: Record<string, number> = Object.create(null);
      let known = false;
      for (let i = 0; i < candidates.length; i++) {
        cached[candidates[i].id] = Math.min(llm.promptTokens, depths[i] * prefix.block_tokens);
        if (depths[i] > 0) known = true;
      }
      cachedById = cached;
      if (!known && rendezvous) {
        // Nobody here was sent this prefix: presume its owner holds some of it, for the order only.
        const owner = prefixOwner(candidates, pending);
        const presumed = Math.min(llm.promptTokens, presumedDepth(pending.length, prefix.min_match) * prefix.block_tokens);
        // Every other candidate would prefill the whole prompt: only the owner's presumed part weighs prefill_weight less.
        for (let i = 0; i < candidates.length; i++) costs.push((candidates[i].tokens + own - (i === owner ? presumed * prefillWeight : 0)) / candidates[i].weight);
        return cheapestFirst(candidates, costs, context.random, count);
      }
      // The prompt a replica would prefill weighs prefill_weight times a token in flight (1: plain token load).
      const extra = prefillWeight - 1;
      for (let i = 0; i < candidates.length; i++) {
        const hit = cached[candidates[i].id];
        costs.push((candidates[i].tokens + own - hit + extra * (llm.promptTokens - hit)) / candidates[i].weight);
      }
      return cheapestFirst(candidates, costs, context.random, count);
    },
    cachedPromptTokens(chosen: ReplicaView): number {
      const cached = cachedById === null ? undefined : cachedById[chosen.id];
      return cached === undefined ? 0 : cached;
    },
    afterPick(chosen: ReplicaView): void {
      if (pending !== null && pending.length > 0) recordRoute(store, pending, prefix.table_slots, replicaTag(chosen.id));
      pending = null;
      cachedById = null;
    },
  };
}
