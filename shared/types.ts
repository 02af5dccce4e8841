// The core's vocabulary: what adapters hand in (replicas, request, clock, random, store) and what
// the core hands back (an ordered pick or a typed reason). Everything here is plain data so the
// same code runs under Node (Kong's plugin server) and njs (NGINX), and state survives JSON.

import type { LlmRequest } from './llm-request';
import type { ReplicaKeys } from './replica-state';
import type { ReplicaModels } from './model-routing';

/** Health as reported by the gateway or by active checks; passive ejection is tracked by the core. */
export type ReportedHealth = 'healthy' | 'unhealthy' | 'draining';

/** A replica as the adapter knows it right now (from static config, Kong's Admin API or NGINX Plus). */
export interface Replica {
  id: string;
  address: string;
  weight: number;
  /** Defaults to 'healthy' when the gateway reports nothing. */
  health?: ReportedHealth;
  /**
   * The replica's Store keys (shared/replica-state.ts `buildKeys(id)`), when the adapter has them
   * precomputed. njs evaluates everything afresh per request, so the NGINX module preloads them
   * with the config instead of concatenating ~17 strings per replica on every pick.
   */
  keys?: ReplicaKeys;
  /**
   * What the replica serves (declared and/or discovered by the adapter; model-routing.ts). Absent
   * on every replica: no model routing, every replica serves every request as before. Present on
   * any: the request's model filters the candidates first (null = this replica's list is unknown).
   */
  models?: ReplicaModels | null;
}

/** A replica with its live metrics, as strategies see it. Filled for every pick (the balancer reuses the objects: never keep one past the pick); read-only. */
export interface ReplicaView {
  id: string;
  address: string;
  weight: number;
  inFlight: number;
  /** Time-decayed latency estimate in ms, or null before the first sample. */
  ewmaMs: number | null;
  /** Estimated tokens of the requests in flight (prompt + expected output; least-tokens). */
  tokens: number;
  /** running + waiting as the replica's own /metrics last reported them; null when not scraped or stale. */
  queue: number | null;
  /** KV-cache usage 0..1 from the replica's /metrics; null when not scraped, not reported or stale. */
  kvUsage: number | null;
  /** Completed requests that produced a latency sample. */
  samples: number;
  /** True when the replica's passive ejection has expired and one trial request may go to it. */
  halfOpen: boolean;
  /**
   * For a request naming a LoRA adapter whose GPU slots are known: how well placed the replica
   * is to run it (model-routing.ts adapterAffinity: 1 running, 0.8 free slot, 0.6 loading, 0 full).
   * Absent otherwise.
   */
  adapterAffinity?: number;
}

/**
 * What the core needs to know about a request. Adapters fill in what the configured hash key
 * source reads; everything is optional.
 */
export interface RequestView {
  /** Header names lower-cased. */
  headers?: Record<string, string | undefined>;
  /** Query arguments. */
  query?: Record<string, string | undefined>;
  clientIp?: string | null;
  /** Identity established by the gateway's own auth (Kong consumer id, $remote_user, ...). */
  consumer?: string | null;
  /** Parsed JSON body, when the adapter read it (a body hash key, or a strategy that counts tokens). */
  body?: unknown;
  /**
   * The served model name the adapter resolved for this request (aliases and a default applied);
   * absent: the body's `model`. Only read when replicas carry `models`.
   */
  model?: string | null;
}

/** Milliseconds; monotonic is best, wall clock is acceptable. */
export interface Clock {
  now(): number;
}

/** A source of uniform numbers in [0, 1). Injected so tests can script it. */
export interface Random {
  next(): number;
}

/**
 * Where state lives. Values are numbers only, so the njs adapter can back it with a
 * `js_shared_dict_zone type=number` (whose incr is atomic across workers) and Kong's with module memory.
 */
export interface Store {
  get(key: string): number | undefined;
  set(key: string, value: number): void;
  /** Atomically adds delta (starting from init when absent) and returns the new value. */
  incr(key: string, delta: number, init?: number): number;
  delete(key: string): void;
}

