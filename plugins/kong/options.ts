// The Kong adapter's own options: the `kong` record of the plugin's config. Declared in the shared
// schema format and validated by the same walker (shared/config/validate.ts validateFields), so
// errors read like the rest (`kong.refresh_interval_s: must be a number between 0.1 and 3600, got 0`).
// The plugin's Schema export is the shared options plus this record. NGINX never sees these.

import type { FieldEntry } from '../../shared/config/schema';

export interface KongOptions {
  upstream: string | null;
  admin_url: string;
  admin_token: string | null;
  refresh_interval_s: number;
  admin_timeout_s: number;
  max_body_bytes: number;
  same_target_retries: number;
  status_path: string | null;
  stream_timeouts: boolean;
  redis: RedisOptions | null;
}

/** kong.redis: where several Kong nodes share their balancer state (plugins/kong/redis-state.ts). */
export interface RedisOptions {
  url: string | null;
  host: string | null;
  port: number;
  password: string | null;
  db: number;
  tls: boolean;
  key_prefix: string;
  timeout_ms: number;
  lease_s: number;
}

export const redisOptionsFields: FieldEntry[] = [
  {
    url: {
      type: 'string',
      required: false,
      len_min: 1,
      len_max: 1024,
      description: 'redis:// or rediss:// URL (user, password, db in it are used); set either url or host.',
    },
  },
  {
    host: {
      type: 'string',
      required: false,
      len_min: 1,
      len_max: 256,
      description: 'Redis host name or IP; set either url or host.',
    },
  },
  {
    port: {
      type: 'integer',
      default: 6379,
      between: [1, 65535],
      description: "Redis port (with host).",
    },
  },
  {
    password: {
      type: 'string',
      required: false,
      len_min: 1,
      len_max: 4096,
      description: 'Redis AUTH password (with host); unset: no AUTH.',
    },
  },
  {
    db: {
      type: 'integer',
      default: 0,
      between: [0, 15],
      description: 'Redis logical database (with host).',
    },
  },
  {
    tls: {
      type: 'boolean',
      default: false,
      description: 'Connect with TLS (with host; a rediss:// url implies it).',
    },
  },
  {
    key_prefix: {
      type: 'string',
      // Several plugin configurations, or other applications, may share one Redis: every key of
      // ours starts with this, then the plugin id.
      default: 'llmb:',
      len_min: 1,
      len_max: 64,
      format: 'printable',
      description: 'Prefix of every Redis key (followed by the plugin id), so one Redis can serve several plugins and applications.',
    },
  },
  {
    timeout_ms: {
      type: 'integer',
      // A pick waits for at most one read of the shared counts: a same-datacentre Redis answers in
      // well under 1 ms, and 50 ms bounds what a slow or unreachable one adds to a request before
      // the node picks on its own counts.
      default: 50,
      between: [1, 5000],
      description: 'Longest a request waits for Redis; slower or unreachable: the node picks on its local state and logs once.',
    },
  },
  {
    lease_s: {
      type: 'number',
      // A node refreshes its lease every lease_s / 3: a node that dies or loses Redis leaves its
      // in-flight counts behind for at most lease_s; 10 s is short next to an LLM request and long
      // next to a Redis failover or a GC pause.
      default: 10,
      between: [1, 300],
      description: "Seconds after which a node that stopped refreshing its lease (dead, or cut off from Redis) no longer counts in other nodes' in-flight and token counts.",
    },
  },
];

export const kongOptionsFields: FieldEntry[] = [
  {
    upstream: {
      type: 'string',
      required: false,
      len_min: 1,
      len_max: 256,
      description:
        "Kong upstream (name or id) whose targets, weights and health are the replicas, read from the Admin API; unset: the static replicas list.",
    },
  },
  {
    admin_url: {
      type: 'string',
      // Kong's default admin_listen is 127.0.0.1:8001: the Admin API of the same node.
      default: 'http://127.0.0.1:8001',
      len_min: 1,
      len_max: 1024,
      description: "Base URL of Kong's Admin API, as seen from the plugin server (same node: http://127.0.0.1:8001).",
    },
  },
  {
    admin_token: {
      type: 'string',
      required: false,
      len_min: 1,
      len_max: 4096,
      description: 'Sent as the Kong-Admin-Token header on Admin API reads (Kong Enterprise RBAC); unset: no header.',
    },
  },
  {
    refresh_interval_s: {
      type: 'number',
      // Kong's own active health checks commonly run every 5 s: reading more often sees nothing new.
      default: 5,
      between: [0.1, 3600],
      description: 'Seconds between background reads of the upstream targets and health; requests never wait for one, except those before the first successful read when no static replicas are given.',
    },
  },
  {
    admin_timeout_s: {
      type: 'number',
      default: 2,
      between: [0.1, 60],
      description: 'An Admin API read without an answer after this many seconds fails; the last known replicas stay in use.',
    },
  },
  {
    max_body_bytes: {
      type: 'integer',
      // Reading a body through the plugin server costs ~26 ms per MiB (measured): bounded, and only
      // when the hash key comes from the body. 1 MiB matches the NGINX module's client_max_body_size.
      default: 1048576,
      between: [1024, 67108864],
      description: 'Largest request body read for a body hash key; a larger body gets no key (the fallback strategy picks).',
    },
  },
  {
    same_target_retries: {
      type: 'integer',
      // set_target pins Kong's own retries to the replica that just failed: 0 answers the error at
      // once and passive health moves the next requests elsewhere.
      default: 0,
      between: [0, 10],
      description: "Kong's retries (set_retries) after a connect error or timeout; they go to the SAME replica, so 0 by default.",
    },
  },
  {
    stream_timeouts: {
      type: 'boolean',
      // On, as NGINX reads every body: without it a streaming request on a hung replica waits
      // timeouts.response_s (300 s) instead of stream_idle_s (60 s) — worse than Kong's own 60 s
      // default read timeout. It costs one more plugin-server round trip plus the body's transfer
      // per request (`npm run bench:kong`: 8 instead of 5 round trips, ~+100-170 µs of plugin-server
      // CPU with a small chat body); strategies that read the body anyway pay nothing more. Turn it
      // off for very large prompts with a strategy that does not read them.
      default: true,
      description:
        'Read every request body (up to max_body_bytes) to give streaming requests the timeouts.stream_idle_s read timeout; off: only strategies that read the body anyway do, other requests wait up to timeouts.response_s.',
    },
  },
  {
    status_path: {
      type: 'string',
      required: false,
      format: 'url-path',
      len_min: 1,
      len_max: 256,
      // A JS plugin cannot add an Admin API endpoint: the plugin answers this path on its own
      // route, behind whatever auth plugins the route has. Checking the path costs one PDK round
      // trip per request, so it is off unless set.
      description:
        'Requests to this path on the plugin\'s routes get the per-replica status as JSON (?format=prometheus: Prometheus text) instead of being proxied; unset: off.',
    },
  },
  {
    redis: {
      type: 'record',
      required: false,
      description:
        "Share in-flight and token counts, the prefix table, passive-health ejections and half-open trials between Kong nodes through this Redis (ioredis); unset: each node balances on its own traffic only.",
      fields: redisOptionsFields,
    },
  },
];

/** The `kong` record as it appears in the plugin config (always present: built from defaults). */
export const kongOptionsSchema: FieldEntry[] = [
  {
    kong: {
      type: 'record',
      required: true,
      description: 'Kong only: where the replicas come from (Admin API) and how requests are handed to them.',
      fields: kongOptionsFields,
    },
  },
];
