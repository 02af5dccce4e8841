// The njs request handlers: nginx calls these through the generated configuration (names.ts).
// Thin: they turn nginx's request and variables into the core's inputs and back; every decision
// is the core's (shared/balancer.ts).
//
//   pick     js_set $llm_balancer_upstream   first attempt: the pick's upstream block, or the always-down
//                                            llm_balancer_unavailable (→ 503 + $llm_balancer_error)
//   retry    js_set $llm_balancer_retry_N    failover attempt N: records how the previous attempt failed,
//                                            starts the next replica of the plan, or '' (502 + error body)
//   outcome  js_set in log_format only       LOG phase: records how the last attempt ended (client aborts too)
//   route    js_content                      body mode: reads the JSON body, picks, redirects to @llm_balancer_proxy
//                                            (or @llm_balancer_proxy_stream: a streaming request's read bound)
//   status   js_content                      JSON (or ?format=prometheus) per replica
//   metrics  js_content                      Prometheus text
//
// Every request runs in a fresh njs VM: nothing at module level outlives it (module code itself
// is evaluated again per request). State lives in the shared dict; the request's own bookkeeping
// lives in js_var variables, which survive error_page redirects to the retry locations:
//   $llm_balancer_plan   replica ids of the pick and its alternates, in failover order
//   $llm_balancer_tried  the replicas actually started, in order (plan.ts)
// Ids, not indexes: with NGINX Plus as the replica source (peers.ts) each VM reads the current
// peer list, and a sync between the pick and a retry or the log phase may change it. A retry
// skips plan entries that left the list or stopped taking traffic since the pick.
// Invariant: every replica in `tried` gets exactly one onStart and one onEnd. An attempt is ended
// by the retry that follows it (at once, so a dead replica is ejected while the failover's stream
// is still running), the last one by `outcome` in the log phase.

import { admissionPool } from '../../shared/model-routing';
import { createBalancer, modelRewrite, placesAdapters, replicasFromConfig, rewritesModel, routesByModel } from '../../shared/balancer';
import type { Balancer } from '../../shared/balancer';
import type { BalancerConfig } from '../../shared/config/types';
import { modelNotFoundError, noReplicaError } from '../../shared/errors';
import { newOutputTally, outputTokensOf, tallyChunk, timePerOutputTokenMs } from '../../shared/output-tokens';
import type { ByteChunk, OutputTally } from '../../shared/output-tokens';
import type { PickResult, Replica, Store } from '../../shared/types';
import { exhaustedError, internalError } from './errors';
import { retryAfterSeconds } from '../../shared/retry-after';
import { BODY_STATE_VAR, CONFIG_OBJECT, MODELS_LISTS_KEY, MODELS_LORA_KEY, MODELS_ROUTING_KEY, ERROR_VAR, RETRY_AFTER_VAR, FIRST_BYTE_VAR, OUTPUT_TOKENS_VAR, PLAN_VAR, PROMPT_TOKENS_VAR, PROXY_LOCATION, PROXY_STREAM_LOCATION, REQUEST_BODY_VAR, TARGET_VAR, TOKENS_VAR, TRIED_VAR, UNAVAILABLE_UPSTREAM } from './names';
import type { PreloadedConfig } from './names';
import type { LoraSlots, ServedModels } from '../../shared/model-discovery';
import type { TextHash } from '../../shared/prefix-blocks';
import { attemptOutcome, describeOutcome } from './outcome';
import { admissionReport, admittedAfterWait, bandOf, hold, leaveIfWaiting, tenantOf, ticketOf } from './admission';
import { someoneWaits } from '../../shared/waiting-room';
import type { WaitingEntry } from '../../shared/waiting-room';
import type { ResponseVariables } from './outcome';
import { linkPeers, readPeers, storedSyncedAt } from './peers';
import { joinIdsOf, nextInPlan, parseIds, singleId } from './plan';
import { DEFAULT_CONSUMER_VARIABLE, parseBody, requestViewOf } from './request-view';
import { describeError, modelsDict, preloadedObject, stateDict, systemClock, systemRandom, waitingDict } from './runtime';
import type { NjsRequest } from './runtime';
import { createSharedDictStore } from './shared-dict-store';
import { splitsByStreaming, streamRequested } from './streaming';
import { PROMETHEUS_CONTENT_TYPE, STATE_KINDS, admissionPrometheus, prometheusText, sharedStatePrometheus, statusDocument } from '../../shared/status-report';

