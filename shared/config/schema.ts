// The ONE declaration of every configuration option: type, default, allowed values, description.
// validate.ts, kong-schema.ts and docs.ts are all driven by this data; nothing else lists options.
//
// The format mirrors Kong's plugin schema (kong/db/schema/metaschema.lua) so that converting is
// nearly the identity: an ordered array of single-key objects `{ name: field }`, with `one_of`,
// `between` (inclusive), `default`, `required`, `len_min`/`len_max`, `fields` (records) and
// `elements` (arrays). Three attributes are ours and are dropped for Kong:
//   also_allowed  sentinel numbers accepted outside `between` (e.g. 0 = "off")
//   hint          appended to a range error, to explain a sentinel or a gap
//   format        a named string format checked by validate.ts ('host-port', 'url-path', 'printable')
//
// `required` follows Kong's meaning: on a scalar it means "must be given" (unless a default exists);
// on a record it means "always present": a missing record is built from its fields' defaults.
// A record with `required: false` and no default is null when missing (hash_key).
//
// Defaults follow the systems the design cites: Envoy's outlier detection (5 failures, 30 s base
// ejection, 300 s cap, 10% max ejected, panic mode), Finagle/linkerd peak EWMA (10 s decay),
// Mirrokni et al.'s bounded-load consistent hashing (c = 1.25), NGINX/Kong weight 1..65535.

export type FieldType = 'string' | 'number' | 'integer' | 'boolean' | 'record' | 'array';

export type StringFormat = 'host-port' | 'url-path' | 'printable';

export interface FieldSpec {
  type: FieldType;
  /** One line; Kong requires 10..500 characters. Optional only on array `elements`. */
  description?: string;
  default?: unknown;
  required?: boolean;
  one_of?: Array<string | number>;
  /** Inclusive [min, max] for number and integer fields. */
  between?: [number, number];
  /** Numbers accepted although outside `between` (ours, not Kong's). */
  also_allowed?: number[];
  /** Extra words for a range error (ours, not Kong's). */
  hint?: string;
  /** one_of values Kong's generated schema leaves out: they need what a Kong JS plugin cannot see. */
  kong_excluded?: string[];
  /** A named string format (ours, not Kong's). */
  format?: StringFormat;
  len_min?: number;
  len_max?: number;
  /** Record fields, in order: each entry an object with exactly one key. */
  fields?: FieldEntry[];
  /** The field every array element must satisfy. */
  elements?: FieldSpec;
}

export type FieldEntry = { [name: string]: FieldSpec };

/** Strategy names in the order the docs list them. */
export const STRATEGIES = [
  'round-robin',
  'weighted-round-robin',
  'least-connections',
  'least-tokens',
  'prefix-affinity',
  'llm',
  'response-time',
  'consistent-hash',
  'hybrid',
];

/** Strategies that need no hash key, so they can serve requests that carry none. */
export const KEYLESS_STRATEGIES = ['round-robin', 'weighted-round-robin', 'least-connections', 'least-tokens', 'response-time'];

/** Hash key sources that read a named thing, so `hash_key.name` is required. */
export const NAMED_HASH_KEY_SOURCES = ['header', 'cookie', 'query', 'body'];

