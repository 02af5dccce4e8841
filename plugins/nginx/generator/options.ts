// The generator's own options: the `nginx:` section of a balancer file. Declared in the same
// schema format as the shared config and validated by the same walker, so errors read alike
// (`nginx.keepalive: must be an integer between 1 and 10000, got 0`). Kong never sees these.

import type { FieldEntry } from '../../../shared/config/schema';
import type { PlusApiOptions } from '../names';

export interface NginxOptions {
  listen: string;
  location: string;
  worker_processes: number;
  module_path: string;
  js_path: string | null;
  config_json: string | null;
  state_zone_size: string;
  keepalive: number;
  max_body_size: string;
  status_allow: string[];
  consumer_variable: string;
  consumer_variable_verified: boolean;
  auth_request: AuthRequestOptions | null;
  auth_basic_user_file: string | null;
  plus_api: PlusApiOptions | null;
  js_engine: 'njs' | 'qjs';
  js_context_reuse: number | null;
  priority_variable: string | null;
  waiting_room_socket: string | null;
}

/** An auth service nginx asks about every balanced request (auth_request); its answer names the caller. */
export interface AuthRequestOptions {
  url: string;
  identity_header: string;
}

/**
 * Options that left the `nginx:` section, with where their setting lives now: a file that still
 * sets one is refused with this message (not a bare "unknown field"), so nobody loses a bound.
 */
export const REMOVED_NGINX_OPTIONS: Record<string, string> = {
  // One proxy_read_timeout for every request kept a hung replica's requests for 5 minutes.
  read_timeout_s:
    'was replaced by the top-level timeouts record: timeouts.response_s bounds a non-streaming request\'s wait for its answer, ' +
    'timeouts.stream_idle_s a streaming one\'s silence, timeouts.connect_s the connect; move the value there',
};

/** nginx size syntax: a number with an optional k or m suffix. */
export const SIZE_PATTERN = /^[0-9]+[kKmM]?$/;