export interface Context {
  config: BalancerConfig;
  /** The static replicas of the config, or with nginx.plus_api the last synced peer list. */
  replicas: Replica[];
  /** The proxy target per replica, same order: its nginx upstream block, or a bare ip:port (a peer without one). */
  upstreams: string[];
  /** Replica id → index into replicas/upstreams. */
  indexOf: Record<string, number>;
  /** With nginx.plus_api: the API's upstream name and when the peer list was read (null: not yet, static replicas). */
  peers: { upstream: string; syncedAt: number | null } | null;
  /** The nginx variable holding the caller identity (hash_key.source consumer). */
  consumerVariable: string;
  store: Store;
  balancer: Balancer;
  /** The strategy counts tokens: $llm_balancer_tokens and $llm_balancer_prompt_tokens are declared. */
  countsTokens: boolean;
  /** latency_metric ttft or tpot: $llm_balancer_first_byte is declared. */
  timesFirstByte: boolean;
  /** latency_metric tpot: the body filter counts output tokens into $llm_balancer_output_tokens. */
  countsOutput: boolean;
  /** Streams have their own proxy locations: $llm_balancer_body is declared and the filter tracks how far a body got. */
  tracksBody: boolean;
  /** models.* is configured: the body's model is read for every pick. */
  routesByModel: boolean;
  /** models.aliases or models.default: $llm_balancer_request_body is declared and proxy_set_body sends it. */
  rewritesModel: boolean;
  /** Picks place LoRA adapters (llm.adapter_weight, models.adapter_filter) and discovery is on: the LoRA slots the /metrics scrape keeps are attached to the replicas. */
  placesAdapters: boolean;
  /** admission.enabled: saturated pools hold requests in the waiting room (admission.ts); $llm_balancer_ticket is declared. */
  admits: boolean;
  /** nginx.priority_variable: the variable holding a request's priority band, or null (admission.priority for all). */
  priorityVariable: string | null;
}

let current: Context | null = null;

// The prompt-block hash the balancer uses (index.ts gives nginx's native MD5; the cold part's copy
// of this module keeps the JavaScript default, and never picks with a prompt).
let textHash: TextHash | undefined;

/** Sets the prompt-block hash of the balancers built from now on (index.ts, at module load). */
export function useTextHash(hash: TextHash): void {
  textHash = hash;
}

function peersSyncedAt(peers: NonNullable<Context['peers']>): number {
  return peers.syncedAt === null ? 0 : peers.syncedAt;
}

/**
 * The balancer over the preloaded configuration and the shared state zone. Built once per request
 * under the njs engine (every request runs in a fresh VM) and once per context under QuickJS, which
 * reuses a context for later requests (js_context_reuse): everything in it is derived from the
 * config, except the NGINX Plus peer list, rebuilt when a newer sync is stored.
 */