export const schema: FieldEntry[] = [
  {
    strategy: {
      type: 'string',
      default: 'least-connections',
      one_of: STRATEGIES,
      description: 'How the replica is picked; see the strategies section for each algorithm.',
    },
  },
  {
    retries: {
      type: 'integer',
      default: 1,
      // 1 alternate as Envoy's default retry policy; 10 caps the fan-out of one request over a fleet.
      between: [0, 10],
      description: 'Alternates returned after the pick, tried in order when an attempt fails.',
    },
  },
  {
    retry_on: {
      type: 'array',
      // A replica's 429 / 5xx answer says nothing about the request itself (overload, a crashed
      // engine, a restart): another replica answers it. 501 and 505 would fail anywhere: not listed.
      default: [429, 500, 502, 503, 504],
      description:
        "Replica answers retried on the next alternate before any byte reached the client (NGINX; Kong's JS plugins cannot switch replicas mid-request).",
      elements: {
        type: 'integer',
        one_of: [408, 425, 429, 500, 502, 503, 504, 507],
      },
    },
  },
  {
    on_no_healthy: {
      type: 'string',
      default: 'fail',
      one_of: ['fail', 'panic'],
      description:
        'When no replica is healthy: fail answers 503; panic routes to all replicas (as Envoy\'s panic mode).',
    },
  },
  {
    replicas: {
      type: 'array',
      default: [],
      // Kong reads targets from its Admin API, so an empty list is legal; 256 bounds the per-pick
      // work and the shared-dict footprint (one upstream rarely has more model replicas than that).
      len_max: 256,
      description: 'Static replica list; on Kong with kong.upstream set, only used until the first Admin API read.',
      elements: {
        type: 'record',
        fields: [
          {
            address: {
              type: 'string',
              required: true,
              format: 'host-port',
              description: 'host:port of the replica; IPv6 in brackets, e.g. [::1]:8000.',
            },
          },
          {
            weight: {
              type: 'number',
              default: 1,
              // Kong's and NGINX Plus's target weights go up to 65535; fractions are allowed because
              // our weighted strategies work on real numbers (0.8 = 80% of a unit replica).
              between: [0, 65535],
              description: 'Relative capacity (fractions allowed); 0 keeps the replica but never picks it.',
            },
          },
          {
            id: {
              type: 'string',
              required: false,
              len_min: 1,
              len_max: 256,
              // Ids are written into log lines and nginx.conf comments: a newline would forge a log
              // entry or end the comment (and start a directive).
              format: 'printable',
              description: 'Stable name used in state keys, logs and status; defaults to the address.',
            },
          },
        ],
      },
    },
  },
  {
    hash_key: {
      type: 'record',
      required: false,
      description: 'Where a request\'s sticky key comes from; null means requests carry no key.',
      fields: [
        {
          source: {
            type: 'string',
            required: true,
            one_of: ['header', 'consumer', 'cookie', 'query', 'client-ip', 'body'],
            description: 'header, cookie, query argument, JSON body field, Kong consumer or client IP.',
          },
        },
        {
          name: {
            type: 'string',
            required: false,
            len_min: 1,
            len_max: 256,
            description:
              'Header, cookie or query name, or a dotted body path (metadata.session_id); unset for consumer and client-ip.',
          },
        },
      ],
    },
  },
  {
    least_connections: {
      type: 'record',
      required: true,
      description: 'Options of the least-connections strategy.',
      fields: [
        {
          choices: {
            type: 'integer',
            default: 0,
            // 16 is far past the point where more samples help: with d choices the maximum load
            // gap shrinks as log log n / log d, so d beyond a handful changes nothing measurable.
            between: [2, 16],
            also_allowed: [0],
            hint: '0 compares all replicas, 2 is power of two choices; 1 would be a plain random pick',
            description: 'Replicas sampled per pick: 0 compares all, 2 is power of two choices.',
          },
        },
      ],
    },
  },
  {
    least_tokens: {
      type: 'record',
      required: true,
      description: 'Options of the least-tokens strategy: load = estimated tokens in flight (uncached prompt + expected output).',
      fields: [
        {
          default_output_tokens: {
            type: 'integer',
            default: 256,
            // A typical chat answer is a few hundred tokens; the estimate only needs the right scale.
            between: [1, 1000000],
            description: 'Output tokens expected from a request that sets no max_tokens.',
          },
        },
        {
          max_output_tokens: {
            type: 'integer',
            default: 1024,
            // Clients often send a large max_tokens "just in case": counting 32k for a 200-token
            // answer would make one request look like a hundred.
            between: [1, 1000000],
            description: 'Cap on the output tokens counted from a request\'s max_tokens.',
          },
        },
        {
          default_request_tokens: {
            type: 'integer',
            default: 512,
            between: [1, 10000000],
            description: 'Tokens counted for a request whose body is missing, too large or not an OpenAI request.',
          },
        },
        {
          discount_cached_prefix: {
            type: 'boolean',
            default: true,
            // The definition: a replica's load is its UNCACHED prompt plus expected output.
            // The prefix a replica was last sent is likely still in its cache: its prefill is skipped.
            description:
              "Count only the uncached part of the prompt: the prefix last routed to a replica (prefix_affinity's block table) is not counted on it.",
          },
        },
        {
          prefill_weight: {
            type: 'number',
            default: 1,
            between: [1, 100],
            // Dynamo's KV router weighs a block to prefill against a block carried the same way
            // (overlap_score_weight); the oracle of the shootout needed 8 (BENCHMARKS.md).
            description:
              'Weight of the prompt tokens a replica would have to prefill (not in its cache, by the block table) against the tokens already in flight there, in the order only: above 1, a prompt stays with the replica that holds its prefix under more load.',
          },
        },
      ],
    },
  },
  {
    prefix_affinity: {
      type: 'record',
      required: true,
      description: 'Options of the prefix-affinity strategy: the replica that was sent a prompt\'s prefix gets it again, within load bounds.',
      fields: [
        {
          block_tokens: {
            type: 'integer',
            default: 64,
            // vLLM caches 16-token blocks; 64 (256 characters) keeps the table and the per-request
            // hashing small while a system prompt of a few hundred tokens still spans several blocks.
            between: [4, 4096],
            description: 'Prefix block size in tokens (4 characters per token); prompts are matched block by block.',
          },
        },
        {
          max_blocks: {
            type: 'integer',
            default: 128,
            between: [1, 4096],
            description: 'Blocks hashed per prompt (128 × 64 tokens = the first 8,192 tokens).',
          },
        },
        {
          table_slots: {
            type: 'integer',
            default: 8192,
            // Each slot is one shared-dict entry (~100 bytes in njs): 8192 fit a 1m state zone
            // with room for the replicas' own keys.
            between: [16, 16777216],
            description: 'Entries in the table of routed prefix blocks (shared by all workers; older blocks are overwritten).',
          },
        },
        {
          min_match: {
            type: 'number',
            default: 0.3,
            between: [0, 1],
            description: 'Share of the prompt\'s blocks a replica must hold for affinity to count (SGLang\'s cache threshold).',
          },
        },
        {
          balance_abs: {
            type: 'number',
            default: 16,
            between: [0, 100000],
            description: 'Least load first when max - min in-flight (per weight) exceeds this AND balance_rel (SGLang: 64).',
          },
        },
        {
          balance_rel: {
            type: 'number',
            default: 1.5,
            between: [1, 1000],
            description: 'Least load first when the busiest replica has more than this times the least busy one\'s load.',
          },
        },
        {
          balance_factor: {
            type: 'number',
            default: 1.25,
            between: [1, 10],
            also_allowed: [0],
            hint: '0 disables the bound',
            description: 'The matched replica is skipped above ceil(c x average in-flight x weight share); 0 disables.',
          },
        },
        {
          placement: {
            type: 'string',
            default: 'rendezvous',
            one_of: ['rendezvous', 'least-load'],
            // rendezvous: a prefix no table knows goes to the rendezvous owner of its first block, the
            // same replica through every gateway node (each node's table only learns its own traffic,
            // so placing by load splits a shared prefix over the replicas' caches once per node). It
            // changes only the first placement of a prefix on a single node (where least load picked at
            // random among idle replicas); least-load restores that for users who rely on it.
            description:
              "Where a prompt prefix no table entry knows goes: 'rendezvous' (a hash of its first block over the eligible replicas: the same replica from every gateway node, within the load bounds; least-tokens and llm favour that replica) or 'least-load'.",
          },
        },
      ],
    },
  },
  {
    response_time: {
      type: 'record',
      required: true,
      description: 'Options of the response-time strategy (peak EWMA).',
      fields: [
        {
          half_life_s: {
            type: 'number',
            default: 10,
            // 0.1 s: below that one slow request erases all history; 600 s: a replica that slowed
            // down ten minutes ago should not still look fast.
            between: [0.1, 600],
            description: 'Half-life in seconds of the time-decayed latency average (Finagle uses 10 s).',
          },
        },
        {
          peak_sensitive: {
            type: 'boolean',
            default: true,
            description: 'A sample slower than the average replaces it at once (Finagle\'s peak EWMA).',
          },
        },
        {
          latency_metric: {
            type: 'string',
            default: 'e2e',
            one_of: ['e2e', 'ttft', 'tpot'],
            // Kong's JS plugins never see the response body, so tpot cannot work there: Kong's own
            // schema check refuses it at configuration time.
            kong_excluded: ['tpot'],
            description:
              'Latency the estimate follows: e2e (whole response), ttft (to the first streamed byte; Kong sees time to headers) or tpot (per output token; NGINX only).',
          },
        },
      ],
    },
  },
  {
    consistent_hash: {
      type: 'record',
      required: true,
      description: 'Options of the consistent-hash strategy.',
      fields: [
        {
          balance_factor: {
            type: 'number',
            default: 1.25,
            // Below 1 no assignment can satisfy the bound (the average load itself exceeds it);
            // above 10 the bound never binds in practice, so 0 is the honest way to say "off".
            between: [1, 10],
            also_allowed: [0],
            hint: '0 disables the bound',
            description: 'Bounded load c (Mirrokni et al.): no replica above c x average load; 0 disables.',
          },
        },
        {
          fallback: {
            type: 'string',
            default: 'least-connections',
            one_of: KEYLESS_STRATEGIES,
            description: 'Strategy for requests that carry no hash key.',
          },
        },
      ],
    },
  },
  {
    hybrid: {
      type: 'record',
      required: true,
      description: 'Options of the hybrid strategy: drop saturated replicas, then sticky by key, else best latency.',
      fields: [
        {
          sticky: {
            type: 'boolean',
            default: true,
            description: 'Requests with a hash key stay on the replica the key maps to while it is under max_concurrent.',
          },
        },
        {
          max_concurrent: {
            type: 'integer',
            default: 64,
            // 64 in-flight generations is a typical vLLM max_num_seqs-scale batch per replica.
            between: [1, 100000],
            description: 'Replicas with this many in-flight requests or more are skipped before the latency pick.',
          },
        },
      ],
    },
  },
  {
    timeouts: {
      type: 'record',
      required: true,
      description: 'How long an attempt may wait on a replica before it fails over (NGINX proxy_*_timeout, Kong set_timeouts).',
      fields: [
        {
          connect_s: {
            type: 'number',
            // A lost SYN is resent after 1 s; 3 s covers that once with room, and a blackholed host
            // costs a request 3 s before its alternate instead of nginx's 60 s default.
            default: 3,
            between: [0.1, 60],
            description: 'Seconds to establish the connection to a replica; then the attempt fails as a connect error.',
          },
        },
        {
          response_s: {
            type: 'number',
            // A non-streaming answer arrives whole after the whole generation: minutes for long
            // outputs on a busy card. The OpenAI client waits 600 s; 300 s keeps nginx's old bound.
            default: 300,
            between: [1, 86400],
            description: 'Seconds an attempt not known to stream may wait for the answer (and any later silence); then it times out.',
          },
        },
        {
          stream_idle_s: {
            type: 'number',
            // Servers send a stream's headers at once and its first token after queue + prefill:
            // seconds normally, tens of seconds for a 100k-token prompt on a busy card. 60 s of
            // silence is past that; a hung replica is cut off 5x sooner than by response_s.
            default: 60,
            between: [1, 86400],
            description:
              'Seconds a streaming attempt ("stream": true) may stay silent before its first byte or between chunks; then it times out. NGINX reads every body to tell streams apart unless this equals response_s; Kong only with kong.stream_timeouts or a body-reading strategy.',
          },
        },
      ],
    },
  },
  {
    passive_health: {
      type: 'record',
      required: true,
      description: 'Passive outlier detection (as Envoy): eject replicas after consecutive failures or at an outlying failure rate; rest stuck replicas.',
      fields: [
        {
          enabled: {
            type: 'boolean',
            default: true,
            description: 'Eject replicas that fail consecutive requests.',
          },
        },
        {
          consecutive_failures: {
            type: 'integer',
            default: 5,
            // Envoy's consecutive_5xx default; 1000 is "practically never" without disabling.
            between: [1, 1000],
            description: 'Consecutive failures that eject a replica (Envoy: 5).',
          },
        },
        {
          failure_kinds: {
            type: 'array',
            default: ['connect-error', 'timeout', '5xx'],
            description: 'Outcomes that count as failures; add 429 to back off from rate-limited replicas.',
            elements: {
              type: 'string',
              one_of: ['connect-error', 'timeout', '5xx', '429'],
            },
          },
        },
        {
          consecutive_connect_errors: {
            type: 'integer',
            // A refused or failed connection means the process or host is gone, not a flaky answer,
            // so fewer than consecutive_failures. Not 1: a kept-alive connection the replica closed
            // just as the gateway reused it (uvicorn closes idle ones after 5 s) fails the same way
            // once. A passing active probe lifts such an ejection as soon as the replica is back.
            default: 2,
            between: [1, 1000],
            description: 'Consecutive connect errors that eject a replica (a refused connection is not a flaky answer).',
          },
        },
        {
          failure_rate_threshold: {
            type: 'number',
            // Envoy's failure_percentage ejection, made usable for 2-5 replicas: a replica failing
            // 30% of its requests is caught, while a fleet-wide error burst (everyone at 30%) is not
            // an outlier (failure_rate_relative).
            default: 0.2,
            between: [0.01, 1],
            also_allowed: [0],
            hint: '0 disables failure-rate ejection',
            description: "Eject a replica whose share of failed requests over failure_rate_window_s reaches this (0 disables).",
          },
        },
        {
          failure_rate_relative: {
            type: 'number',
            // Twice the rest of the fleet's share: an outlier, not a shared cause.
            default: 2,
            between: [1, 100],
            description: "...and is at least this many times the other replicas' combined failure share.",
          },
        },
        {
          failure_rate_min_requests: {
            type: 'integer',
            // Envoy asks 50 per 10 s interval; 10 lets a replica with a few requests per second be
            // judged within seconds while 2 unlucky failures of 10 still need the relative test.
            default: 10,
            between: [1, 100000],
            description: 'Requests a replica must have ended within the window before its failure share is judged.',
          },
        },
        {
          failure_rate_window_s: {
            type: 'number',
            // Envoy's outlier detection interval.
            default: 10,
            between: [1, 3600],
            description: 'Time constant in seconds of the decaying request and failure counts the share is taken from.',
          },
        },
        {
          stuck_after_s: {
            type: 'number',
            // Half of stream_idle_s: a replica whose requests all stall stops getting new ones well
            // before the first of them times out; long non-streaming answers on a replica that
            // holds only them may rest it early (it gets traffic again when one completes).
            default: 30,
            between: [1, 86400],
            also_allowed: [0],
            hint: '0 disables stuck-replica detection',
            description:
              'A replica holding requests that made no progress (no answer, no first byte) for this long, while another replica progressed, gets no new requests (0 disables).',
          },
        },
        {
          base_ejection_s: {
            type: 'number',
            default: 30,
            // Envoy's base_ejection_time; ejections are timed in whole seconds of the injected clock.
            between: [1, 3600],
            description: 'First ejection in seconds; each further ejection lasts this times their count.',
          },
        },
        {
          max_ejection_s: {
            type: 'number',
            default: 300,
            // Envoy's max_ejection_time; a day is the longest a replica should stay out unattended.
            between: [1, 86400],
            description: 'Longest ejection in seconds; must be at least base_ejection_s.',
          },
        },
        {
          max_ejected_percent: {
            type: 'integer',
            // Envoy's max_ejection_percent; at least one replica may always be ejected so that small
            // fleets (fewer than 10 replicas) still get outlier detection.
            default: 10,
            between: [0, 100],
            description: 'Most replicas ejected at once, in percent; one may always be ejected.',
          },
        },
      ],
    },
  },
  {
    active_health: {
      type: 'record',
      required: true,
      description: 'Active health checks, run in the background by the NGINX module (js_periodic) and by the Kong plugin server.',
      fields: [
        {
          enabled: {
            type: 'boolean',
            default: false,
            description: 'Probe every replica periodically and stop routing to those that fail.',
          },
        },
        {
          path: {
            type: 'string',
            default: '/health',
            format: 'url-path',
            len_min: 1,
            len_max: 1024,
            // vLLM, SGLang and TGI all answer GET /health with 200 once the model is loaded.
            description: 'HTTP path probed with GET on each replica; 2xx and 3xx pass (vLLM, SGLang, TGI: /health).',
          },
        },
        {
          interval_s: {
            type: 'number',
            // Kong's healthy/unhealthy interval is commonly 5 s; a probe per 5 s per replica is negligible load.
            default: 5,
            between: [1, 3600],
            description: 'Seconds between probes of one replica.',
          },
        },
        {
          timeout_s: {
            type: 'number',
            default: 2,
            between: [0.1, 60],
            description: 'A probe without an answer after this many seconds fails.',
          },
        },
        {
          healthy_threshold: {
            type: 'integer',
            // Kong's healthy.successes default is 0 (off); 2 passes in a row avoid flapping back on one lucky probe.
            default: 2,
            between: [1, 100],
            description: 'Consecutive passed probes that mark an unhealthy replica healthy again.',
          },
        },
        {
          unhealthy_threshold: {
            type: 'integer',
            // Kong's http_failures for active checks is commonly 3: one slow probe is not an outage.
            default: 3,
            between: [1, 100],
            description: 'Consecutive failed probes that mark a replica unhealthy.',
          },
        },
      ],
    },
  },
  {
    slow_start: {
      type: 'record',
      required: true,
      description: 'Envoy-style slow start: a replica that is new or just recovered gets a ramping share of its weight.',
      fields: [
        {
          window_s: {
            type: 'number',
            default: 0,
            // An hour is far past any warm-up (weights loaded, kernels compiled, cache filled).
            between: [0, 3600],
            description: 'Length of the ramp in seconds; 0 disables slow start.',
          },
        },
        {
          aggression: {
            type: 'number',
            default: 1,
            between: [0.1, 10],
            description: 'Ramp shape: weight x (t / window)^(1 / aggression); 1 is linear, above 1 ramps faster early (Envoy).',
          },
        },
        {
          min_weight_percent: {
            type: 'number',
            default: 10,
            between: [1, 100],
            description: 'Lowest share of its weight a ramping replica gets (Envoy: 10).',
          },
        },
      ],
    },
  },
  {
    models: {
      type: 'record',
      required: true,
      description: "Which replica serves which model: the request body's model picks among the replicas serving it; an unknown model gets 404.",
      fields: [
        {
          declared: {
            type: 'array',
            default: [],
            len_max: 256,
            description: 'What replicas serve, by replica id or host:port; a replica not listed may serve any model.',
            elements: {
              type: 'record',
              fields: [
                { replica: { type: 'string', required: true, len_min: 1, len_max: 256, format: 'printable', description: 'The replica: its id, or its host:port (Kong upstream targets).' } },
                {
                  models: {
                    type: 'array',
                    required: true,
                    len_min: 1,
                    len_max: 256,
                    description: 'Model and LoRA adapter names it serves, as requests name them.',
                    elements: { type: 'string', len_min: 1, len_max: 256, format: 'printable' },
                  },
                },
              ],
            },
          },
        },
        {
          discovery: {
            type: 'boolean',
            default: true,
            description:
              "Learn what each replica not in declared serves from its own models.path every refresh_s (Kong; NGINX when it reads the body anyway).",
          },
        },
        {
          path: {
            type: 'string',
            default: '/v1/models',
            format: 'url-path',
            len_min: 1,
            len_max: 256,
            description: 'Path of the OpenAI model list on every replica (vLLM, SGLang and llama.cpp serve /v1/models).',
          },
        },
        {
          refresh_s: {
            type: 'number',
            default: 10,
            // Served models change with deployments and adapter loads, not per request: one small
            // GET per replica per 10 s notices a new adapter quickly.
            between: [1, 3600],
            description: "Seconds between reads of each replica's model list.",
          },
        },
        {
          timeout_s: {
            type: 'number',
            default: 2,
            between: [0.1, 60],
            description: 'A model-list read not answered within this many seconds fails; the last list read is kept.',
          },
        },
        {
          default: {
            type: 'string',
            required: false,
            len_min: 1,
            len_max: 256,
            format: 'printable',
            description: 'Model for requests whose body names none; unset: such requests may go to any replica.',
          },
        },
        {
          aliases: {
            type: 'array',
            default: [],
            len_max: 256,
            description: "Public model names mapped to served names: the body's model is rewritten to the served name before proxying.",
            elements: {
              type: 'record',
              fields: [
                { name: { type: 'string', required: true, len_min: 1, len_max: 256, format: 'printable', description: 'The name clients send in the body\'s model.' } },
                { model: { type: 'string', required: true, len_min: 1, len_max: 256, format: 'printable', description: 'The served model or adapter name it stands for.' } },
              ],
            },
          },
        },
        {
          dynamic_lora: {
            type: 'boolean',
            default: false,
            description:
              'The replicas load LoRA adapters on demand (vLLM with a LoRA resolver): an adapter no list names yet may go to any replica serving its base model, or to any replica when its base is unknown, instead of 404.',
          },
        },
        {
          adapter_balance_factor: {
            type: 'number',
            default: 3,
            // Measured (the core in front of the emulator's engines, multi-LoRA mixes, 4 seeds):
            // prefix_affinity's 1.25 spilled an adapter off its replica at every burst, and each spill
            // loads it elsewhere and evicts another: ~1.5x the adapter loads and a higher TTFT; 2 still
            // ~1.3x the loads of 3 with 16 adapters; above 3 nothing changes (llm's load scores spread first).
            between: [0, 100],
            description:
              "LoRA placement's load guard (llm's adapter scorer and models.adapter_filter): a replica with more than this many times its weighted share of the requests in flight gets no pull for the adapters it holds, so a hot adapter spreads to more replicas instead of piling onto one. 0: no guard.",
          },
        },
        {
          adapter_filter: {
            type: 'boolean',
            default: false,
            description:
              "For strategies other than llm (which scores it: llm.adapter_weight): a request naming a LoRA adapter goes to the replicas best placed for it (it ran or was sent there recently > a free GPU slot > loading > every slot taken), among those under models.adapter_balance_factor's load bound; the strategy picks among them. Needs the replicas' vllm:lora_requests_info, scraped from replica_metrics.path.",
          },
        },
      ],
    },
  },
  {
    replica_metrics: {
      type: 'record',
      required: true,
      description: "The replicas' own /metrics (vLLM, SGLang, llama.cpp's llama-server with --metrics, TGI), scraped by the gateway when the strategy reads them (llm).",
      fields: [
        {
          path: {
            type: 'string',
            default: '/metrics',
            format: 'url-path',
            len_min: 1,
            len_max: 256,
            description: 'Path of the Prometheus metrics on every replica (vLLM, SGLang, llama-server and TGI serve /metrics).',
          },
        },
        {
          interval_s: {
            type: 'number',
            default: 1,
            // llm-d scrapes every 50 ms; once a second keeps the gateway's own work negligible and
            // still follows a queue that builds over seconds.
            between: [0.05, 60],
            description: 'Seconds between scrapes of each replica.',
          },
        },
        {
          timeout_s: {
            type: 'number',
            default: 1,
            between: [0.05, 30],
            description: 'A scrape not answered within this many seconds counts as failed.',
          },
        },
        {
          stale_after_s: {
            type: 'number',
            default: 5,
            between: [0.1, 600],
            description: 'Values older than this are ignored (the replica stopped answering /metrics): in-flight counts stand in.',
          },
        },
      ],
    },
  },
  {
    llm: {
      type: 'record',
      required: true,
      description: 'The llm strategy: drop saturated replicas, then score queue, KV cache, prefix match and token load, pick the best.',
      fields: [
        {
          queue_weight: {
            type: 'number',
            default: 2,
            // llm-d's default blend: queue 2, KV cache 2, prefix 3.
            between: [0, 100],
            description: 'Weight of the queue score (running + waiting from /metrics, else in-flight), per replica weight.',
          },
        },
        {
          kv_weight: {
            type: 'number',
            default: 2,
            between: [0, 100],
            description: 'Weight of the free KV-cache score (1 - kv_cache_usage from /metrics).',
          },
        },
        {
          prefix_weight: {
            type: 'number',
            default: 3,
            between: [0, 100],
            description: "Weight of the prefix score: the share of the prompt's blocks last sent to the replica (prefix_affinity options).",
          },
        },
        {
          tokens_weight: {
            type: 'number',
            default: 1,
            between: [0, 100],
            description: 'Weight of the token-load score (estimated tokens in flight, least_tokens options).',
          },
        },
        {
          adapter_weight: {
            type: 'number',
            default: 8,
            between: [0, 100],
            description:
              "Weight of the LoRA-adapter score for a request naming an adapter: 1 where it runs, 0.8 a free slot, 0.6 loading, 0 every slot taken (vLLM's vllm:lora_requests_info).",
          },
        },
        {
          kv_saturation: {
            type: 'number',
            default: 0.95,
            between: [0.1, 1],
            description: 'Replicas at or above this KV-cache usage are skipped while another is below (vLLM would preempt).',
          },
        },
        {
          queue_saturation: {
            type: 'integer',
            default: 32,
            between: [1, 100000],
            description: 'Replicas with this many waiting requests (per weight) are skipped while another has fewer.',
          },
        },
      ],
    },
  },
  {
    admission: {
      type: 'record',
      required: true,
      description: 'Hold requests at the gateway while every replica is saturated, ordered by priority and fair across tenants.',
      fields: [
        {
          enabled: {
            type: 'boolean',
            default: false,
            description: 'Queue requests at the gateway while the pool is saturated (never while it has room).',
          },
        },
        {
          saturation: {
            type: 'string',
            default: 'metrics',
            one_of: ['metrics', 'concurrency', 'both'],
            description: "What saturates a replica: its /metrics (waiting queue, KV usage; stale counts as saturated), in-flight requests, or either.",
          },
        },
        {
          queue_threshold: {
            type: 'integer',
            default: 5,
            // llm-d's saturation detector: 5 waiting requests, 80% KV cache.
            between: [1, 100000],
            description: 'A replica with this many waiting requests (per weight) in its /metrics is saturated.',
          },
        },
        {
          kv_threshold: {
            type: 'number',
            default: 0.8,
            between: [0.05, 1],
            description: 'A replica at or above this KV-cache usage (0..1) in its /metrics is saturated.',
          },
        },
        {
          max_concurrency: {
            type: 'integer',
            default: 0,
            between: [0, 100000],
            description: 'A replica with this many requests in flight (per weight) is saturated; 0: only its /metrics count.',
          },
        },
        {
          max_wait_s: {
            type: 'number',
            default: 10,
            between: [0.01, 3600],
            description: 'Longest a request waits at the gateway before it is answered with reject_status.',
          },
        },
        {
          max_queue: {
            type: 'integer',
            default: 256,
            between: [1, 1000000],
            description: 'Requests waiting per model pool on one gateway node at most; past it a newcomer displaces a lower band or is rejected.',
          },
        },
        {
          reject_status: {
            type: 'integer',
            default: 429,
            one_of: [429, 503],
            description: 'Status of a request that timed out, was displaced or shed while waiting (with Retry-After).',
          },
        },
        {
          priority: {
            type: 'integer',
            default: 0,
            between: [-100, 100],
            description: 'Priority band of the requests this config routes (higher first); below 0 never waits: rejected when saturated.',
          },
        },
        {
          route_priorities: {
            type: 'array',
            default: [],
            len_max: 256,
            description: "Kong: the band of requests on these routes (matched by Kong's router), instead of priority.",
            elements: {
              type: 'record',
              fields: [
                { route: { type: 'string', required: true, len_min: 1, len_max: 256, format: 'printable', description: 'A Kong route name or id.' } },
                { priority: { type: 'integer', required: true, between: [-100, 100], description: 'The band of its requests (higher first; below 0 sheddable).' } },
              ],
            },
          },
        },
        {
          consumer_priorities: {
            type: 'array',
            default: [],
            len_max: 10000,
            description:
              "The band of these consumers' requests (the identity the gateway's auth verified: a Kong consumer's id or username; on NGINX the consumer variable), before route_priorities and priority.",
            elements: {
              type: 'record',
              fields: [
                { consumer: { type: 'string', required: true, len_min: 1, len_max: 256, format: 'printable', description: 'A consumer id or username (Kong), or the verified consumer variable\'s value (NGINX).' } },
                { priority: { type: 'integer', required: true, between: [-100, 100], description: 'The band of its requests (higher first; below 0 sheddable).' } },
              ],
            },
          },
        },
        {
          fairness: {
            type: 'string',
            default: 'consumer',
            one_of: ['consumer', 'none'],
            description: "Within a band, take turns across the consumers the gateway's auth verified, or first come first served.",
          },
        },
      ],
    },
  },
];

/** The name and spec of a single-key field entry. */
export function entryName(entry: FieldEntry): string {
  return Object.keys(entry)[0];
}

/** A declared field with its dotted path: `passive_health.max_ejection_s`, `replicas[].address`. */
export interface FieldPath {
  path: string;
  name: string;
  spec: FieldSpec;
}

/**
 * Every declared field of `fields` (default: the shared schema), depth first in declaration order
 * (a record or array before its members).
 */
export function fieldPaths(fields?: FieldEntry[]): FieldPath[] {
  const out: FieldPath[] = [];
  collectPaths(fields === undefined ? schema : fields, '', out);
  return out;
}

function collectPaths(fields: FieldEntry[], prefix: string, out: FieldPath[]): void {
  for (let i = 0; i < fields.length; i++) {
    const name = entryName(fields[i]);
    const spec = fields[i][name];
    const path = prefix === '' ? name : prefix + '.' + name;
    out.push({ path: path, name: name, spec: spec });
    if (spec.type === 'record' && spec.fields) collectPaths(spec.fields, path, out);
    if (spec.type === 'array' && spec.elements && spec.elements.type === 'record' && spec.elements.fields) {
      collectPaths(spec.elements.fields, path + '[]', out);
    }
  }
}
