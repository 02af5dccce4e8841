// Every name the generated nginx configuration and the njs module share. The generator
// (generate.ts) writes them into nginx.conf; the njs handlers (index.ts) read the same variables.
// Changing one here changes both sides.

import type { ReplicaKeys } from '../../shared/replica-state';
import type { Replica } from '../../shared/types';

// The names the njs handlers read on every request are plain constants, and NAMES refers to
// them: njs evaluates the bundle's top level for every request, and a 25-property object literal
// cost ~3 µs of it (measured); the bundle references only these constants, so esbuild drops NAMES.

/** `js_preload_object llm_balancer_config from <file>.json;` — shape: PreloadedConfig. */
export const CONFIG_OBJECT = 'llm_balancer_config';

/** js_var: the OpenAI-style JSON error body when no replica can serve. */
export const ERROR_VAR = 'llm_balancer_error';

/** js_var (response_time.latency_metric ttft or tpot only): when the first response body byte went to the client (ms since the epoch). */
export const FIRST_BYTE_VAR = 'llm_balancer_first_byte';

/**
 * js_var (when streams get their own proxy locations): how far the response body got — "started"
 * at its first byte, "done" at its last. A stream nginx cut (read timeout, the replica closed it)
 * never reaches "done", though its status is the replica's 200.
 */
export const BODY_STATE_VAR = 'llm_balancer_body';

/**
 * js_var (models.aliases or models.default set): the request body as the replica gets it, its
 * `model` rewritten to the served name when an alias or the default applied; proxy_set_body sends it.
 */
export const REQUEST_BODY_VAR = 'llm_balancer_request_body';

/** js_var (latency_metric tpot only): the response's output tokens and whether it streamed ("<tokens>s" or "<tokens>w"), set at its last byte. */
export const OUTPUT_TOKENS_VAR = 'llm_balancer_output_tokens';

/** `js_shared_dict_zone zone=llm_balancer_peers:1m type=string;` — the NGINX Plus peer list (JSON under key `peers`). */
export const PEERS_ZONE = 'llm_balancer_peers';

/** js_shared_dict_zone (type=string) of what each replica lists at models.path (models.discovery). */
export const MODELS_ZONE = 'llm_balancer_models';
/** Its key holding the replicas' lists as JSON when two of them differ, else '' (model-discovery.ts). */
export const MODELS_ROUTING_KEY = 'routing';
/** Its key holding every asked replica's last list as JSON (GET /v1/models answers from it). */
export const MODELS_LISTS_KEY = 'lists';
/** Its key holding the replicas' LoRA GPU slots from their /metrics as JSON, '' when none reports any (metrics-scrape.ts). */
export const MODELS_LORA_KEY = 'lora';

/** js_var: seconds for the Retry-After header of a 503 when no replica can serve (set only then). */
export const RETRY_AFTER_VAR = 'llm_balancer_retry_after';

/** js_var: replica indexes of the pick and its alternates, comma-separated, in failover order. */
export const PLAN_VAR = 'llm_balancer_plan';

/** js_var (token-counting strategies only): the prompt's part of $tokensVar, released at the first streamed byte. */
export const PROMPT_TOKENS_VAR = 'llm_balancer_prompt_tokens';

/** Named location that proxies after `route` read the body (body-keyed mode; non-streaming requests when the read bounds differ). */
export const PROXY_LOCATION = '@llm_balancer_proxy';

/** Named location that proxies a streaming request after `route` read the body: its read bound is timeouts.stream_idle_s (streaming.ts). */
export const PROXY_STREAM_LOCATION = '@llm_balancer_proxy_stream';

/**
 * `js_shared_dict_zone zone=llm_balancer_waiting:<size> type=number timeout=<max_wait_s + 60 s>;`
 * (admission.enabled only) — the waiting room of saturated pools, shared by the workers (shared/waiting-room.ts).
 */
export const WAITING_ZONE = 'llm_balancer_waiting';

/** js_var (admission.enabled only): a waiting request's ticket, its key in the waiting zone. */
export const TICKET_VAR = 'llm_balancer_ticket';

/** The header that carries the ticket to the waiting room's server. */
export const TICKET_HEADER = 'X-Llm-Balancer-Ticket';

/**
 * Named location where a request of a saturated pool waits: it proxies (headers only) to the
 * waiting room's own server on a unix socket, which answers when the request's turn comes. Waiting
 * behind a proxy is what lets nginx notice a client that leaves (499): a js_content handler waiting
 * on a timer never learns it.
 */
export const WAIT_LOCATION = '@llm_balancer_wait';

/** Named location the waiting room's "your turn" answer (TURN_STATUS, intercepted) leads to: picks and proxies. */
export const ADMITTED_LOCATION = '@llm_balancer_admitted';

/** Named location answering a 503 JSON when the waiting room's server cannot be reached. */
export const WAIT_FAILED_LOCATION = '@llm_balancer_wait_failed';

/** The waiting room server's "your turn" status: intercepted by error_page, never sent to a client. */
export const TURN_STATUS = 409;

/** `js_shared_dict_zone zone=llm_balancer:<size> type=number;` — the core's Store. */
export const STATE_ZONE = 'llm_balancer';

/** js_var: the upstream block chosen by `route` (body-keyed mode), read by the proxy location. */
export const TARGET_VAR = 'llm_balancer_target';

/** js_var (token-counting strategies only): the request's estimated tokens, counted at each attempt's start and released at its end. */
export const TOKENS_VAR = 'llm_balancer_tokens';