export function context(): Context {
  if (current !== null && (current.peers === null || peersSyncedAt(current.peers) === storedSyncedAt())) return current;
  const preloaded = preloadedObject() as PreloadedConfig | undefined;
  if (preloaded === undefined || preloaded === null || typeof preloaded !== 'object' || !preloaded.config || !Array.isArray(preloaded.upstreams)) {
    throw new Error(
      'llm-balancer: the preloaded object ' + CONFIG_OBJECT + ' is missing or malformed ' +
        '(js_preload_object ' + CONFIG_OBJECT + ' from <the JSON written by llm-balancer nginx-config>;)',
    );
  }
  // The generator wrote a validated config (every default filled in): it is trusted as is, since
  // validating it here would cost every request (each runs in a fresh VM). It is not copied
  // either (that cost ~8 µs per request): njs 0.8.9 gives preloaded objects and arrays a null
  // prototype (no indexOf, slice, hasOwnProperty...), and the core reads config with index loops
  // and property access only (spec/core/balancer.spec.ts runs it on such a config).
  const config = preloaded.config as BalancerConfig;
  if (preloaded.upstreams.length !== config.replicas.length) {
    throw new Error('llm-balancer: the preloaded config has ' + config.replicas.length + ' replicas but ' + preloaded.upstreams.length + ' upstream names');
  }
  // The generator's Replica objects, Store keys included, used as they are (read-only, like the
  // config); a JSON from an older generator has only the keys, and the replicas are built here.
  let replicas: Replica[];
  if (Array.isArray(preloaded.replicas) && preloaded.replicas.length === config.replicas.length) {
    replicas = preloaded.replicas;
  } else {
    replicas = replicasFromConfig(config);
    const keys = preloaded.keys;
    if (keys !== undefined && keys !== null && keys.length === replicas.length) {
      for (let i = 0; i < replicas.length; i++) replicas[i].keys = keys[i];
    }
  }
  let upstreams: string[] = preloaded.upstreams;
  let peers: Context['peers'] = null;
  if (preloaded.plusApi) {
    // NGINX Plus mode: the peer list of the last successful sync; the static replicas until then.
    peers = { upstream: String(preloaded.plusApi.upstream), syncedAt: null };
    const synced = readPeers();
    if (synced !== null) {
      upstreams = linkPeers(synced.replicas, replicas, preloaded.upstreams);
      replicas = synced.replicas;
      peers.syncedAt = synced.syncedAt;
    }
  }
  const indexOf: Record<string, number> = Object.create(null);
  for (let i = 0; i < replicas.length; i++) indexOf[replicas[i].id] = i;
  const store = createSharedDictStore(stateDict());
  const balancer = createBalancer(config, { store: store, clock: systemClock, random: systemRandom, hashText: textHash });
  current = {
    config: config,
    replicas: replicas,
    upstreams: upstreams,
    indexOf: indexOf,
    peers: peers,
    consumerVariable: typeof preloaded.consumerVariable === 'string' && preloaded.consumerVariable !== '' ? preloaded.consumerVariable : DEFAULT_CONSUMER_VARIABLE,
    store: store,
    balancer: balancer,
    // What the balancer's strategy reads: asking readsTokens(config) would build the strategy again.
    countsTokens: balancer.reads.tokens,
    timesFirstByte: config.response_time.latency_metric === 'ttft' || config.response_time.latency_metric === 'tpot',
    countsOutput: config.response_time.latency_metric === 'tpot',
    tracksBody: splitsByStreaming(config.timeouts),
    routesByModel: routesByModel(config),
    rewritesModel: rewritesModel(config),
    placesAdapters: placesAdapters(config) && config.models.discovery,
    admits: config.admission.enabled,
    priorityVariable: typeof preloaded.priorityVariable === 'string' && preloaded.priorityVariable !== '' ? preloaded.priorityVariable : null,
  };
  return current;
}


/** Logs an internal failure and leaves a 503 body in $llm_balancer_error; returns '' (no upstream). */
function failed(r: NjsRequest, what: string, e: unknown): string {
  r.error('llm-balancer: ' + what + ' failed: ' + describeError(e));
  try {
    r.variables[ERROR_VAR] = internalError('the balancer failed to ' + what + ' (see the nginx error log)');
  } catch (ignored) {
    // $llm_balancer_error is not declared: nginx answers the 503 without our body.
  }
  return '';
}

/** Starts the first attempt of a pick: records the plan, counts the start, returns the upstream block. */
function begin(r: NjsRequest, ctx: Context, result: PickResult): string {
  if (!result.ok) {
    r.variables[ERROR_VAR] = JSON.stringify(noReplicaError(result.reason, result.message));
    // The 503's Retry-After: when the soonest replica may take traffic again (only on this path).
    r.variables[RETRY_AFTER_VAR] = String(retryAfterSeconds(ctx.config, ctx.replicas, ctx.store, systemClock.now()));
    return UNAVAILABLE_UPSTREAM;
  }
  const first = result.replicas[0].id;
  r.variables[PLAN_VAR] = joinIdsOf(result.replicas);
  r.variables[TRIED_VAR] = encodeURIComponent(first);
  // Token-counting strategies: every attempt counts the request's tokens until its end.
  if (result.tokens > 0) {
    r.variables[TOKENS_VAR] = String(result.tokens);
    r.variables[PROMPT_TOKENS_VAR] = String(result.promptTokens);
  }
  // The replica object carries its preloaded Store keys: njs would rebuild them otherwise.
  ctx.balancer.onStart(result.replicas[0], result.tokens);
  return ctx.upstreams[ctx.indexOf[first]];
}

/**
 * Records how attempt `index` (replica `id`) ended, from nginx's $upstream_* variables. The
 * replica may have left the current list since it was started: it is ended all the same.
 */
