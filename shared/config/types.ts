// The shape of a VALIDATED balancer configuration, with every default filled in.
// The declaration of each field (type, default, range, description) lives in schema.ts;
// this file only gives TypeScript the shape that `validate()` returns.

export type StrategyName =
  | 'round-robin'
  | 'weighted-round-robin'
  | 'least-connections'
  | 'least-tokens'
  | 'prefix-affinity'
  | 'llm'
  | 'response-time'
  | 'consistent-hash'
  | 'hybrid';

/** Strategies that need no hash key: allowed as the fallback of the key-based ones. */
export type KeylessStrategyName = 'round-robin' | 'weighted-round-robin' | 'least-connections' | 'least-tokens' | 'response-time';

export type HashKeySource = 'header' | 'consumer' | 'cookie' | 'query' | 'client-ip' | 'body';

export type FailureKind = 'connect-error' | 'timeout' | '5xx' | '429';

export interface ReplicaConfig {
  /** host:port (IPv6 as [addr]:port). */
  address: string;
  /** Relative capacity; 0 keeps the replica configured but never picked. */
  weight: number;
  /** Stable name used in state keys, logs and the status page; defaults to the address. */
  id: string;
}

export interface ModelsConfig {
  declared: Array<{ replica: string; models: string[] }>;
  discovery: boolean;
  path: string;
  refresh_s: number;
  timeout_s: number;
  default: string | null;
  aliases: Array<{ name: string; model: string }>;
  dynamic_lora: boolean;
  adapter_balance_factor: number;
  adapter_filter: boolean;
}

export interface HashKeyConfig {
  source: HashKeySource;
  /** Header, cookie or query-argument name, or a dotted path into the JSON body. Unused for consumer/client-ip. */
  name: string | null;
}

export interface PassiveHealthConfig {
  enabled: boolean;
  consecutive_failures: number;
  failure_kinds: FailureKind[];
  base_ejection_s: number;
  max_ejection_s: number;
  max_ejected_percent: number;
  consecutive_connect_errors: number;
  failure_rate_threshold: number;
  failure_rate_relative: number;
  failure_rate_min_requests: number;
  failure_rate_window_s: number;
  stuck_after_s: number;
}

export interface TimeoutsConfig {
  connect_s: number;
  response_s: number;
  stream_idle_s: number;
}

export interface ActiveHealthConfig {
  enabled: boolean;
  path: string;
  interval_s: number;
  timeout_s: number;
  healthy_threshold: number;
  unhealthy_threshold: number;
}

export interface BalancerConfig {
  strategy: StrategyName;
  retries: number;
  /** Replica statuses retried on the next alternate (NGINX). */
  retry_on: number[];
  on_no_healthy: 'fail' | 'panic';
  replicas: ReplicaConfig[];
  hash_key: HashKeyConfig | null;
  least_connections: { choices: number };
  least_tokens: { default_output_tokens: number; max_output_tokens: number; default_request_tokens: number; discount_cached_prefix: boolean; prefill_weight: number };
  prefix_affinity: {
    block_tokens: number;
    max_blocks: number;
    table_slots: number;
    min_match: number;
    balance_abs: number;
    balance_rel: number;
    balance_factor: number;
    placement: 'rendezvous' | 'least-load';
  };
  response_time: { half_life_s: number; peak_sensitive: boolean; latency_metric: 'e2e' | 'ttft' | 'tpot' };
  consistent_hash: { balance_factor: number; fallback: KeylessStrategyName };
  hybrid: { sticky: boolean; max_concurrent: number };
  timeouts: TimeoutsConfig;
  passive_health: PassiveHealthConfig;
  active_health: ActiveHealthConfig;
  slow_start: { window_s: number; aggression: number; min_weight_percent: number };
  models: ModelsConfig;
  replica_metrics: { path: string; interval_s: number; timeout_s: number; stale_after_s: number };
  llm: {
    queue_weight: number;
    kv_weight: number;
    prefix_weight: number;
    tokens_weight: number;
    adapter_weight: number;
    kv_saturation: number;
    queue_saturation: number;
  };
  admission: AdmissionConfig;
}

/** Gateway-side queueing while the pool is saturated (shared/saturation.ts, shared/admission-queue.ts). */
export interface AdmissionConfig {
  enabled: boolean;
  saturation: 'metrics' | 'concurrency' | 'both';
  queue_threshold: number;
  kv_threshold: number;
  max_concurrency: number;
  max_wait_s: number;
  max_queue: number;
  reject_status: number;
  priority: number;
  route_priorities: Array<{ route: string; priority: number }>;
  consumer_priorities: Array<{ consumer: string; priority: number }>;
  fairness: 'consumer' | 'none';
}
