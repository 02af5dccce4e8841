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
import type { ReplicaView, Strategy, StrategyContext } from '../types';
import { cheapestFirst } from './ranking';

/** A request's estimated tokens from its parsed JSON body (undefined or not OpenAI: the configured default). */
export function requestTokenEstimate(config: BalancerConfig, body: unknown): number {
  const options = config.least_tokens;
  if (body === undefined || body === null) return options.default_request_tokens;
  const parsed = readLlmRequest(body);
  if (!parsed.ok) return options.default_request_tokens;
  const maxTokens = parsed.request.maxTokens;
  const output = maxTokens === null ? options.default_output_tokens : Math.min(maxTokens, options.max_output_tokens);
  return parsed.request.promptTokens + output;
}

export function createLeastTokens(): Strategy {
  return {
    name: 'least-tokens',
    reads: { inFlight: false, latency: false, hashKey: false, tokens: true },
    order(candidates: ReplicaView[], context: StrategyContext, count: number): ReplicaView[] {
      const own = context.requestTokens;
      return cheapestFirst(candidates, (replica) => (replica.tokens + own) / replica.weight, context.random, count);
    },
  };
}