function endAttempt(r: NjsRequest, ctx: Context, id: string, index: number, response: ResponseVariables | null): string {
  const v = r.variables;
  const outcome = attemptOutcome({ status: v.upstream_status, responseTime: v.upstream_response_time, headerTime: v.upstream_header_time }, index, response);
  // Reading a js_var the config did not declare costs ~15 µs in njs 0.8.9 (measured): only when declared.
  if (ctx.countsTokens) outcome.tokens = requestTokens(r);
  // The last attempt's time to the first body byte, when the body filter timed it (latency_metric
  // ttft or tpot): from the request's arrival, as the client sees it. With tpot, also the time per
  // output token from the tokens the filter counted.
  if (ctx.timesFirstByte && response !== null && outcome.status > 0 && !outcome.error) {
    const firstAt = firstByteAt(r);
    if (firstAt !== null) {
      // $msec is now (the log phase: the last byte has gone), $request_time how long the request
      // has lasted: their difference is its arrival.
      const now = Number(v.msec) * 1000;
      const ttft = firstAt - (now - Number(v.request_time) * 1000);
      if (ttft >= 0) outcome.ttftMs = ttft;
      if (ctx.countsOutput) outcome.tpotMs = tpotOf(r, now - firstAt, outcome.latencyMs);
    }
  }
  // A body that began and never reached its last byte was cut by nginx (the replica went silent
  // past the read bound, or closed the connection) although its status is the replica's 200: a
  // failure of the replica, and no progress. The client's own abort stays an abort.
  if (ctx.tracksBody && response !== null && outcome.status > 0 && !outcome.error && r.variables[BODY_STATE_VAR] === BODY_STARTED) {
    outcome.error = 'timeout';
  }
  const i = ctx.indexOf[id];
  ctx.balancer.onEnd(ctx.replicas, i === undefined ? id : ctx.replicas[i], outcome);
  return describeOutcome(id, outcome);
}

/** When the first response body byte went out (ms since the epoch), when the body filter noted it. */
function firstByteAt(r: NjsRequest): number | null {
  const at = r.variables[FIRST_BYTE_VAR];
  if (at === undefined || at === '') return null;
  const ms = Number(at);
  return isNaN(ms) ? null : ms;
}

/** The time per output token of the response the body filter counted ($llm_balancer_output_tokens), or null. */
function tpotOf(r: NjsRequest, firstToLastByteMs: number, wholeMs: number): number | null {
  const text = r.variables[OUTPUT_TOKENS_VAR];
  if (text === undefined || text.length < 2) return null;
  const tokens = Number(text.substring(0, text.length - 1));
  if (isNaN(tokens)) return null;
  return timePerOutputTokenMs(text.charAt(text.length - 1) === 's', tokens, firstToLastByteMs, wholeMs);
}

/** $llm_balancer_body while a response body is under way, and once its last byte passed. */
const BODY_STARTED = 'started';
const BODY_DONE = 'done';

// The body filter's state for the request `bodyRequest`: whether its first body byte went by, and
// with tpot the output tokens seen so far (null: not counting). Kept at module level for speed, but
// keyed to the request object: the njs engine runs each request in a fresh VM, QuickJS reuses a
// context for the next request (js_context_reuse), whose first chunk must not find the last one's.
let bodyRequest: NjsRequest | null = null;
let firstByteSeen = false;
let outputTally: OutputTally | null = null;

/**
 * js_body_filter of the proxy locations (latency_metric ttft or tpot, token-counting strategies):
 * at the first non-empty chunk notes the time and releases the prompt's tokens; with tpot tallies
 * the output tokens of every chunk and leaves the count for the log phase at the last. Passes
 * every chunk on unchanged.
 */