/**
 * model-not-found: the replicas' model lists are all known and none serves the request's model (404).
 * saturated: admission is on and every candidate is saturated (shared/saturation.ts): the adapter
 * holds the request in its admission queue and picks again when capacity frees.
 */
export type NoReplicaReason = 'no-replicas' | 'no-healthy-replica' | 'model-not-found' | 'saturated';

export type PickResult =
  /**
   * `tokens`: the request's estimated tokens when the strategy counts them (else 0). The adapter
   * hands the same number to onStart and, in the Outcome, to onEnd of every attempt.
   */
  | {
      ok: true;
      replicas: Replica[];
      tokens: number;
      /** The prompt's part of `tokens` (0 when unknown): an adapter that sees the first streamed byte may release it then (releaseTokens). */
      promptTokens: number;
    }
  | { ok: false; reason: NoReplicaReason; message: string };

export type ErrorKind = 'connect-error' | 'timeout' | 'aborted';

/** How one attempt on one replica ended. */
export interface Outcome {
  /** HTTP status from the replica, or 0 when none arrived. */
  status: number;
  /** End-to-end latency of the attempt in ms. */
  latencyMs: number;
  /** Time to first response byte in ms, when the gateway reports it. */
  ttftMs?: number | null;
  /** Time per output token in ms (output-tokens.ts), when the gateway saw the response's tokens. */
  tpotMs?: number | null;
  /** Set when the attempt failed below HTTP. 'aborted' = the client went away (not the replica's fault). */
  error?: ErrorKind | null;
  /** The tokens onStart counted for this attempt (PickResult.tokens), released now. */
  tokens?: number;
}

export interface MetricReads {
  /** inFlight */
  inFlight: boolean;
  /** ewmaMs and samples */
  latency: boolean;
  /** context.hashKey (null unless read) */
  hashKey: boolean;
  /** tokens, and context.requestTokens (the request's body is then parsed) */
  tokens: boolean;
  /** context.llm: the request's OpenAI body, parsed (the adapter must then read the body) */
  body: boolean;
  /** queue and kvUsage: the replicas' own /metrics (the adapter must then scrape them) */
  replicaLoad: boolean;
}

/** Everything a strategy may read when ordering candidates. */
export interface StrategyContext {
  request: RequestView;
  /** The hash key resolved from the configured source, or null. */
  hashKey: string | null;
  /** This request's estimated tokens (prompt + expected output) when the strategy reads tokens, else 0. */
  requestTokens: number;
  /** The request's OpenAI body when the strategy reads it and it is one, else null. */
  llm: LlmRequest | null;
  random: Random;
  now: number;
  /** Atomically advances the named cursor and returns its value before the increment. */
  nextCursor(name: string): number;
  /** The hash of prompt blocks (BalancerDeps.hashText, prefix-blocks.ts); hashString when absent. */
  hashText?: (text: string) => number;
}

/**
 * A strategy orders the eligible candidates: the first is the pick, the rest are failover
 * alternates in preference order. It may return fewer than `count` but never duplicates.
 * Strategies never mutate metrics; the only state they touch is their cursors.
 */
export interface Strategy {
  name: string;
  /** The metrics `order` looks at; the others are left at 0 / null in the views (saves reads per pick). */
  reads: MetricReads;
  order(candidates: ReplicaView[], context: StrategyContext, count: number): ReplicaView[];
  /**
   * Called once per pick with the replica finally chosen (after half-open trials were settled).
   * For routing memory that is not a metric (prefix-affinity's table of routed prefixes).
   */
  afterPick?(chosen: ReplicaView, context: StrategyContext): void;
  /**
   * Token-counting strategies that know the chosen replica holds part of the prompt in its cache:
   * how many of context.requestTokens' prompt tokens not to count on it (called right after order).
   */
  cachedPromptTokens?(chosen: ReplicaView, context: StrategyContext): number;
}