/** js_var: replica indexes actually tried, comma-separated, in attempt order. */
export const TRIED_VAR = 'llm_balancer_tried';

/**
 * What `pick` returns when no replica can serve: an upstream whose only server is `down`, so
 * nginx answers 502 at once and the error_page chain turns it into the 503 JSON in $errorVar.
 * (Testing the pick in a rewrite-phase `if` would run it before auth and rate limits.)
 */
export const UNAVAILABLE_UPSTREAM = 'llm_balancer_unavailable';

export const NAMES = {
  /** `js_import llm_balancer from llm_balancer.js;` */
  module: 'llm_balancer',
  bundleFile: 'llm_balancer.js',
  configObject: CONFIG_OBJECT,
  /** js_import name of the generated config module (js_engine qjs). */
  configModule: 'llm_balancer_preload',
  stateZone: STATE_ZONE,
  waitingZone: WAITING_ZONE,
  ticketVar: TICKET_VAR,
  waitLocation: WAIT_LOCATION,
  admittedLocation: ADMITTED_LOCATION,
  waitFailedLocation: WAIT_FAILED_LOCATION,
  peersZone: PEERS_ZONE,
  modelsZone: MODELS_ZONE,
  /** Named location holding `js_periodic` for model discovery (models.discovery). */
  modelsLocation: '@llm_balancer_models',
  /** js_set: the upstream block of the pick, or `unavailableUpstream` when no replica can serve (then $errorVar holds the 503 body). */
  upstreamVar: 'llm_balancer_upstream',
  /** js_set, one per failover attempt (`llm_balancer_retry_1`, ...): the next alternate's upstream block, or ''. */
  retryVarPrefix: 'llm_balancer_retry_',
  planVar: PLAN_VAR,
  triedVar: TRIED_VAR,
  errorVar: ERROR_VAR,
  retryAfterVar: RETRY_AFTER_VAR,
  /** Set by auth_request_set from the auth answer's identity header (nginx.auth_request): the consumer. */
  consumerVar: 'llm_balancer_consumer',
  /** map: 1 when a failover location is reached before any pick (nginx refused the request: limit_req, ...). */
  refusedVar: 'llm_balancer_refused',
  tokensVar: TOKENS_VAR,
  promptTokensVar: PROMPT_TOKENS_VAR,
  firstByteVar: FIRST_BYTE_VAR,
  outputTokensVar: OUTPUT_TOKENS_VAR,
  bodyStateVar: BODY_STATE_VAR,
  requestBodyVar: REQUEST_BODY_VAR,
  targetVar: TARGET_VAR,
  /** js_set used only in log_format: evaluated in the LOG phase, it records every attempt's outcome. */
  outcomeVar: 'llm_balancer_outcome',
  logFormat: 'llm_balancer',
  proxyLocation: PROXY_LOCATION,
  proxyStreamLocation: PROXY_STREAM_LOCATION,
  /** Named locations for failover attempts: `@llm_balancer_retry_1`, ... */
  retryLocationPrefix: '@llm_balancer_retry_',
  /** The same for streaming requests (timeouts.stream_idle_s): `@llm_balancer_retry_stream_1`, ... */
  retryStreamLocationPrefix: '@llm_balancer_retry_stream_',
  /** Named location holding `js_periodic` for active health checks. */
  periodicLocation: '@llm_balancer_periodic',
  /** Named location holding `js_periodic` for the active checks' log lines (the probes' own location logs to /dev/null). */
  healthReportLocation: '@llm_balancer_health_report',
  /** Named location holding `js_periodic` for the replicas' /metrics scrape (strategies that read replica load). */
  metricsLocation: '@llm_balancer_metrics',
  /** Named location holding `js_periodic` for the NGINX Plus peer sync (its own fetch timeout). */
  peerSyncLocation: '@llm_balancer_peer_sync',
  /** One `upstream {}` block per replica, by index: `llm_balancer_0`, `llm_balancer_1`, ... */
  upstreamPrefix: 'llm_balancer_',
  unavailableUpstream: UNAVAILABLE_UPSTREAM,
} as const;

/** What the generator writes into the preloaded JSON file. */
export interface PreloadedConfig {
  /** The validated balancer configuration (shared schema). */
  config: unknown;
  /** Upstream block name per replica, same order as config.replicas. */
  upstreams: string[];
  /**
   * The static replicas as the core's Replica objects with their Store keys, same order: what
   * the handlers would otherwise build from config.replicas on every request (each njs request
   * runs in a fresh VM, and every property of every object built costs ~0.1 µs there).
   * Read-only: nothing writes to a Replica. Absent in a JSON from an older generator.
   */
  replicas?: Replica[];
  /** Store keys per replica, same order: written by older generators only (now inside `replicas`). */
  keys?: ReplicaKeys[];
  /** When set, replicas, weights and state come from this NGINX Plus upstream API instead. */
  plusApi: PlusApiOptions | null;
  /** The nginx variable (without $) read as the caller identity for `hash_key.source: consumer`. */
  consumerVariable: string;
  /** The nginx variable (without $) holding a request's admission priority band (nginx.priority_variable); absent: admission.priority for all. */
  priorityVariable?: string | null;
}

export interface PlusApiOptions {
  /** The API base, e.g. http://127.0.0.1:8080/api/9 */
  url: string;
  /** The Plus `upstream {}` whose peers are the replicas. */
  upstream: string;
  interval_s: number;
}