export function firstByte(r: NjsRequest, data: ByteChunk, flags: { last?: boolean }): void {
  if (bodyRequest !== r) {
    bodyRequest = r;
    firstByteSeen = false;
    outputTally = null;
  }
  // After the first chunk, the rest pass with no work at all (but the token tally of tpot).
  if (!firstByteSeen && data.length > 0) {
    firstByteSeen = true;
    try {
      const ctx = context();
      if (ctx.timesFirstByte) r.variables[FIRST_BYTE_VAR] = String(systemClock.now());
      if (ctx.countsOutput) outputTally = newOutputTally();
      if (ctx.countsTokens) releasePrompt(r);
      if (ctx.tracksBody) r.variables[BODY_STATE_VAR] = BODY_STARTED;
      // A first byte is progress: a replica streaming long answers is not stuck (stuck_after_s).
      noteProgress(r, ctx);
    } catch (e) {
      r.error('llm-balancer: the first-byte filter failed: ' + describeError(e));
    }
  }
  if (outputTally !== null) {
    try {
      tallyChunk(outputTally, data);
      if (flags.last) {
        const output = outputTokensOf(outputTally);
        r.variables[OUTPUT_TOKENS_VAR] = output.tokens + (output.streamed ? 's' : 'w');
        outputTally = null;
      }
    } catch (e) {
      outputTally = null;
      r.error('llm-balancer: counting the output tokens failed: ' + describeError(e));
    }
  }
  if (flags.last && firstByteSeen) markBodyDone(r);
  // flush: QuickJS holds a chunk sent without it until the end of the response (a stream would
  // stop streaming); the njs engine flushes either way.
  r.sendBuffer(data, flags.last === true ? LAST_CHUNK : NEXT_CHUNK);
  if (flags.last === true) bodyRequest = null;
}

const NEXT_CHUNK = { last: false, flush: true };
const LAST_CHUNK = { last: true, flush: true };

/**
 * The response body reached its last byte: only a body that began can be cut. The state is the
 * request's own variable (declared only when tracksBody), not a module flag: QuickJS reuses a
 * context for the next request. Never throws (the chunk must still be sent).
 */
function markBodyDone(r: NjsRequest): void {
  try {
    if (context().tracksBody && r.variables[BODY_STATE_VAR] === BODY_STARTED) r.variables[BODY_STATE_VAR] = BODY_DONE;
  } catch (e) {
    r.error('llm-balancer: noting the last body byte failed: ' + describeError(e));
  }
}

/** The replica of the attempt now going (the last one tried), or null before any. */
function lastTried(r: NjsRequest): string | null {
  const list = r.variables[TRIED_VAR];
  const only = singleId(list);
  if (only !== null) return only;
  const tried = parseIds(list);
  return tried.length === 0 ? null : tried[tried.length - 1];
}

/** Tells the core the attempt now going (the last one tried) showed progress: its first body byte. */
function noteProgress(r: NjsRequest, ctx: Context): void {
  const id = lastTried(r);
  if (id === null) return;
  const i = ctx.indexOf[id];
  ctx.balancer.onProgress(i === undefined ? id : ctx.replicas[i]);
}

/**
 * The first streamed byte means the replica finished the prompt's prefill: its tokens stop
 * counting now, the output's at the end (the attempt's Outcome carries only those). Once per request.
 */
function releasePrompt(r: NjsRequest): void {
  const text = r.variables[PROMPT_TOKENS_VAR];
  if (text === undefined || text === '') return;
  const prompt = Number(text);
  if (!(prompt > 0)) return;
  try {
    const id = lastTried(r);
    if (id === null) return;
    const ctx = context();
    const i = ctx.indexOf[id];
    r.variables[PROMPT_TOKENS_VAR] = '0';
    r.variables[TOKENS_VAR] = String(requestTokens(r) - prompt);
    ctx.balancer.releaseTokens(i === undefined ? id : ctx.replicas[i], prompt);
  } catch (e) {
    r.error('llm-balancer: releasing the prompt tokens failed: ' + describeError(e));
  }
}

/** The tokens `begin` counted for this request (0 when the strategy counts none). */
function requestTokens(r: NjsRequest): number {
  const text = r.variables[TOKENS_VAR];
  const tokens = text === undefined || text === '' ? 0 : Number(text);
  return tokens > 0 ? tokens : 0;
}

/** Whether a failover may still go to replica `id`: it is in the current list and takes traffic. */
function stillUsable(ctx: Context, id: string): boolean {
  const i = ctx.indexOf[id];
  if (i === undefined) return false;
  const replica = ctx.replicas[i];
  return replica.weight > 0 && replica.health !== 'unhealthy' && replica.health !== 'draining';
}

/**
 * js_set $llm_balancer_upstream, read first by proxy_pass (content phase, after nginx's access
 * checks): the upstream block of the pick, or the always-down unavailable group with the 503 body
 * in $llm_balancer_error (the error_page chain answers it).
 */
export function pick(r: NjsRequest): string {
  try {
    const ctx = context();
    return begin(r, ctx, ctx.balancer.pick(ctx.replicas, requestViewOf(ctx.config.hash_key, r, null, ctx.consumerVariable)));
  } catch (e) {
    failed(r, 'pick a replica', e);
    return UNAVAILABLE_UPSTREAM;
  }
}

