// The balancer: the one entry point both adapters call. It owns the steps around every strategy:
//   eligibility (health, ejection, draining, weight 0, half-open trials) → strategy order →
//   failover list of 1 + retries distinct replicas, or a typed reason when none can serve.
// and the outcome side: onStart / onEnd update in-flight counts, latency estimates, passive health.
// Replicas are passed in on every call because the adapter owns where they come from (static
// config, Kong's Admin API, the NGINX Plus API) and they may change at any time.

import type { BalancerConfig } from './config/types';
import type { Clock, MetricReads, Outcome, PickResult, Random, Replica, ReplicaView, RequestView, Store, StrategyContext } from './types';
import { activelyUnhealthy, anyActivelyUnhealthy } from './health/active';
import { claimTrial, classifyOutcome, passiveState, recordVerdict, trialInProgress } from './health/passive';
import { resolveHashKey } from './hash-key';
import { blankView, buildView, keysOf, loadSignals, readLatency, readNumber, readPrefixCounters, recordEnd, recordLatency, recordPrefixCounters, recordReplicaLoad, recordStart } from './replica-state';
import { parseReplicaMetrics } from './replica-metrics';
import type { ReplicaKeys } from './replica-state';
import { createStrategy } from './strategies/index';
import { llmRequestOf, tokensOf } from './strategies/least-tokens';
import { slowStartFactor } from './slow-start';
import { prefixBlockHashes } from './prefix-blocks';
import type { TextHash } from './prefix-blocks';
import { slotKey } from './prefix-table';
import { CHARS_PER_TOKEN } from './llm-request';
import type { StrategyName } from './config/types';
import type { SlowStartConfig } from './slow-start';
import { ADAPTER_SLOTS_FULL, adapterBase, adapterFilter, adapterScores, bodyModel, modelList, modelPromptKey, replicasForModel, requestedModel, underLoadBound } from './model-routing';
import type { ServedModels } from './model-discovery';
import type { AdapterCandidate, ModelCard, ReplicaModels } from './model-routing';
import { MAX_TRACKED_SLOTS, adapterTag, recordSentAdapter, sentAdapters } from './adapter-slots';
import { poolRoom, poolSaturated } from './saturation';
import type { LoadSignals, SaturationLimits } from './saturation';

export interface ModelListDocument {
  object: 'list';
  data: ModelCard[];
}

function isArray(value: Replica[] | PickResult): value is Replica[] {
  return Array.isArray(value);
}

/**
 * A pick's LoRA adapter: its tag, the slot count of each candidate whose slots are tracked,
 * adapterFilter's kept indexes (null: no filter) and each candidate's in flight per weight.
 */
interface AdapterPlacement {
  tag: number;
  slots: Record<string, number>;
  kept: number[] | null;
  loads: number[];
}

export interface BalancerDeps {
  store: Store;
  clock: Clock;
  random: Random;
  /**
   * The hash of the prompt's blocks for prefix affinity (prefix-blocks.ts TextHash): the NGINX
   * module gives nginx's native MD5; without it, hashString in JavaScript. Every gateway node
   * sharing a prefix table must use the same one (prefixTableKeys takes it too).
   */
  hashText?: TextHash;
}

export type ReplicaState = 'healthy' | 'unhealthy' | 'draining' | 'disabled' | 'ejected' | 'half-open' | 'stuck';

/** One row of the status page. */
export interface ReplicaStatus {
  id: string;
  address: string;
  weight: number;
  state: ReplicaState;
  ejectedUntil: number | null;
  ejections: number;
  inFlight: number;
  ewmaMs: number | null;
  ttftMs: number | null;
  /** Time per output token estimate (absent before the first sample). */
  tpotMs: number | null;
  /** Estimated tokens in flight (counted only by strategies that read tokens). */
  tokens: number;
  /** running + waiting from the replica's /metrics (null: not scraped, or stale). */
  queue: number | null;
  /** KV-cache usage 0..1 from the replica's /metrics (null: not scraped, not reported, or stale). */
  kvUsage: number | null;
  /**
   * The replica's own prefix-cache counters from its /metrics, in tokens: looked up in the cache,
   * and found there (replica-metrics.ts ReplicaLoad; null: not scraped, not reported, or stale).
   * Counters since the replica started: a restart starts them over.
   */
  prefixQueries: number | null;
  prefixHits: number | null;
  samples: number;
  picks: number;
  failures: number;
}