export const nginxOptionsSchema: FieldEntry[] = [
  { listen: { type: 'string', default: '8080', len_min: 1, description: 'The `listen` of the generated server: a port, *:port, host:port, ipv4:port or [ipv6]:port, optionally followed by default_server, reuseport, deferred, backlog=N or ipv6only=on|off (no ssl: terminate TLS in front, or include the --snippet in your own TLS server).' } },
  { location: { type: 'string', default: '/v1/', len_min: 1, description: 'The location prefix balanced to the replicas (OpenAI-style APIs live under /v1/): a / followed by letters, digits and - . _ ~ / only.' } },
  {
    worker_processes: {
      type: 'integer',
      default: 0,
      between: [0, 1024],
      description: 'worker_processes of the full config; 0 means auto (one per core).',
    },
  },
  {
    module_path: {
      type: 'string',
      // Where Debian's and Ubuntu's libnginx-mod-http-js install the module.
      default: '/usr/lib/nginx/modules/ngx_http_js_module.so',
      len_min: 1,
      description: 'Path of ngx_http_js_module.so for load_module (full config only; the CLI\'s --module-path overrides it). This and the other paths: no control characters, quotes, backslashes, ; { } $ # or backticks.',
    },
  },
  { js_path: { type: 'string', len_min: 1, description: 'Directory holding llm_balancer.js; unset: this package\'s dist/nginx.' } },
  { config_json: { type: 'string', len_min: 1, description: 'Where the generator writes the preloaded JSON (relative: to the balancer file\'s folder); unset: named after the configuration it belongs to, FILE.json with -o FILE, else <balancer file>.json, so two balancer files never share one.' } },
  {
    state_zone_size: {
      type: 'string',
      // ~17 numbers per replica of ~100 bytes each: 4 MB holds thousands of replicas.
      default: '4m',
      len_min: 1,
      description: 'Size of the js_shared_dict_zone holding in-flight counts, latency and health (e.g. 4m).',
    },
  },
  {
    keepalive: {
      type: 'integer',
      // nginx's own example value; LLM requests are long, so few idle connections per replica suffice.
      default: 32,
      between: [1, 10000],
      description: 'Idle keepalive connections kept open to each replica.',
    },
  },
  {
    js_engine: {
      type: 'string',
      // njs 1.0's own default is still njs, and 0.8.x (Debian trixie) has no QuickJS at all.
      default: 'njs',
      one_of: ['njs', 'qjs'],
      description:
        "The njs module's JavaScript engine (js_engine): njs (njs 0.8+, deprecated from njs 1.0) or qjs (QuickJS, njs 1.0+ built with it, as nginx.org's packages are; nginx recommends it). With qjs the config is a generated module (js_preload_object is njs-engine only).",
    },
  },
  {
    js_context_reuse: {
      type: 'integer',
      between: [0, 100000],
      description: "qjs only: js_context_reuse, how many finished contexts nginx keeps for later requests (unset: nginx's default, 128); 0 builds a context per request (~1.4 ms each).",
    },
  },
  { max_body_size: { type: 'string', default: '1m', len_min: 1, description: 'client_max_body_size (and the in-memory body buffer when the body is read to pick).' } },
  {
    status_allow: {
      type: 'array',
      default: ['127.0.0.1', '::1'],
      elements: { type: 'string', len_min: 1 },
      description: 'IPv4 or IPv6 addresses or CIDRs (no host bits set) allowed to read the status and metrics endpoints; everyone else gets 403. 0.0.0.0/0 and ::/0 allow everyone.',
    },
  },
  {
    consumer_variable: {
      type: 'string',
      default: 'remote_user',
      len_min: 1,
      description:
        'nginx variable (without $) holding the caller identity for hash_key source consumer; must be verified (see consumer_variable_verified); auth_request sets its own.',
    },
  },
  {
    consumer_variable_verified: {
      type: 'boolean',
      // Off: $remote_user without auth_basic is whatever the client's Authorization: Basic header says.
      default: false,
      description:
        'Say that your own configuration verifies consumer_variable (auth_basic with a user file, your own auth_request_set): hash_key source consumer is refused without it, auth_request or auth_basic_user_file.',
    },
  },
  {
    priority_variable: {
      type: 'string',
      len_min: 1,
      description:
        "admission: nginx variable (without $) holding a request's priority band, an integer from -100 (sheddable below 0) to 100; set it from what your auth verified (e.g. a map of the consumer), never from a client header. Unset, empty or invalid: admission.priority.",
    },
  },
  {
    waiting_room_socket: {
      type: 'string',
      len_min: 1,
      description:
        "admission: the unix socket of the waiting room's own server (requests of a saturated pool wait behind a proxy to it, so nginx notices a client that leaves). An absolute path of at most 100 bytes without ':'; unset: the preloaded config's path + .sock.",
    },
  },
  {
    auth_request: {
      type: 'record',
      required: false,
      description: 'An auth service asked about every balanced request (nginx auth_request): 2xx lets it through, 401/403 refuse it; its identity header is the consumer.',
      fields: [
        { url: { type: 'string', required: true, len_min: 1, description: 'The auth endpoint, e.g. http://127.0.0.1:9000/verify; it gets the request\'s headers, not its body.' } },
        { identity_header: { type: 'string', required: true, len_min: 1, description: 'Header of the auth answer naming the verified caller, e.g. X-User-Id.' } },
      ],
    },
  },
  {
    auth_basic_user_file: {
      type: 'string',
      len_min: 1,
      description: 'htpasswd file for nginx auth_basic on the balanced location: $remote_user is then verified.',
    },
  },
  {
    plus_api: {
      type: 'record',
      required: false,
      description: 'NGINX Plus: read replicas, weights and peer state from its upstream API instead of `replicas`.',
      fields: [
        { url: { type: 'string', required: true, len_min: 1, description: 'The API base URL, http(s)://host[:port][/path], e.g. http://127.0.0.1:8080/api/9 (njs fetches it; hostnames need a resolver).' } },
        { upstream: { type: 'string', required: true, len_min: 1, description: 'Name of the Plus upstream {} whose peers are the replicas (letters, digits and _ . : -).' } },
        {
          interval_s: {
            type: 'number',
            // The API reflects changes at once; a second is fresh enough and costs one local request.
            default: 1,
            between: [1, 3600],
            description: 'Seconds between reads of the peer list.',
          },
        },
      ],
    },
  },
];

/** The `nginx:` section as one record, for the README's reference table (build/docs.js). */
export const nginxSectionSchema: FieldEntry[] = [
  {
    nginx: {
      type: 'record',
      required: true,
      description: 'NGINX only, in the balancer file: how the generated nginx configuration listens, loads the module and exposes the status page.',
      fields: nginxOptionsSchema,
    },
  },
];