/**
 * js_set $llm_balancer_retry_N, evaluated in @llm_balancer_retry_N after the previous attempt
 * failed: the next replica of the plan, or '' with the 502 body in $llm_balancer_error.
 */
export function retry(r: NjsRequest): string {
  try {
    const ctx = context();
    const tried = parseIds(r.variables[TRIED_VAR]);
    if (tried.length === 0) return failed(r, 'fail over (no first pick was recorded)', 'empty $' + TRIED_VAR);
    const next = nextInPlan(parseIds(r.variables[PLAN_VAR]), tried, (id) => stillUsable(ctx, id));
    if (next === null) {
      // Nothing left to try: the last attempt stays open until `outcome` ends it in the log phase.
      r.variables[ERROR_VAR] = exhaustedError(tried.length);
      return '';
    }
    // Extend `tried` first: whatever happens below, the log phase must not end the previous attempt again.
    r.variables[TRIED_VAR] = r.variables[TRIED_VAR] + ',' + encodeURIComponent(next);
    try {
      endAttempt(r, ctx, tried[tried.length - 1], tried.length - 1, null);
    } catch (e) {
      r.error('llm-balancer: recording a failed attempt failed: ' + describeError(e));
    }
    ctx.balancer.onStart(ctx.replicas[ctx.indexOf[next]], ctx.countsTokens ? requestTokens(r) : 0);
    return ctx.upstreams[ctx.indexOf[next]];
  } catch (e) {
    return failed(r, 'fail over', e);
  }
}

/**
 * js_set $llm_balancer_outcome, referenced only by the access_log format: evaluated once in the
 * LOG phase (nginx caches a js_set value per request), after the response or the client's abort.
 * Ends the last attempt. Never throws; returns a short description for the log line.
 */
export function outcome(r: NjsRequest): string {
  try {
    const list = r.variables[TRIED_VAR];
    const response = { status: r.variables.status, requestCompletion: r.variables.request_completion };
    // One attempt (the usual request): its id without splitting the list.
    const only = singleId(list);
    if (only !== null) return endAttempt(r, context(), only, 0, response);
    const tried = parseIds(list);
    if (tried.length === 0) {
      // No attempt started: with admission the request may have left while it waited.
      const ctx = context();
      if (ctx.admits) leaveIfWaiting(r, ctx.store);
      return '';
    }
    return endAttempt(r, context(), tried[tried.length - 1], tried.length - 1, response);
  } catch (e) {
    r.error('llm-balancer: recording the outcome failed: ' + describeError(e));
    return '';
  }
}

/**
 * The replicas with what the models zone holds attached (model-discovery.ts, metrics-scrape.ts):
 * for routing, the lists when two of them differ (key MODELS_ROUTING_KEY); for GET /v1/models, every
 * list (MODELS_LISTS_KEY); for llm, the LoRA slots the /metrics scrape found too. null when there is
 * nothing to attach. One or two string reads from the zone per pick.
 */
export function discoveredReplicas(ctx: Context, key: string): Replica[] | null {
  let listsText: string | undefined;
  let loraText: string | undefined;
  try {
    const dict = modelsDict();
    loraText = ctx.placesAdapters ? dict.get(MODELS_LORA_KEY) : undefined;
    listsText = dict.get(loraText ? MODELS_LISTS_KEY : key);
  } catch (e) {
    return null;
  }
  if (!listsText && !loraText) return null;
  const lists = (listsText ? JSON.parse(listsText) : {}) as Record<string, ServedModels | null>;
  const slots = (loraText ? JSON.parse(loraText) : {}) as Record<string, LoraSlots>;
  const out: Replica[] = [];
  for (let i = 0; i < ctx.replicas.length; i++) {
    const r = ctx.replicas[i];
    const served = lists[r.id];
    const lora = slots[r.id];
    out.push({ id: r.id, address: r.address, weight: r.weight, health: r.health, keys: r.keys, models: { served: served === undefined ? null : served, lora: lora === undefined ? null : lora } });
  }
  return out;
}

/**
 * The body the replica gets: the client's text, or (an alias or the default applied) the parsed
 * body with `model` set to the served name. null when the text could not be read.
 */