export interface Balancer {
  readonly config: BalancerConfig;
  /** What the configured strategy reads (readsTokens(config) and friends, without building it again). */
  readonly reads: MetricReads;
  /**
   * The replica to use first, then up to `retries` distinct alternates; or why there is none.
   * `admitted`: a waiting room granted the request its place (room() counted it in), so the
   * pool's saturation is not judged again: it would send the request back to the end of the wait.
   */
  pick(replicas: Replica[], request: RequestView, admitted?: boolean): PickResult;
  /**
   * admission.*: how many more requests the request's pool takes before it is saturated
   * (shared/saturation.ts poolRoom); Infinity without admission, or when the pool has no candidate
   * to wait for (its requests then get the pick's own answer).
   */
  room(replicas: Replica[], request: RequestView): number;
  /**
   * An attempt on this replica (or replica id) begins: call for the pick and each failover attempt,
   * with the pick's `tokens` (counted until the Outcome hands them back to onEnd).
   */
  onStart(replica: Replica | string, tokens?: number): void;
  /** That attempt ended. `replicas` is the current list (for the ejection cap). */
  onEnd(replicas: Replica[], replica: Replica | string, outcome: Outcome): void;
  /**
   * The replica showed progress on an attempt still going (its first response byte): a replica
   * streaming long answers is not stuck. Optional for adapters; an attempt's end counts anyway.
   */
  onProgress(replica: Replica | string): void;
  status(replicas: Replica[]): ReplicaStatus[];
  /**
   * The gateway's GET /v1/models: what the replicas that may take traffic serve (declared lists
   * first, then what the adapter attached), plus the aliases; null when no list is known.
   */
  modelList(replicas: Replica[]): ModelListDocument | null;
  /**
   * The text of a replica's /metrics, as the adapter's scraper read it (vLLM or SGLang names,
   * replica-metrics.ts). Returns whether it held a usable load; when not, the last values age out.
   */
  onReplicaMetrics(replica: Replica | string, text: string): boolean;
  /**
   * Requests a body-reading strategy (least-tokens, prefix-affinity, llm) could not read as an
   * OpenAI request (no body, not JSON, too large, no messages or prompt) and placed without it.
   */
  requestsWithoutLlmBody(): number;
  /**
   * Releases part of what onStart counted before the attempt ends: the prompt's tokens once the
   * first streamed byte shows its prefill is done (the Outcome then carries only the rest).
   */
  releaseTokens(replica: Replica | string, tokens: number): void;
}

/** The replicas given statically in the config, all reported healthy. */
export function replicasFromConfig(config: BalancerConfig): Replica[] {
  const replicas: Replica[] = [];
  for (let i = 0; i < config.replicas.length; i++) {
    const r = config.replicas[i];
    replicas.push({ id: r.id, address: r.address, weight: r.weight });
  }
  return replicas;
}

/** Whether the configured strategy uses the request's hash key (else the adapter need not read it). */
export function readsHashKey(config: BalancerConfig): boolean {
  return config.hash_key !== null && createStrategy(config, config.strategy).reads.hashKey;
}

/** Whether the configured strategy counts tokens (least-tokens, or a key strategy falling back to it). */
export function readsTokens(config: BalancerConfig): boolean {
  return createStrategy(config, config.strategy).reads.tokens;
}

/** Whether picks place LoRA adapters by the replicas' GPU slots: llm's adapter scorer, or models.adapter_filter for the other strategies. */
export function placesAdapters(config: BalancerConfig): boolean {
  return config.strategy === 'llm' ? config.llm.adapter_weight > 0 : filtersAdapters(config);
}

/** models.adapter_filter in force: a strategy other than llm picks among the best-placed replicas for an adapter. */
function filtersAdapters(config: BalancerConfig): boolean {
  return config.strategy !== 'llm' && config.models.adapter_filter;
}

/** Whether the gateway scrapes the replicas' own /metrics: the strategy reads their load, models.adapter_filter their LoRA slots, or admission their saturation. */
export function readsReplicaLoad(config: BalancerConfig): boolean {
  return createStrategy(config, config.strategy).reads.replicaLoad || filtersAdapters(config) || admitsByMetrics(config);
}

/** Admission judges saturation by the replicas' /metrics (admission.saturation metrics or both). */
function admitsByMetrics(config: BalancerConfig): boolean {
  return config.admission.enabled && config.admission.saturation !== 'concurrency';
}

/** What saturates a replica under this config's admission (shared/saturation.ts); null when admission is off. */
export function saturationLimits(config: BalancerConfig): SaturationLimits | null {
  const admission = config.admission;
  if (!admission.enabled) return null;
  return {
    metrics: admission.saturation !== 'concurrency',
    queueThreshold: admission.queue_threshold,
    kvThreshold: admission.kv_threshold,
    maxConcurrency: admission.saturation === 'metrics' ? 0 : admission.max_concurrency,
  };
}

/** Whether the configured strategy reads the OpenAI body (token counts, prompt prefixes). */
export function readsBody(config: BalancerConfig): boolean {
  const reads = createStrategy(config, config.strategy).reads;
  return reads.body || reads.tokens;
}

/** Whether a pick with this strategy (or the consistent-hash fallback it uses) consults the prefix table. */
export function consultsPrefixTable(config: BalancerConfig): boolean {
  const name: StrategyName = config.strategy === 'consistent-hash' ? config.consistent_hash.fallback : config.strategy;
  if (name === 'prefix-affinity') return true;
  if (name === 'llm') return config.llm.prefix_weight > 0;
  if (name === 'least-tokens') return config.least_tokens.discount_cached_prefix;
  return false;
}

/**
 * The Store keys of the prefix table a pick of this request reads (the prompt's block slots), so an
 * adapter keeping the table elsewhere (Kong with Redis) can fetch exactly them before the
 * synchronous pick; empty when the strategy does not consult the table or the body is no OpenAI request.
 * `attachedModels`: the adapter attaches what the replicas serve (Replica.models) to this pick; the
 * chains then start from the model, as in pick().
 */
