// least-tokens — fewest estimated tokens in flight relative to capacity (token-aware load).
// A connection count treats a 10-token question and a 4,000-token prompt alike; an LLM replica's
// work is its tokens: prefill grows with the prompt, the batch slot is held for every output token,
// and the KV cache fills with both. Load = the estimated tokens of the requests in flight on the
// replica (prompt + expected output, counted at start and released at the end of each attempt,
// shared/replica-state.ts), the same idea as llm-d's token-aware "sticky until saturated" routing
// and the Gateway API Inference Extension's KV-cache scorers, from the gateway's own bookkeeping.
// Cost = (tokens in flight + this request's tokens) / weight; ties (an idle fleet) at random.
// The request's estimate comes from its OpenAI body (shared/llm-request.ts): prompt tokens by the
// ~4 characters per token rule, plus max_tokens capped at least_tokens.max_output_tokens (or
// least_tokens.default_output_tokens when unset); a request without a readable body counts
// least_tokens.default_request_tokens. O(N × count). Reads: tokens, weight.
// Options: least_tokens.default_output_tokens, max_output_tokens, default_request_tokens.

import type { BalancerConfig } from '../config/types';
import { readLlmRequest } from '../llm-request';
import type { LlmRequest } from '../llm-request';
import type { ReplicaView, Strategy, StrategyContext } from '../types';
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

export function createLeastTokens(): Strategy {
  return {
    name: 'least-tokens',
    reads: { inFlight: false, latency: false, hashKey: false, tokens: true, body: true, replicaLoad: false },
    order(candidates: ReplicaView[], context: StrategyContext, count: number): ReplicaView[] {
      const own = context.requestTokens;
      return cheapestFirst(candidates, (replica) => (replica.tokens + own) / replica.weight, context.random, count);
    },
  };
}