function bodyToSend(config: BalancerConfig, body: unknown, text: string | null): string | null {
  if (text === null) return null;
  const served = modelRewrite(config, body);
  if (served === null || body === null || typeof body !== 'object') return text;
  const copy: Record<string, unknown> = {};
  const fields = body as Record<string, unknown>;
  const names = Object.keys(fields);
  for (let i = 0; i < names.length; i++) copy[names[i]] = fields[names[i]];
  copy.model = served;
  return JSON.stringify(copy);
}

function requestBody(r: NjsRequest): string | null {
  try {
    const text = r.requestText;
    return text === undefined ? null : text;
  } catch (e) {
    // The body went to a temp file (larger than client_body_buffer_size): no key from it.
    return null;
  }
}

/**
 * js_content of the balanced location when the pick needs the JSON body (a body hash key, a
 * strategy that reads it), the read bound does (streaming requests have their own, streaming.ts),
 * or admission may hold the request: the body is read first (nginx buffers it in memory), then the
 * pick, then an internal redirect to the proxy location of the request's kind, which forwards the
 * same body and streams the answer. A saturated pool sends the request to wait (admission.ts).
 */
export function route(r: NjsRequest): void {
  routeRequest(r, false);
}

/** js_content of @llm_balancer_admitted: the waiting room said it is this request's turn. */
export function admitted(r: NjsRequest): void {
  routeRequest(r, true);
}

/** Sends the request to wait in the room for `pool`, with the band and tenant its variables give. */
function holdRequest(r: NjsRequest, ctx: Context, pool: string): void {
  hold(r, ctx.config, ctx.store, pool, bandOf(r, ctx.config, ctx.priorityVariable, ctx.consumerVariable), tenantOf(r, ctx.config, ctx.consumerVariable));
}

function routeRequest(r: NjsRequest, afterWait: boolean): void {
  let target = '';
  let streaming = false;
  try {
    const ctx = context();
    // GET <...>/models: the gateway's own list (what the available replicas serve), once known.
    if (r.method === 'GET' && /\/models$/.test(r.uri)) {
      const withLists = ctx.config.models.discovery ? discoveredReplicas(ctx, MODELS_LISTS_KEY) : null;
      const list = ctx.balancer.modelList(withLists !== null ? withLists : ctx.replicas);
      if (list !== null) {
        r.headersOut['Content-Type'] = 'application/json';
        r.return(200, JSON.stringify(list));
        return;
      }
    }
    const bodyText = requestBody(r);
    const view = requestViewOf(ctx.config.hash_key, r, bodyText, ctx.consumerVariable);
    // Strategies that read the OpenAI body (token counts, prefixes) get it parsed whatever the hash
    // key; the others only when the stream flag needs it (streamRequested parses lazily).
    // What discovery learnt, when the replicas' lists differ ('' otherwise: nothing to route by).
    const discovered = ctx.config.models.discovery ? discoveredReplicas(ctx, MODELS_ROUTING_KEY) : null;
    if (view.body === undefined && (ctx.balancer.reads.body || ctx.balancer.reads.tokens || ctx.routesByModel || discovered !== null)) view.body = parseBody(bodyText);
    if (splitsByStreaming(ctx.config.timeouts)) streaming = streamRequested(view.body, bodyText);
    // Admission: the request's pool, and its ticket when it comes back from the waiting room.
    let pool = '';
    let ticket: WaitingEntry | null = null;
    if (ctx.admits) {
      pool = admissionPool(ctx.config.models.aliases, ctx.config.models.default, view, ctx.routesByModel || discovered !== null);
      if (afterWait) ticket = ticketOf(r);
      else if (someoneWaits(waitingDict(), pool)) {
        // Others wait for this pool: no overtaking, the room's order decides.
        holdRequest(r, ctx, pool);
        return;
      }
    }
    const replicas = discovered !== null ? discovered : ctx.replicas;
    let result: PickResult;
    try {
      result = ctx.balancer.pick(replicas, view, ticket !== null);
    } finally {
      // The grant is spent whatever the pick says: the in-flight count of a started pick holds its place now.
      if (ticket !== null) admittedAfterWait(ctx.store, ticket);
    }
    if (!result.ok && result.reason === 'saturated') {
      holdRequest(r, ctx, pool);
      return;
    }
    if (!result.ok && result.reason === 'model-not-found') {
      // No replica serves it: OpenAI's 404, not a 503 (retrying cannot help).
      r.headersOut['Content-Type'] = 'application/json';
      r.return(404, JSON.stringify(modelNotFoundError(result.message)));
      return;
    }
    if (ctx.rewritesModel) {
      const sent = bodyToSend(ctx.config, view.body, bodyText);
      if (sent === null) {
        r.headersOut['Content-Type'] = 'application/json';
        r.return(500, internalError('the request body could not be read to rewrite its model'));
        return;
      }
      r.variables[REQUEST_BODY_VAR] = sent;
    }
    target = begin(r, ctx, result);
  } catch (e) {
    target = failed(r, 'pick a replica', e);
  }
  if (target === '') {
    const body = r.variables[ERROR_VAR];
    const retryAfter = r.variables[RETRY_AFTER_VAR];
    r.headersOut['Content-Type'] = 'application/json';
    if (retryAfter) r.headersOut['Retry-After'] = retryAfter;
    r.return(503, body ? body : internalError('the balancer failed to pick a replica'));
    return;
  }
  r.variables[TARGET_VAR] = target;
  r.internalRedirect(streaming ? PROXY_STREAM_LOCATION : PROXY_LOCATION);
}