export function prefixTableKeys(config: BalancerConfig, request: RequestView, attachedModels?: boolean, hashText?: TextHash): string[] {
  if (!consultsPrefixTable(config)) return [];
  const llm = llmRequestOf(request.body);
  if (llm === null) return [];
  const prefix = config.prefix_affinity;
  let key = llm.promptKey;
  if (attachedModels === true || routesByModel(config)) {
    const model = request.model !== undefined ? request.model : bodyModel(request.body, config.models.aliases, config.models.default);
    if (model !== null) key = modelPromptKey(model, key);
  }
  const hashes = prefixBlockHashes(key, prefix.block_tokens * CHARS_PER_TOKEN, prefix.max_blocks, hashText);
  const keys: string[] = [];
  for (let i = 0; i < hashes.length; i++) keys.push(slotKey(hashes[i], prefix.table_slots));
  return keys;
}

/** Whether a request's body may be rewritten before proxying (models.aliases, models.default). */
export function rewritesModel(config: BalancerConfig): boolean {
  return config.models.aliases.length > 0 || config.models.default !== null;
}

/**
 * The served name to write into the body's `model` before proxying: the alias's target, or the
 * default for a body naming none; null when the body goes as it is.
 */
export function modelRewrite(config: BalancerConfig, body: unknown): string | null {
  const resolved = bodyModel(body, config.models.aliases, config.models.default);
  return resolved !== null && resolved !== requestedModel(body) ? resolved : null;
}

/** Whether the request's model decides where it may go, or is rewritten (models.*): the body must be read. */
export function routesByModel(config: BalancerConfig): boolean {
  const models = config.models;
  return models.declared.length > 0 || models.aliases.length > 0 || models.default !== null;
}

/** Whether the adapter must read and parse the JSON body before picking (it is slow: read it only then). */
export function needsRequestBody(config: BalancerConfig): boolean {
  if (readsBody(config) || routesByModel(config) || filtersAdapters(config)) return true;
  return config.hash_key !== null && config.hash_key.source === 'body' && readsHashKey(config);
}

/** Why the gateway, the operator or active checks keep this replica out; null when they do not. */
function reportedOut(replica: Replica, keys: ReplicaKeys, store: Store, checkMarks: boolean): ReplicaState | null {
  if (replica.weight <= 0) return 'disabled';
  if (replica.health === 'draining') return 'draining';
  if (replica.health === 'unhealthy' || (checkMarks && activelyUnhealthy(store, keys))) return 'unhealthy';
  return null;
}

/**
 * Stuck-replica detection (passive_health.stuck_after_s), for every strategy: a replica that has
 * held requests for that long without progress (no attempt answered, no first byte) while another
 * replica progressed gets no new requests. A hung engine keeps accepting connections and passing
 * /health, and its requests only fail when their timeouts run out; meanwhile a load-blind strategy
 * (round robin) would keep feeding it, and a load-aware one would until its in-flight count stood
 * out. Progress on the replica, or all of them stalling alike (a shared cause), lets it back; so
 * does one pick per stuck_after_s (a count left behind by a lost log phase must not rest a healthy
 * replica for good: the trial request shows progress).
 * Judged from the replica's in-flight count and last progress, read by the caller: since the later
 * of its progress and when it became busy. Progress within stuck_after_s clears it without reading
 * when it became busy.
 */
function stuckGiven(store: Store, keys: ReplicaKeys, inFlight: number, progress: number, now: number, stuckMs: number): boolean {
  if (inFlight <= 0 || now - progress < stuckMs) return false;
  const busy = readNumber(store, keys.busySince);
  const since = busy > progress ? busy : progress;
  // 0: counted before stuck detection was on (a config change); unknown, so not judged.
  return since > 0 && now - since >= stuckMs;
}

/** Requests a body-reading strategy placed without an OpenAI body. */
const WITHOUT_LLM_BODY_KEY = 'c:no-llm-body';

/** When this balancer state first picked (slow start tells a gateway start from a new replica by it). */
const STATE_BORN_KEY = 'ss:born';
/** Replicas first seen within this long of STATE_BORN_KEY were there before the gateway started. */
const ESTABLISHED_WITHIN_MS = 1000;