function firstArg(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** The count of requests placed without an OpenAI body, for strategies that read it; else undefined (not shown). */
function withoutLlmBody(ctx: Context): number | undefined {
  const reads = ctx.balancer.reads;
  return reads.body || reads.tokens ? ctx.balancer.requestsWithoutLlmBody() : undefined;
}

function sendMetrics(r: NjsRequest, prometheus: boolean): void {
  try {
    const ctx = context();
    const rows = ctx.balancer.status(ctx.replicas);
    r.headersOut['Cache-Control'] = 'no-store';
    const peers = ctx.peers;
    if (prometheus) {
      // Nothing is shared with other nginx nodes (every state is this nginx's, shared by its workers).
      let text = prometheusText(rows, withoutLlmBody(ctx)) + sharedStatePrometheus([]);
      if (ctx.admits) text += admissionPrometheus(admissionReport(ctx.store));
      if (peers !== null && peers.syncedAt !== null) {
        text +=
          '# HELP llm_balancer_peers_synced_timestamp_seconds When the replica list was last read from the NGINX Plus API.\n' +
          '# TYPE llm_balancer_peers_synced_timestamp_seconds gauge\n' +
          'llm_balancer_peers_synced_timestamp_seconds ' + Math.floor(peers.syncedAt / 1000) + '\n';
      }
      r.headersOut['Content-Type'] = PROMETHEUS_CONTENT_TYPE;
      r.return(200, text);
    } else {
      const doc = statusDocument(rows, ctx.upstreams, ctx.config.strategy, systemClock.now(), withoutLlmBody(ctx));
      // Every count and table lives in this nginx's shared dict: shared by its workers, not with
      // other gateway nodes (the shape of Kong's shared_state, whose kong.redis can share them).
      // New prompt prefixes are placed the same way on every node (prefix_affinity.placement).
      doc.shared_state = { redis: false, shared: [], local: STATE_KINDS, mode: 'local', scope: 'this nginx, all its workers', prefix_placement: ctx.config.prefix_affinity.placement };
      // The waiting room is this nginx's: another gateway node queues its own requests.
      if (ctx.admits) doc.admission = Object.assign({ scope: 'this nginx, all its workers' }, admissionReport(ctx.store));
      if (peers !== null) {
        // Where the replicas come from: null synced_at means not read yet (routing on the static replicas).
        doc.peers = { source: 'nginx-plus-api', upstream: peers.upstream, synced_at: peers.syncedAt === null ? null : new Date(peers.syncedAt).toISOString() };
      }
      r.headersOut['Content-Type'] = 'application/json';
      r.return(200, JSON.stringify(doc) + '\n');
    }
  } catch (e) {
    r.error('llm-balancer: status failed: ' + describeError(e));
    r.headersOut['Content-Type'] = 'application/json';
    r.return(500, internalError('the status page failed (see the nginx error log)'));
  }
}

/** js_content of /llm-balancer/status: JSON, or Prometheus text with ?format=prometheus. */
export function status(r: NjsRequest): void {
  sendMetrics(r, firstArg(r.args.format) === 'prometheus');
}

/** js_content of /llm-balancer/metrics: Prometheus text exposition. */
export function metrics(r: NjsRequest): void {
  sendMetrics(r, true);
}