export function createBalancer(config: BalancerConfig, deps: BalancerDeps): Balancer {
  const store = deps.store;
  const strategy = createStrategy(config, config.strategy, store);
  const readsLlm = strategy.reads.body || strategy.reads.tokens;
  const halfLifeMs = config.response_time.half_life_s * 1000;
  const loadFreshMs = config.replica_metrics.stale_after_s * 1000;
  // response_time.latency_metric: the estimate latency-reading strategies see (whole response, first byte, per output token).
  const latencyMetric = config.response_time.latency_metric;
  const passive = config.passive_health;
  const stuckMs = passive.enabled ? passive.stuck_after_s * 1000 : 0;
  const wanted = 1 + config.retries;
  const admission = saturationLimits(config);
  const slowStart: SlowStartConfig | null =
    config.slow_start.window_s > 0
      ? { windowS: config.slow_start.window_s, aggression: config.slow_start.aggression, minWeightPercent: config.slow_start.min_weight_percent }
      : null;

  /**
   * Slow start's weight multiplier for a candidate. A replica first seen in the gateway's first
   * second (its state is that young) is established: the gateway started, not the replica. One
   * seen later is new, available from now; recoveries reset the time (outOfService below,
   * health/passive.ts, health/active.ts). Rounded up to 1/20 steps: weighted round robin builds a
   * cycle per distinct weight vector, and a continuous ramp would build a new one per request.
   */
  function rampOf(keys: ReplicaKeys, now: number): number {
    if (slowStart === null) return 1;
    let since = store.get(keys.availableSince);
    if (since === undefined) {
      let born = store.get(STATE_BORN_KEY);
      if (born === undefined) {
        store.set(STATE_BORN_KEY, now);
        born = now;
      }
      since = now - born < ESTABLISHED_WITHIN_MS ? now - slowStart.windowS * 1000 : now;
      store.set(keys.availableSince, since);
    }
    const factor = slowStartFactor(slowStart, since, now);
    return factor >= 1 ? 1 : Math.ceil(factor * 20) / 20;
  }

  /**
   * A replica out of service (reported unhealthy or draining by the gateway or active checks,
   * weight 0, ejected) forgets when it became available: whichever way it comes back (Kong's
   * health, NGINX Plus, an operator's weight), slow start ramps it from then.
   */
  function outOfService(keys: ReplicaKeys): void {
    if (slowStart !== null && store.get(keys.availableSince) !== undefined) store.delete(keys.availableSince);
  }
  // One context object reused by every pick (strategies never keep it): a pick allocates less.
  const context: StrategyContext = {
    request: {},
    hashKey: null,
    requestTokens: 0,
    llm: null,
    random: deps.random,
    now: 0,
    nextCursor: (name: string) => store.incr('c:' + name, 1, 0) - 1,
    hashText: deps.hashText,
  };

  /** Whether the replica holds requests that made no progress for stuck_after_s (see stuckGiven). */
  function isStuck(keys: ReplicaKeys, now: number): boolean {
    return stuckGiven(store, keys, readNumber(store, keys.inFlight), readNumber(store, keys.progressAt), now, stuckMs);
  }

  /**
   * Drops the stuck candidates while another replica progressed within stuck_after_s and a
   * candidate that is not stuck remains; lets each stuck one back for one pick per stuck_after_s.
   * `stuckKeys[i]` holds the keys of views[i] when it is stuck.
   */
  function withoutStuck(views: ReplicaView[], stuckKeys: Array<ReplicaKeys | undefined>, now: number): ReplicaView[] {
    const kept: ReplicaView[] = [];
    for (let i = 0; i < views.length; i++) {
      const keys = stuckKeys[i];
      if (keys === undefined) {
        kept.push(views[i]);
      } else if (now - readNumber(store, keys.stuckTrialAt) >= stuckMs) {
        store.set(keys.stuckTrialAt, now);
        kept.push(views[i]);
      }
    }
    return kept.length > 0 ? kept : views;
  }

  // The candidates' views, reused from pick to pick (the k-th candidate of every pick fills the
  // k-th): under QuickJS the balancer lives as long as its context, and a view built per replica
  // per pick cost ~0.4 µs each (measured, bench/core-cases under njs's QuickJS; a third of a
  // candidate's cost). Views never outlive a pick: the result hands back the adapter's replicas.
  // The list holding them is new per pick (emptying an array by its length measured slower).
  const views: ReplicaView[] = [];

  /** The reusable view for the k-th candidate of a pick. */
  function viewFor(k: number): ReplicaView {
    while (views.length <= k) views.push(blankView());
    return views[k];
  }

  function candidatesOf(replicas: Replica[], now: number): ReplicaView[] {
    const candidates: ReplicaView[] = [];
    const checkMarks = anyActivelyUnhealthy(store);
    // Stuck detection: the keys of stuck candidates (by view index), and whether any replica not
    // stuck progressed within stuck_after_s (else all stall alike and none is singled out).
    let stuckKeys: Array<ReplicaKeys | undefined> | null = null;
    let othersProgress = false;
    for (let i = 0; i < replicas.length; i++) {
      const replica = replicas[i];
      const keys = replica.keys !== undefined ? replica.keys : keysOf(replica.id);
      let stuck = false;
      // Read once here and handed to the view: every read is a call into the shared dict.
      let inFlight: number | undefined;
      if (stuckMs > 0) {
        const progress = readNumber(store, keys.progressAt);
        inFlight = readNumber(store, keys.inFlight);
        stuck = stuckGiven(store, keys, inFlight, progress, now, stuckMs);
        if (!stuck && now - progress < stuckMs) othersProgress = true;
      }
      if (reportedOut(replica, keys, store, checkMarks) !== null) {
        outOfService(keys);
        continue;
      }
      const state = passive.enabled ? passiveState(store, keys, now) : 'active';
      if (state === 'ejected') {
        outOfService(keys);
        continue;
      }
      if (state === 'half-open' && trialInProgress(store, keys, now, passive)) continue;
      if (stuck) {
        if (stuckKeys === null) stuckKeys = [];
        stuckKeys[candidates.length] = keys;
      }
      const view = viewFor(candidates.length);
      candidates.push(buildView(store, replica, keys, strategy.reads, now, halfLifeMs, state === 'half-open', slowStart === null ? undefined : rampOf(keys, now), loadFreshMs, latencyMetric, inFlight, view));
    }
    return stuckKeys !== null && othersProgress && candidates.length > 1 ? withoutStuck(candidates, stuckKeys, now) : candidates;
  }

  function panicCandidates(replicas: Replica[], now: number): ReplicaView[] {
    const views: ReplicaView[] = [];
    for (let i = 0; i < replicas.length; i++) {
      const replica = replicas[i];
      const keys = replica.keys !== undefined ? replica.keys : keysOf(replica.id);
      if (replica.weight > 0) views.push(buildView(store, replica, keys, strategy.reads, now, halfLifeMs, false, undefined, loadFreshMs, latencyMetric));
    }
    return views;
  }

  /** Keeps a half-open replica only as the pick, and only if this request wins its single trial. */
  function settleTrials(ordered: ReplicaView[], now: number): ReplicaView[] {
    const kept: ReplicaView[] = [];
    for (let i = 0; i < ordered.length; i++) {
      const view = ordered[i];
      if (!view.halfOpen) kept.push(view);
      else if (kept.length === 0 && claimTrial(store, keysOf(view.id), now, passive)) kept.push(view);
    }
    return kept;
  }

  // What the config declares each replica serves (models.declared, by id or address).
  const declaredModels = Object.create(null) as Record<string, ServedModels>;
  let anyDeclared = false;
  for (let i = 0; i < config.models.declared.length; i++) {
    // Copied: njs gives a preloaded config's arrays a null prototype (no indexOf).
    const listed = config.models.declared[i].models;
    const bases: string[] = [];
    for (let j = 0; j < listed.length; j++) bases.push(listed[j]);
    declaredModels[config.models.declared[i].replica] = { bases: bases, adapters: {} };
    anyDeclared = true;
  }

  // The llm composite scores LoRA-adapter affinity (llm.adapter_weight); other strategies may filter by it.
  const scoresAdapters = config.strategy === 'llm' && placesAdapters(config);
  const filtersByAdapter = filtersAdapters(config);
  // The model is part of every prefix chain (and may filter) whenever the config names models.
  const modelConfigured = routesByModel(config);

  /** Whether the adapter attached what any replica serves (discovery). */
  function attachedModels(replicas: Replica[]): boolean {
    for (let i = 0; i < replicas.length; i++) if (replicas[i].models !== undefined) return true;
    return false;
  }

  /** A replica's models: the declared list (never asked) before what the adapter discovered. */
  function modelsOf(replica: Replica): ReplicaModels | null {
    const own = replica.models === undefined ? null : replica.models;
    const declared = declaredModels[replica.id] !== undefined ? declaredModels[replica.id] : declaredModels[replica.address];
    if (declared === undefined) return own;
    return { served: declared, lora: own === null ? null : own.lora };
  }

  /** The served model a request asks for: the adapter's resolution, else the body's through the aliases and default. */
  function modelOf(request: RequestView): string | null {
    if (request.model !== undefined) return request.model;
    return bodyModel(request.body, config.models.aliases, config.models.default);
  }

  /**
   * The replicas that may serve the request's model, when models are declared or the adapter
   * attached what each serves (model-routing.ts): a new array (pick() tells a routed request by
   * it); the list itself otherwise; or the failed pick saying why none may.
   */
  function forModel(replicas: Replica[], request: RequestView, attached: boolean): Replica[] | PickResult {
    if (!anyDeclared && !attached) return replicas;
    const model = modelOf(request);
    if (model === null) return replicas;
    const ids: string[] = [];
    const models: Array<ReplicaModels | null> = [];
    for (let i = 0; i < replicas.length; i++) {
      ids.push(replicas[i].id);
      models.push(modelsOf(replicas[i]));
    }
    const candidates = replicasForModel(ids, models, model, config.models.dynamic_lora, adapterBase(model, models));
    if (candidates.kind === 'not-found') return { ok: false, reason: 'model-not-found', message: 'The model `' + model + '` does not exist.' };
    if (candidates.kind === 'any') return replicas;
    const kept: Replica[] = [];
    for (let i = 0; i < replicas.length; i++) if (candidates.ids.indexOf(replicas[i].id) >= 0) kept.push(replicas[i]);
    return kept;
  }

  /**
   * For a request naming a LoRA adapter (one a replica lists as an adapter, or one in a replica's
   * GPU slots) whose replicas report their slots: each candidate's affinity to it
   * (model-routing.ts), from the slots the adapter attached (Replica.models.lora) and the gateway's
   * record of the adapters it last sent each replica (adapter-slots.ts). A candidate past the
   * bounded-load ceiling (models.adapter_balance_factor) gets no affinity: a hot adapter's
   * overflow goes to the least loaded replica and loads the adapter there, instead of piling onto
   * the replicas that have it. For llm the affinities go into the views (its adapter scorer); with
   * models.adapter_filter the other strategies see only the best-placed candidates (adapterFilter).
   * Returns the adapter's tag and each replica's slot count for recordAdapter, or null when the
   * request names no such adapter.
   */
  function placeAdapter(views: ReplicaView[], replicas: Replica[], request: RequestView, attached: boolean): AdapterPlacement | null {
    // The views are reused: the last pick's affinities go first (llm reads "none" as no adapter).
    if (scoresAdapters) for (let i = 0; i < views.length; i++) views[i].adapterAffinity = undefined;
    if ((!scoresAdapters && !filtersByAdapter) || !attached) return null;
    const model = modelOf(request);
    if (model === null) return null;
    const byId = Object.create(null) as Record<string, ReplicaModels | null>;
    const all: Array<ReplicaModels | null> = [];
    let slotsKnown = false;
    let named = false;
    let listsKnown = false;
    let isBase = false;
    for (let i = 0; i < replicas.length; i++) {
      const models = modelsOf(replicas[i]);
      byId[replicas[i].id] = models;
      all.push(models);
      if (models !== null && models.lora !== null) {
        slotsKnown = true;
        if (models.lora.running.indexOf(model) >= 0 || models.lora.waiting.indexOf(model) >= 0) named = true;
      }
      if (models !== null && models.served !== null) {
        listsKnown = true;
        if (models.served.bases.indexOf(model) >= 0) isBase = true;
      }
    }
    // An adapter: any name no replica serves as a base model (a replica with a LoRA resolver lists
    // an adapter only once asked for it), or without any list, one the slots or an adapter list name.
    if (!slotsKnown || isBase || (!listsKnown && !named && adapterBase(model, all) === null)) return null;
    const slots = Object.create(null) as Record<string, number>;
    const fleet: AdapterCandidate[] = [];
    const loads: number[] = [];
    for (let i = 0; i < views.length; i++) {
      const models = byId[views[i].id];
      const lora = models === undefined || models === null ? null : models.lora;
      // A replica without reported slots is not tracked: nothing says how many adapters it holds.
      if (lora !== null) slots[views[i].id] = lora.maxLoras !== null ? lora.maxLoras : MAX_TRACKED_SLOTS;
      // The view has the in-flight count only when the strategy reads it.
      const inFlight = strategy.reads.inFlight ? views[i].inFlight : Math.max(0, readNumber(store, keysFor(views[i].id).inFlight));
      fleet.push({ inFlight: inFlight, weight: views[i].weight, lora: lora, sent: lora !== null ? sentAdapters(store, views[i].id) : null });
      loads.push(views[i].weight > 0 ? inFlight / views[i].weight : Infinity);
    }
    let kept: number[] | null = null;
    if (scoresAdapters) {
      const under = underLoadBound(fleet, config.models.adapter_balance_factor);
      const scores = adapterScores(fleet, model);
      for (let i = 0; i < views.length; i++) views[i].adapterAffinity = under[i] ? scores[i] : ADAPTER_SLOTS_FULL;
    } else {
      kept = adapterFilter(fleet, model, config.models.adapter_balance_factor);
    }
    return { tag: adapterTag(model), slots: slots, kept: kept, loads: loads };
  }

  /** Records that the pick sends the adapter to `chosen` (when its slots are tracked). */
  function recordAdapter(placement: AdapterPlacement | null, chosen: ReplicaView): void {
    if (placement === null || placement.slots[chosen.id] === undefined) return;
    recordSentAdapter(store, chosen.id, placement.tag, placement.slots[chosen.id]);
  }

  /**
   * The strategy's order, with models.adapter_filter: the strategy picks among the best-placed
   * candidates; the rest follow as failover alternates, least loaded (in flight per weight) first,
   * so a retry still has somewhere to go. The strategy orders once per pick: a second call would
   * advance its cursors (round robin) twice.
   */
  function orderWithin(candidates: ReplicaView[], placement: AdapterPlacement | null, count: number): ReplicaView[] {
    const kept = placement === null ? null : placement.kept;
    if (placement === null || kept === null || kept.length === candidates.length) return strategy.order(candidates, context, count);
    const best: ReplicaView[] = [];
    const rest: number[] = [];
    for (let i = 0; i < candidates.length; i++) {
      if (kept.indexOf(i) >= 0) best.push(candidates[i]);
      else rest.push(i);
    }
    const ordered = strategy.order(best, context, count);
    const loads = placement.loads;
    rest.sort(function (a, b) {
      return loads[a] - loads[b];
    });
    for (let i = 0; i < rest.length && ordered.length < count; i++) ordered.push(candidates[rest[i]]);
    return ordered;
  }

  /** Whether admission is on and every candidate is saturated (the adapter then queues the request). */
  function saturated(candidates: ReplicaView[], now: number): boolean {
    if (admission === null) return false;
    const signals: LoadSignals[] = [];
    for (let i = 0; i < candidates.length; i++) signals.push(loadSignals(store, keysOf(candidates[i].id), candidates[i].weight, now, loadFreshMs));
    return poolSaturated(signals, admission);
  }

  /** "replicas", or "replicas serving the model `m`" when the request's model narrowed them (error messages only). */
  function poolWords(replicas: Replica[], allReplicas: Replica[], request: RequestView): string {
    if (replicas.length === allReplicas.length) return 'replicas';
    const model = modelOf(request);
    return 'replicas serving the model `' + (model === null ? '' : model) + '`';
  }

  function room(allReplicas: Replica[], request: RequestView): number {
    if (admission === null) return Infinity;
    const routed = forModel(allReplicas, request, attachedModels(allReplicas));
    if (!isArray(routed)) return Infinity;
    const now = deps.clock.now();
    const candidates = candidatesOf(routed, now);
    if (candidates.length === 0) return Infinity;
    const signals: LoadSignals[] = [];
    for (let i = 0; i < candidates.length; i++) signals.push(loadSignals(store, keysOf(candidates[i].id), candidates[i].weight, now, loadFreshMs));
    return poolRoom(signals, admission);
  }

  function pick(allReplicas: Replica[], request: RequestView, admitted?: boolean): PickResult {
    if (allReplicas.length === 0) {
      return { ok: false, reason: 'no-replicas', message: 'no replicas are configured for this upstream' };
    }
    // Whether the adapter attached what the replicas serve: one scan per pick, read three times below.
    const attached = attachedModels(allReplicas);
    const routed = forModel(allReplicas, request, attached);
    if (!isArray(routed)) return routed;
    const replicas = routed;
    const now = deps.clock.now();
    let candidates = candidatesOf(replicas, now);
    // Admission: a saturated pool takes nothing more now; the adapter holds the request and asks
    // again when capacity frees (the replicas of a panic are failing: no admission there).
    if (candidates.length > 0 && admitted !== true && saturated(candidates, now)) {
      return { ok: false, reason: 'saturated', message: 'all ' + candidates.length + ' available ' + poolWords(replicas, allReplicas, request) + ' are saturated' };
    }
    if (candidates.length === 0 && config.on_no_healthy === 'panic') candidates = panicCandidates(replicas, now);
    if (candidates.length === 0) {
      return { ok: false, reason: 'no-healthy-replica', message: 'none of the ' + replicas.length + ' ' + poolWords(replicas, allReplicas, request) + ' is available (unhealthy, ejected, draining or weight 0)' };
    }
    context.request = request;
    context.hashKey = strategy.reads.hashKey ? resolveHashKey(config.hash_key, request) : null;
    context.llm = readsLlm ? llmRequestOf(request.body) : null;
    // Prefix caches are per model (vLLM keys an adapter's blocks apart from the base model's):
    // with model routing the chains start from the model, so one table never mixes two models.
    if (context.llm !== null && (modelConfigured || attached)) {
      const model = modelOf(request);
      if (model !== null) context.llm.promptKey = modelPromptKey(model, context.llm.promptKey);
    }
    // Never an error: the strategy works on without it (default tokens, no prefix), and it is counted.
    if (readsLlm && context.llm === null) store.incr(WITHOUT_LLM_BODY_KEY, 1, 0);
    context.requestTokens = strategy.reads.tokens ? tokensOf(config, context.llm) : 0;
    context.now = now;
    // With a half-open candidate, ask for one extra: it may lose its trial claim or be dropped as an alternate.
    let halfOpen = false;
    for (let i = 0; i < candidates.length; i++) if (candidates[i].halfOpen) halfOpen = true;
    const placement = placeAdapter(candidates, allReplicas, request, attached);
    const order = orderWithin(candidates, placement, halfOpen ? wanted + 1 : wanted);
    // Without a half-open candidate there is no trial to settle (and no array to copy into).
    const ordered = halfOpen ? settleTrials(order, now) : order;
    const chosen: Replica[] = [];
    for (let i = 0; i < ordered.length && chosen.length < wanted; i++) {
      // Hand back the adapter's own objects (it may have attached fields of its own).
      for (let j = 0; j < replicas.length; j++) {
        if (replicas[j].id === ordered[i].id) {
          chosen.push(replicas[j]);
          break;
        }
      }
    }
    if (chosen.length === 0) {
      return { ok: false, reason: 'no-healthy-replica', message: 'the only available replica is already serving its recovery trial' };
    }
    let tokens = context.requestTokens;
    let promptTokens = tokens > 0 && context.llm !== null ? context.llm.promptTokens : 0;
    // The part of the prompt the chosen replica holds in its cache costs it no prefill: not counted.
    if (tokens > 0 && strategy.cachedPromptTokens !== undefined) {
      const cached = Math.min(promptTokens, strategy.cachedPromptTokens(ordered[0], context));
      if (cached > 0) {
        tokens -= cached;
        promptTokens -= cached;
      }
    }
    if (strategy.afterPick !== undefined) strategy.afterPick(ordered[0], context);
    recordAdapter(placement, ordered[0]);
    return { ok: true, replicas: chosen, tokens: tokens, promptTokens: promptTokens };
  }

  /** A replica's Store keys: the ones the adapter precomputed, or built from the id. */
  function keysFor(replica: Replica | string): ReplicaKeys {
    if (typeof replica === 'string') return keysOf(replica);
    return replica.keys !== undefined ? replica.keys : keysOf(replica.id);
  }

  function onEnd(replicas: Replica[], replica: Replica | string, outcome: Outcome): void {
    const now = deps.clock.now();
    const keys = keysFor(replica);
    const replicaId = typeof replica === 'string' ? replica : replica.id;
    recordEnd(store, keys, outcome.tokens === undefined ? 0 : outcome.tokens);
    const verdict = classifyOutcome(outcome, passive.failure_kinds);
    // Latency samples come only from answers the replica actually gave: a connect error's
    // "latency" is the connect timeout, and a client abort measures the client.
    if (outcome.status > 0 && !outcome.error && outcome.latencyMs >= 0) {
      const ttft = outcome.ttftMs === undefined || outcome.ttftMs === null ? null : outcome.ttftMs;
      const tpot = outcome.tpotMs === undefined || outcome.tpotMs === null ? null : outcome.tpotMs;
      recordLatency(store, keys, outcome.latencyMs, ttft, tpot, now, halfLifeMs, config.response_time.peak_sensitive);
    }
    // The replica answered (any status): it is making progress, whatever the answer says.
    if (stuckMs > 0 && outcome.status > 0 && !outcome.error) store.set(keys.progressAt, now);
    recordVerdict(store, replicas, replicaId, keys, verdict, now, passive, outcome.error === 'connect-error' || (outcome.status === 0 && !outcome.error));
  }

  function status(replicas: Replica[]): ReplicaStatus[] {
    const now = deps.clock.now();
    // Only the replica's own load (the queue and KV columns); built here, not at module level,
    // which njs evaluates for every request.
    const loadReads = { inFlight: false, latency: false, hashKey: false, tokens: false, body: false, replicaLoad: true };
    const rows: ReplicaStatus[] = [];
    for (let i = 0; i < replicas.length; i++) {
      const replica = replicas[i];
      const keys = keysOf(replica.id);
      const out = reportedOut(replica, keys, store, true);
      const passiveNow = passiveState(store, keys, now);
      const ttft = store.get(keys.ttft);
      const tpot = store.get(keys.tpot);
      const inFlight = readNumber(store, keys.inFlight);
      const tokens = readNumber(store, keys.tokens);
      const load = buildView(store, replica, keys, loadReads, now, halfLifeMs, false, undefined, loadFreshMs);
      // The prefix-cache counters go stale with the load they were scraped with (onReplicaMetrics).
      const loadAt = store.get(keys.loadAt);
      const fresh = loadAt !== undefined && now - loadAt <= loadFreshMs;
      const prefixCounters = fresh ? readPrefixCounters(store, replica.id) : null;
      rows.push({
        id: replica.id,
        address: replica.address,
        weight: replica.weight,
        state: out !== null ? out : passiveNow !== 'active' ? passiveNow : stuckMs > 0 && isStuck(keys, now) ? 'stuck' : 'healthy',
        ejectedUntil: passiveNow === 'active' ? null : readNumber(store, keys.ejectedUntil),
        ejections: readNumber(store, keys.ejections),
        inFlight: inFlight > 0 ? inFlight : 0,
        ewmaMs: readLatency(store, keys, now, halfLifeMs),
        ttftMs: ttft === undefined ? null : ttft,
        tpotMs: tpot === undefined ? null : tpot,
        tokens: tokens > 0 ? tokens : 0,
        queue: load.queue,
        kvUsage: load.kvUsage,
        prefixQueries: prefixCounters === null ? null : prefixCounters.queries,
        prefixHits: prefixCounters === null ? null : prefixCounters.hits,
        samples: readNumber(store, keys.samples),
        picks: readNumber(store, keys.picks),
        failures: readNumber(store, keys.failures),
      });
    }
    return rows;
  }

  return {
    config: config,
    reads: strategy.reads,
    pick: pick,
    room: room,
    onStart: (replica, tokens) => recordStart(store, keysFor(replica), tokens === undefined ? 0 : tokens, stuckMs > 0 ? deps.clock.now() : undefined),
    onProgress(replica: Replica | string): void {
      if (stuckMs > 0) store.set(keysFor(replica).progressAt, deps.clock.now());
    },
    onEnd: onEnd,
    status: status,
    modelList(replicas: Replica[]): ModelListDocument | null {
      const served: Array<ServedModels | null> = [];
      let known = false;
      for (let i = 0; i < replicas.length; i++) {
        const models = modelsOf(replicas[i]);
        served.push(models === null ? null : models.served);
        if (models !== null && models.served !== null) known = true;
      }
      // No replica lists anything: no list, and no status rows built for every GET /v1/models.
      if (!known) return null;
      const rows = status(replicas);
      const lists: Array<ServedModels | null> = [];
      for (let i = 0; i < replicas.length; i++) {
        // Out of service (unhealthy, ejected, draining, weight 0): not offered.
        if (rows[i].state === 'healthy' || rows[i].state === 'half-open') lists.push(served[i]);
      }
      return modelList(lists, config.models.aliases);
    },
    requestsWithoutLlmBody: () => readNumber(store, WITHOUT_LLM_BODY_KEY),
    releaseTokens(replica: Replica | string, tokens: number): void {
      const keys = keysFor(replica);
      if (tokens > 0 && store.incr(keys.tokens, -tokens, 0) < 0) store.set(keys.tokens, 0);
    },
    onReplicaMetrics(replica: Replica | string, text: string): boolean {
      const load = parseReplicaMetrics(text);
      // No load, no scrape (recordReplicaLoad records nothing): the counters are not kept either.
      if (load.running === null && load.waiting === null && load.kvUsage === null) return false;
      // Kept with the load and stale with it: only the status page reads them. Written before the
      // load's time, so a status read in another worker never shows a new load with old counters.
      recordPrefixCounters(store, typeof replica === 'string' ? replica : replica.id, load.prefixQueries, load.prefixHits);
      return recordReplicaLoad(store, keysFor(replica), load.running, load.waiting, load.kvUsage, deps.clock.now());
    },
  };
}
