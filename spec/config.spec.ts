import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  validate,
  formatErrors,
  defaults,
  kongSchema,
  configTable,
  configSection,
  schema,
  fieldPaths,
  entryName,
  rules,
} from '../shared/config/index';
import type { BalancerConfig, ConfigError, FieldEntry, FieldSpec, KongField, KongFieldSpec } from '../shared/config/index';

function errorsOf(input: unknown): ConfigError[] {
  const result = validate(input);
  return result.ok ? [] : result.errors;
}

function configOf(input: unknown): BalancerConfig {
  const result = validate(input);
  if (!result.ok) throw new Error(formatErrors(result.errors));
  return result.config;
}

const DEFAULTS: BalancerConfig = {
  strategy: 'least-connections',
  retries: 1,
  retry_on: [429, 500, 502, 503, 504],
  on_no_healthy: 'fail',
  replicas: [],
  hash_key: null,
  least_connections: { choices: 0 },
  least_tokens: { default_output_tokens: 256, max_output_tokens: 1024, default_request_tokens: 512, discount_cached_prefix: true, prefill_weight: 1 },
  prefix_affinity: { block_tokens: 64, max_blocks: 128, table_slots: 8192, min_match: 0.3, balance_abs: 16, balance_rel: 1.5, balance_factor: 1.25, placement: 'rendezvous' },
  response_time: { half_life_s: 10, peak_sensitive: true, latency_metric: 'e2e' },
  consistent_hash: { balance_factor: 1.25, fallback: 'least-connections' },
  hybrid: { sticky: true, max_concurrent: 64 },
  passive_health: {
    enabled: true,
    consecutive_failures: 5,
    failure_kinds: ['connect-error', 'timeout', '5xx'],
    base_ejection_s: 30,
    max_ejection_s: 300,
    max_ejected_percent: 10,
    consecutive_connect_errors: 2,
    failure_rate_threshold: 0.2,
    failure_rate_relative: 2,
    failure_rate_min_requests: 10,
    failure_rate_window_s: 10,
    stuck_after_s: 30,
  },
  timeouts: { connect_s: 3, response_s: 300, stream_idle_s: 60 },
  slow_start: { window_s: 0, aggression: 1, min_weight_percent: 10 },
  models: { declared: [], discovery: true, path: '/v1/models', refresh_s: 10, timeout_s: 2, default: null, aliases: [], dynamic_lora: false, adapter_balance_factor: 3, adapter_filter: false },
  replica_metrics: { path: '/metrics', interval_s: 1, timeout_s: 1, stale_after_s: 5 },
  llm: { queue_weight: 2, kv_weight: 2, prefix_weight: 3, tokens_weight: 1, adapter_weight: 8, kv_saturation: 0.95, queue_saturation: 32 },
  admission: { enabled: false, saturation: 'metrics', queue_threshold: 5, kv_threshold: 0.8, max_concurrency: 0, max_wait_s: 10, max_queue: 256, reject_status: 429, priority: 0, route_priorities: [], consumer_priorities: [], fairness: 'consumer' },
  active_health: {
    enabled: false,
    path: '/health',
    interval_s: 5,
    timeout_s: 2,
    healthy_threshold: 2,
    unhealthy_threshold: 3,
  },
};

const STRATEGY_LIST = 'round-robin, weighted-round-robin, least-connections, least-tokens, prefix-affinity, llm, response-time, consistent-hash, hybrid';
const R = (fields: Record<string, unknown>) => ({ replicas: [{ address: 'a:1', ...fields }] });

describe('validate: each invalid field yields exactly its own error', () => {
  it.each<[string, unknown, string, string]>([
    ['strategy misspelt', { strategy: 'least-conn' }, 'strategy', `must be one of ${STRATEGY_LIST}, got "least-conn"`],
    ['strategy not a string', { strategy: 5 }, 'strategy', 'must be a string, got number 5'],
    ['retries too many', { retries: 11 }, 'retries', 'must be an integer between 0 and 10, got 11'],
    ['retries negative', { retries: -1 }, 'retries', 'must be an integer between 0 and 10, got -1'],
    ['retries fractional', { retries: 1.5 }, 'retries', 'must be an integer, got 1.5'],
    ['retries a string', { retries: '1' }, 'retries', 'must be an integer, got string "1"'],
    ['retries NaN', { retries: NaN }, 'retries', 'must be an integer, got number NaN'],
    ['retries Infinity', { retries: Infinity }, 'retries', 'must be an integer, got number Infinity'],
    ['on_no_healthy', { on_no_healthy: 'open' }, 'on_no_healthy', 'must be one of fail, panic, got "open"'],
    ['replicas not an array', { replicas: 'a:1' }, 'replicas', 'must be an array, got string "a:1"'],
    [
      'too many replicas',
      { replicas: Array.from({ length: 257 }, (_, i) => ({ address: `h${i}:80` })) },
      'replicas',
      'must have at most 256 items, got 257',
    ],
    ['replica null', { replicas: [null] }, 'replicas[0]', 'must be a record (an object of named fields), got null'],
    ['replica a string', { replicas: ['a:1'] }, 'replicas[0]', 'must be a record (an object of named fields), got string "a:1"'],
    ['replica without address', { replicas: [{}] }, 'replicas[0].address', 'is required, got nothing'],
    ['replica address null', { replicas: [{ address: null }] }, 'replicas[0].address', 'is required, got null'],
    ['replica address a number', R({ address: 8000 }), 'replicas[0].address', 'must be a string, got number 8000'],
    ['weight negative', R({ weight: -1 }), 'replicas[0].weight', 'must be a number between 0 and 65535, got -1'],
    ['weight too large', R({ weight: 65536 }), 'replicas[0].weight', 'must be a number between 0 and 65535, got 65536'],
    ['weight a string', R({ weight: '2' }), 'replicas[0].weight', 'must be a number, got string "2"'],
    ['id empty', R({ id: '' }), 'replicas[0].id', 'must be a non-empty string, got ""'],
    ['id a number', R({ id: 7 }), 'replicas[0].id', 'must be a string, got number 7'],
    ['id too long', R({ id: 'x'.repeat(257) }), 'replicas[0].id', 'must be at most 256 characters long, got 257'],
    ['replica unknown key', R({ wieght: 2 }), 'replicas[0].wieght', 'unknown field (did you mean "weight"?)'],
    ['hash_key not a record', { hash_key: 'header' }, 'hash_key', 'must be a record (an object of named fields), got string "header"'],
    ['hash_key an array', { hash_key: [] }, 'hash_key', 'must be a record (an object of named fields), got array'],
    ['hash_key without source', { hash_key: {} }, 'hash_key.source', 'is required, got nothing'],
    [
      'hash_key source unknown',
      { hash_key: { source: 'ip' } },
      'hash_key.source',
      'must be one of header, consumer, cookie, query, client-ip, body, got "ip"',
    ],
    ['hash_key name empty', { hash_key: { source: 'query', name: '' } }, 'hash_key.name', 'must be a non-empty string, got ""'],
    ['least_connections not a record', { least_connections: 2 }, 'least_connections', 'must be a record (an object of named fields), got number 2'],
    ...[1, 17, -1].map((choices): [string, unknown, string, string] => [
      `choices ${choices}`,
      { least_connections: { choices } },
      'least_connections.choices',
      `must be 0 or an integer between 2 and 16, got ${choices} ` +
        '(0 compares all replicas, 2 is power of two choices; 1 would be a plain random pick)',
    ]),
    ['choices fractional', { least_connections: { choices: 2.5 } }, 'least_connections.choices', 'must be an integer, got 2.5'],
    ['default_output_tokens 0', { least_tokens: { default_output_tokens: 0 } }, 'least_tokens.default_output_tokens', 'must be an integer between 1 and 1000000, got 0'],
    ['max_output_tokens fractional', { least_tokens: { max_output_tokens: 10.5 } }, 'least_tokens.max_output_tokens', 'must be an integer, got 10.5'],
    ['default_request_tokens a string', { least_tokens: { default_request_tokens: '512' } }, 'least_tokens.default_request_tokens', 'must be an integer, got string "512"'],
    ['discount_cached_prefix a string', { least_tokens: { discount_cached_prefix: 'yes' } }, 'least_tokens.discount_cached_prefix', 'must be a boolean, got string "yes"'],
    ['prefill_weight below 1', { least_tokens: { prefill_weight: 0.5 } }, 'least_tokens.prefill_weight', 'must be a number between 1 and 100, got 0.5'],
    ['least_tokens not a record', { least_tokens: [] }, 'least_tokens', 'must be a record (an object of named fields), got array'],
    ['block_tokens too small', { prefix_affinity: { block_tokens: 2 } }, 'prefix_affinity.block_tokens', 'must be an integer between 4 and 4096, got 2'],
    ['max_blocks 0', { prefix_affinity: { max_blocks: 0 } }, 'prefix_affinity.max_blocks', 'must be an integer between 1 and 4096, got 0'],
    ['table_slots huge', { prefix_affinity: { table_slots: 2 ** 25 } }, 'prefix_affinity.table_slots', 'must be an integer between 16 and 16777216, got 33554432'],
    ['min_match above 1', { prefix_affinity: { min_match: 1.5 } }, 'prefix_affinity.min_match', 'must be a number between 0 and 1, got 1.5'],
    ['balance_abs negative', { prefix_affinity: { balance_abs: -1 } }, 'prefix_affinity.balance_abs', 'must be a number between 0 and 100000, got -1'],
    ['balance_rel below 1', { prefix_affinity: { balance_rel: 0.5 } }, 'prefix_affinity.balance_rel', 'must be a number between 1 and 1000, got 0.5'],
    ['placement unknown', { prefix_affinity: { placement: 'hash' } }, 'prefix_affinity.placement', 'must be one of rendezvous, least-load, got "hash"'],
    ['latency_metric unknown', { response_time: { latency_metric: 'itl' } }, 'response_time.latency_metric', 'must be one of e2e, ttft, tpot, got "itl"'],
    ['slow_start window negative', { slow_start: { window_s: -1 } }, 'slow_start.window_s', 'must be a number between 0 and 3600, got -1'],
    ['slow_start aggression 0', { slow_start: { aggression: 0 } }, 'slow_start.aggression', 'must be a number between 0.1 and 10, got 0'],
    ['slow_start min_weight_percent 0', { slow_start: { min_weight_percent: 0 } }, 'slow_start.min_weight_percent', 'must be a number between 1 and 100, got 0'],
    ['replica_metrics path empty', { replica_metrics: { path: '' } }, 'replica_metrics.path', 'must be a non-empty string, got ""'],
    ['replica_metrics interval 0', { replica_metrics: { interval_s: 0 } }, 'replica_metrics.interval_s', 'must be a number between 0.05 and 60, got 0'],
    ['replica_metrics timeout 100', { replica_metrics: { timeout_s: 100 } }, 'replica_metrics.timeout_s', 'must be a number between 0.05 and 30, got 100'],
    ['replica_metrics stale 0', { replica_metrics: { stale_after_s: 0 } }, 'replica_metrics.stale_after_s', 'must be a number between 0.1 and 600, got 0'],
    ['llm queue_weight negative', { llm: { queue_weight: -1 } }, 'llm.queue_weight', 'must be a number between 0 and 100, got -1'],
    ['llm kv_weight huge', { llm: { kv_weight: 101 } }, 'llm.kv_weight', 'must be a number between 0 and 100, got 101'],
    ['llm prefix_weight string', { llm: { prefix_weight: '3' } }, 'llm.prefix_weight', 'must be a number, got string "3"'],
    ['llm tokens_weight negative', { llm: { tokens_weight: -2 } }, 'llm.tokens_weight', 'must be a number between 0 and 100, got -2'],
    ['llm kv_saturation 2', { llm: { kv_saturation: 2 } }, 'llm.kv_saturation', 'must be a number between 0.1 and 1, got 2'],
    ['llm queue_saturation 0', { llm: { queue_saturation: 0 } }, 'llm.queue_saturation', 'must be an integer between 1 and 100000, got 0'],
    ['admission enabled "yes"', { admission: { enabled: 'yes' } }, 'admission.enabled', 'must be a boolean, got string "yes"'],
    ['admission saturation misspelt', { admission: { saturation: 'kv' } }, 'admission.saturation', 'must be one of metrics, concurrency, both, got "kv"'],
    ['admission queue_threshold 0', { admission: { queue_threshold: 0 } }, 'admission.queue_threshold', 'must be an integer between 1 and 100000, got 0'],
    ['admission kv_threshold 1.5', { admission: { kv_threshold: 1.5 } }, 'admission.kv_threshold', 'must be a number between 0.05 and 1, got 1.5'],
    ['admission max_concurrency -1', { admission: { max_concurrency: -1 } }, 'admission.max_concurrency', 'must be an integer between 0 and 100000, got -1'],
    ['admission max_wait_s 0', { admission: { max_wait_s: 0 } }, 'admission.max_wait_s', 'must be a number between 0.01 and 3600, got 0'],
    ['admission max_queue 0', { admission: { max_queue: 0 } }, 'admission.max_queue', 'must be an integer between 1 and 1000000, got 0'],
    ['admission reject_status 500', { admission: { reject_status: 500 } }, 'admission.reject_status', 'must be one of 429, 503, got 500'],
    ['admission priority 101', { admission: { priority: 101 } }, 'admission.priority', 'must be an integer between -100 and 100, got 101'],
    ['admission route_priorities without a band', { admission: { route_priorities: [{ route: 'premium' }] } }, 'admission.route_priorities[0].priority', 'is required, got nothing'],
    ['admission route_priorities with an empty route', { admission: { route_priorities: [{ route: '', priority: 1 }] } }, 'admission.route_priorities[0].route', 'must be a non-empty string, got ""'],
    ['admission consumer_priorities with a band out of range', { admission: { consumer_priorities: [{ consumer: 'alice', priority: 101 }] } }, 'admission.consumer_priorities[0].priority', 'must be an integer between -100 and 100, got 101'],
    ['admission consumer_priorities with an empty consumer', { admission: { consumer_priorities: [{ consumer: '', priority: 1 }] } }, 'admission.consumer_priorities[0].consumer', 'must be a non-empty string, got ""'],
    ['admission fairness misspelt', { admission: { fairness: 'tenant' } }, 'admission.fairness', 'must be one of consumer, none, got "tenant"'],
    ['prefix balance_factor 0.5', { prefix_affinity: { balance_factor: 0.5 } }, 'prefix_affinity.balance_factor', 'must be 0 or a number between 1 and 10, got 0.5 (0 disables the bound)'],
    ...[0, 0.05, 601].map((half): [string, unknown, string, string] => [
      `half_life_s ${half}`,
      { response_time: { half_life_s: half } },
      'response_time.half_life_s',
      `must be a number between 0.1 and 600, got ${half}`,
    ]),
    ['peak_sensitive', { response_time: { peak_sensitive: 'yes' } }, 'response_time.peak_sensitive', 'must be a boolean, got string "yes"'],
    ...[0.5, 10.5, -1].map((c): [string, unknown, string, string] => [
      `balance_factor ${c}`,
      { consistent_hash: { balance_factor: c } },
      'consistent_hash.balance_factor',
      `must be 0 or a number between 1 and 10, got ${c} (0 disables the bound)`,
    ]),
    ...['consistent-hash', 'hybrid'].map((fallback): [string, unknown, string, string] => [
      `fallback ${fallback}`,
      { consistent_hash: { fallback } },
      'consistent_hash.fallback',
      `must be one of round-robin, weighted-round-robin, least-connections, least-tokens, response-time, got "${fallback}"`,
    ]),
    ['sticky', { hybrid: { sticky: 1 } }, 'hybrid.sticky', 'must be a boolean, got number 1'],
    ['max_concurrent 0', { hybrid: { max_concurrent: 0 } }, 'hybrid.max_concurrent', 'must be an integer between 1 and 100000, got 0'],
    ['max_concurrent big', { hybrid: { max_concurrent: 100001 } }, 'hybrid.max_concurrent', 'must be an integer between 1 and 100000, got 100001'],
    ['enabled', { passive_health: { enabled: 'true' } }, 'passive_health.enabled', 'must be a boolean, got string "true"'],
    ...[0, 1001].map((n): [string, unknown, string, string] => [
      `consecutive_failures ${n}`,
      { passive_health: { consecutive_failures: n } },
      'passive_health.consecutive_failures',
      `must be an integer between 1 and 1000, got ${n}`,
    ]),
    ['failure_kinds a string', { passive_health: { failure_kinds: 'timeout' } }, 'passive_health.failure_kinds', 'must be an array, got string "timeout"'],
    [
      'failure_kinds member',
      { passive_health: { failure_kinds: ['5xx', 'oops'] } },
      'passive_health.failure_kinds[1]',
      'must be one of connect-error, timeout, 5xx, 429, got "oops"',
    ],
    [
      'failure_kinds null member',
      { passive_health: { failure_kinds: [null] } },
      'passive_health.failure_kinds[0]',
      'must be a string, got null',
    ],
    ...[0.5, 3601].map((n): [string, unknown, string, string] => [
      `base_ejection_s ${n}`,
      { passive_health: { base_ejection_s: n, max_ejection_s: 86400 } },
      'passive_health.base_ejection_s',
      `must be a number between 1 and 3600, got ${n}`,
    ]),
    ['max_ejection_s big', { passive_health: { max_ejection_s: 86401 } }, 'passive_health.max_ejection_s', 'must be a number between 1 and 86400, got 86401'],
    ['max_ejected_percent big', { passive_health: { max_ejected_percent: 101 } }, 'passive_health.max_ejected_percent', 'must be an integer between 0 and 100, got 101'],
    ['max_ejected_percent fraction', { passive_health: { max_ejected_percent: 5.5 } }, 'passive_health.max_ejected_percent', 'must be an integer, got 5.5'],
    ['retry_on not an array', { retry_on: 500 }, 'retry_on', 'must be an array, got number 500'],
    ['retry_on a 4xx that would fail anywhere', { retry_on: [500, 404] }, 'retry_on[1]', 'must be one of 408, 425, 429, 500, 502, 503, 504, 507, got 404'],
    ['connect timeout zero', { timeouts: { connect_s: 0 } }, 'timeouts.connect_s', 'must be a number between 0.1 and 60, got 0'],
    ['response timeout zero', { timeouts: { response_s: 0 } }, 'timeouts.response_s', 'must be a number between 1 and 86400, got 0'],
    ['stream idle timeout a string', { timeouts: { stream_idle_s: '60s' } }, 'timeouts.stream_idle_s', 'must be a number, got string "60s"'],
    ['connect errors zero', { passive_health: { consecutive_connect_errors: 0 } }, 'passive_health.consecutive_connect_errors', 'must be an integer between 1 and 1000, got 0'],
    [
      'failure rate threshold below its range',
      { passive_health: { failure_rate_threshold: 0.001 } },
      'passive_health.failure_rate_threshold',
      'must be 0 or a number between 0.01 and 1, got 0.001 (0 disables failure-rate ejection)',
    ],
    ['failure rate relative below 1', { passive_health: { failure_rate_relative: 0.5 } }, 'passive_health.failure_rate_relative', 'must be a number between 1 and 100, got 0.5'],
    ['failure rate volume zero', { passive_health: { failure_rate_min_requests: 0 } }, 'passive_health.failure_rate_min_requests', 'must be an integer between 1 and 100000, got 0'],
    ['failure rate window zero', { passive_health: { failure_rate_window_s: 0 } }, 'passive_health.failure_rate_window_s', 'must be a number between 1 and 3600, got 0'],
    ['stuck after a fraction of a second', { passive_health: { stuck_after_s: 0.5 } }, 'passive_health.stuck_after_s', 'must be 0 or a number between 1 and 86400, got 0.5 (0 disables stuck-replica detection)'],
    ['active_health not a record', { active_health: true }, 'active_health', 'must be a record (an object of named fields), got boolean true'],
    ['active enabled not boolean', { active_health: { enabled: 'yes' } }, 'active_health.enabled', 'must be a boolean, got string "yes"'],
    ['active path empty', { active_health: { path: '' } }, 'active_health.path', 'must be a non-empty string, got ""'],
    ['active path without its slash', { active_health: { path: 'health' } }, 'active_health.path', 'must be a URL path starting with / and without spaces or control characters, such as /metrics, got "health"'],
    ['metrics path with a space', { replica_metrics: { path: '/my metrics' } }, 'replica_metrics.path', 'must be a URL path starting with / and without spaces or control characters, such as /metrics, got "/my metrics"'],
    ['metrics path as a full URL', { replica_metrics: { path: 'http://x/metrics' } }, 'replica_metrics.path', 'must be a URL path starting with / and without spaces or control characters, such as /metrics, got "http://x/metrics"'],
    ['llm adapter weight negative', { llm: { adapter_weight: -1 } }, 'llm.adapter_weight', 'must be a number between 0 and 100, got -1'],
    ['models path without its slash', { models: { path: 'v1/models' } }, 'models.path', 'must be a URL path starting with / and without spaces or control characters, such as /metrics, got "v1/models"'],
    ['models discovery not boolean', { models: { discovery: 'on' } }, 'models.discovery', 'must be a boolean, got string "on"'],
    ['models refresh below a second', { models: { refresh_s: 0.5 } }, 'models.refresh_s', 'must be a number between 1 and 3600, got 0.5'],
    ['models timeout zero', { models: { timeout_s: 0 } }, 'models.timeout_s', 'must be a number between 0.1 and 60, got 0'],
    ['models dynamic_lora not boolean', { models: { dynamic_lora: 1 } }, 'models.dynamic_lora', 'must be a boolean, got number 1'],
    ['models adapter_filter not boolean', { models: { adapter_filter: 'yes' } }, 'models.adapter_filter', 'must be a boolean, got string "yes"'],
    ['models adapter_balance_factor out of range', { models: { adapter_balance_factor: -1 } }, 'models.adapter_balance_factor', 'must be a number between 0 and 100, got -1'],
    ['models default empty', { models: { default: '' } }, 'models.default', 'must be a non-empty string, got ""'],
    ['models alias without its model', { models: { aliases: [{ name: 'gpt-4o' }] } }, 'models.aliases[0].model', 'is required, got nothing'],
    ['models alias name with a newline', { models: { aliases: [{ name: 'a\nb', model: 'm' }] } }, 'models.aliases[0].name', 'must not contain control characters such as newlines or tabs, got "a\\nb"'],
    ['models declared without models', { models: { declared: [{ replica: 'a:1', models: [] }] } }, 'models.declared[0].models', 'must have at least 1 items, got 0'],
    ['models declared replica empty', { models: { declared: [{ replica: '', models: ['m'] }] } }, 'models.declared[0].replica', 'must be a non-empty string, got ""'],
    ['models declared name empty', { models: { declared: [{ replica: 'a:1', models: [''] }] } }, 'models.declared[0].models[0]', 'must be a non-empty string, got ""'],
    ['active interval zero', { active_health: { interval_s: 0 } }, 'active_health.interval_s', 'must be a number between 1 and 3600, got 0'],
    ['active timeout tiny', { active_health: { timeout_s: 0.01 } }, 'active_health.timeout_s', 'must be a number between 0.1 and 60, got 0.01'],
    ['active healthy threshold 0', { active_health: { healthy_threshold: 0 } }, 'active_health.healthy_threshold', 'must be an integer between 1 and 100, got 0'],
    ['active unhealthy threshold fraction', { active_health: { unhealthy_threshold: 2.5 } }, 'active_health.unhealthy_threshold', 'must be an integer, got 2.5'],
    ['config not a record', 'strategy: hybrid', '', 'must be a record (an object of named fields), got string "strategy: hybrid"'],
    ['config an array', [], '', 'must be a record (an object of named fields), got array'],
  ])('%s', (_name, input, path, message) => {
    expect(errorsOf(input)).toEqual([{ path, message }]);
  });

  it('every declared leaf field has at least one invalid case above', () => {
    // Guards the table: a new option must come with its invalid-value case.
    const source = readFileSync(fileURLToPath(import.meta.url), 'utf8');
    for (const field of fieldPaths()) {
      if (field.spec.type === 'record' || field.path === 'replicas') continue;
      const path = field.path.replace('[]', '[0]');
      expect(source.includes(`'${path}`) || source.includes(`\`${path}`), path).toBe(true);
    }
  });
});

describe('validate: several invalid fields at once', () => {
  it('reports every error, in walk order, unknown keys of a record first', () => {
    const errors = errorsOf({
      strateg: 'x',
      retries: 11,
      replicas: [{ address: '10.0.0.1' }, { address: '[::1]:8000', weight: 0.8 }, { address: 'a:1' }, { address: 'a:1' }],
      least_connections: { choices: 1 },
      hash_key: { source: 'body', name: 'a..b' },
      passive_health: { failure_kinds: ['5xx', 'oops'], base_ejection_s: 60, max_ejection_s: 30 },
      __seq__: 3,
    });
    expect(errors.map((e) => e.path)).toEqual([
      'strateg',
      'retries',
      'replicas[0].address',
      'least_connections.choices',
      'passive_health.failure_kinds[1]',
      'hash_key.name',
      'passive_health.max_ejection_s',
      'replicas[3].address',
    ]);
    expect(formatErrors(errors).split('\n')).toEqual([
      'strateg: unknown field (did you mean "strategy"?)',
      'retries: must be an integer between 0 and 10, got 11',
      'replicas[0].address: must be host:port with a port 1-65535, got "10.0.0.1" (no port)',
      'least_connections.choices: must be 0 or an integer between 2 and 16, got 1 ' +
        '(0 compares all replicas, 2 is power of two choices; 1 would be a plain random pick)',
      'passive_health.failure_kinds[1]: must be one of connect-error, timeout, 5xx, 429, got "oops"',
      'hash_key.name: must be a dotted path such as user or metadata.session_id, got "a..b"',
      'passive_health.max_ejection_s: must be at least base_ejection_s (60), got 30',
      'replicas[3].address: must be unique or the replica needs a distinct id, got "a:1" again (replicas[2] has it)',
    ]);
  });

  it('formats an error on the whole config as "config"', () => {
    expect(formatErrors(errorsOf(42))).toBe('config: must be a record (an object of named fields), got number 42');
  });
});

describe('validate: defaults', () => {
  it.each<[string, unknown]>([
    ['empty object', {}],
    ['null', null],
    ['undefined', undefined],
  ])('%s gives the documented defaults', (_name, input) => {
    expect(configOf(input)).toEqual(DEFAULTS);
  });

  it('defaults() equals validate({}).config and is a fresh object each time', () => {
    const first = defaults();
    expect(first).toEqual(DEFAULTS);
    first.passive_health.failure_kinds.push('429');
    first.replicas.push({ address: 'x:1', weight: 1, id: 'x:1' });
    expect(defaults()).toEqual(DEFAULTS);
  });

  it.each<[string, unknown, Partial<BalancerConfig>]>([
    [
      'a nested record is filled around the given field',
      { response_time: { half_life_s: 5 } },
      { response_time: { half_life_s: 5, peak_sensitive: true, latency_metric: 'e2e' } },
    ],
    [
      'replica weight and id',
      { replicas: [{ address: 'a:1' }, { address: 'b:2', weight: 3, id: 'gpu-b' }] },
      { replicas: [{ address: 'a:1', weight: 1, id: 'a:1' }, { address: 'b:2', weight: 3, id: 'gpu-b' }] },
    ],
    [
      'hash_key name is null for consumer',
      { hash_key: { source: 'consumer' } },
      { hash_key: { source: 'consumer', name: null } },
    ],
    [
      'passive_health keeps the other defaults',
      { passive_health: { enabled: false, failure_kinds: ['429'] } },
      { passive_health: { ...DEFAULTS.passive_health, enabled: false, failure_kinds: ['429'] } },
    ],
    ['an empty failure_kinds list stays empty', { passive_health: { failure_kinds: [] } }, { passive_health: { ...DEFAULTS.passive_health, failure_kinds: [] } }],
  ])('%s', (_name, input, expected) => {
    expect(configOf(input)).toEqual({ ...DEFAULTS, ...expected });
  });

  it('never mutates its input and never aliases it', () => {
    const input = {
      replicas: [{ address: 'a:1' }],
      passive_health: { failure_kinds: ['5xx'] },
      hash_key: { source: 'header', name: 'x-user' },
    };
    const before = JSON.stringify(input);
    const config = configOf(deepFreeze(input));
    expect(JSON.stringify(input)).toBe(before);
    expect(config.replicas[0]).not.toBe(input.replicas[0]);
    expect(config.passive_health.failure_kinds).not.toBe(input.passive_health.failure_kinds);
    expect(config.hash_key).not.toBe(input.hash_key);
  });
});

describe('validate: Kong-style input', () => {
  const kongNulls = {
    __plugin_id: '0e1f7f5e-5a8b-4b53-a6f1-6e0a2d5c6f11',
    __seq__: 7,
    __key__: 'plugins:llm-balancer::::',
    strategy: null,
    retries: null,
    on_no_healthy: null,
    replicas: null,
    hash_key: null,
    least_connections: { choices: null },
    response_time: null,
    consistent_hash: { balance_factor: null, fallback: null },
    hybrid: { sticky: null, max_concurrent: null },
    passive_health: {
      enabled: null,
      consecutive_failures: null,
      failure_kinds: null,
      base_ejection_s: null,
      max_ejection_s: null,
      max_ejected_percent: null,
    },
    active_health: null,
  };

  it('treats null as "use the default" and ignores __ keys', () => {
    expect(configOf(kongNulls)).toEqual(DEFAULTS);
  });

  it('accepts the config Kong stores after filling defaults from kongSchema()', () => {
    const stored = kongFill(kongSchema(), { strategy: 'consistent-hash', hash_key: { source: 'consumer' } });
    expect(stored.hash_key).toEqual({ source: 'consumer', name: null });
    expect(configOf({ __plugin_id: 'x', __seq__: 1, ...stored })).toEqual({
      ...DEFAULTS,
      strategy: 'consistent-hash',
      hash_key: { source: 'consumer', name: null },
    });
  });

  it('Kong filling an empty config gives exactly our defaults', () => {
    expect(configOf(kongFill(kongSchema(), {}))).toEqual(DEFAULTS);
  });

  it('accepts {} for an empty array (Lua cjson encodes an empty table as an object)', () => {
    expect(configOf({ replicas: {}, passive_health: { failure_kinds: {} } })).toEqual({
      ...DEFAULTS,
      passive_health: { ...DEFAULTS.passive_health, failure_kinds: [] },
    });
    expect(errorsOf({ replicas: { a: 1 } })).toEqual([{ path: 'replicas', message: 'must be an array, got object' }]);
  });

  it('ignores __ keys at nested levels too', () => {
    expect(configOf({ hybrid: { __proto_like__: 1 }, replicas: [{ address: 'a:1', __row__: 1 }] }).replicas).toEqual([
      { address: 'a:1', weight: 1, id: 'a:1' },
    ]);
  });
});

describe('validate: unknown fields', () => {
  it.each<[string, unknown, string, string]>([
    ['typo', { strateg: 'hybrid' }, 'strateg', 'unknown field (did you mean "strategy"?)'],
    ['case', { Strategy: 'hybrid' }, 'Strategy', 'unknown field (did you mean "strategy"?)'],
    ['dash for underscore', { 'hash-key': null }, 'hash-key', 'unknown field (did you mean "hash_key"?)'],
    ['two typos', { retires: 1 }, 'retires', 'unknown field (did you mean "retries"?)'],
    ['nested typo', { least_connections: { choice: 2 } }, 'least_connections.choice', 'unknown field (did you mean "choices"?)'],
    ['right name, wrong level', { choices: 2 }, 'choices', 'unknown field (did you mean "least_connections.choices"?)'],
    ['top-level name nested', { hybrid: { strategy: 'x' } }, 'hybrid.strategy', 'unknown field (did you mean "strategy"?)'],
    [
      'nothing close',
      { response_time: { zzz: 1 } },
      'response_time.zzz',
      'unknown field (known fields: half_life_s, peak_sensitive, latency_metric)',
    ],
  ])('%s', (_name, input, path, message) => {
    expect(errorsOf(input)).toEqual([{ path, message }]);
  });
});

describe('validate: replica addresses', () => {
  it.each([
    'localhost:8000',
    'vllm-0.vllm.default.svc.cluster.local:8000',
    'model_a:1',
    '10.0.0.1:8000',
    '255.255.255.255:65535',
    '[::1]:8000',
    '[2001:db8::7]:443',
    '[2001:db8:0:0:0:0:0:7]:443',
    '[::ffff:10.0.0.1]:80',
    'gpu.internal.:8000',
  ])('accepts %s', (address) => {
    expect(configOf({ replicas: [{ address }] }).replicas[0]).toEqual({ address, weight: 1, id: address });
  });

  it.each<[string, string]>([
    ['10.0.0.1', 'no port'],
    ['host', 'no port'],
    ['host:', 'no port'],
    ['host:0', ''],
    ['host:65536', ''],
    ['host:99999', ''],
    ['host:-1', ''],
    ['host:80x', ''],
    [':8000', 'empty host'],
    ['', 'no port'],
    ['::1:8000', 'IPv6 addresses go in brackets, e.g. [::1]:8000'],
    ['[::1]', 'no port'],
    ['[::1]8000', 'no port'],
    ['[::1:8000', ''],
    ['[zz::1]:80', 'not an IPv6 address in the brackets'],
    ['[1:2:3:4:5:6:7:8:9]:80', 'not an IPv6 address in the brackets'],
    ['[1::2::3]:80', 'not an IPv6 address in the brackets'],
    ['http://host:80', 'without a scheme'],
    ['256.0.0.1:80', 'not a hostname or IPv4 address'],
    ['10.0.0:80', 'not a hostname or IPv4 address'],
    ['10.0.0.1.:80', 'not a hostname or IPv4 address'],
    ['a..b:80', 'not a hostname or IPv4 address'],
    ['my host:80', 'not a hostname or IPv4 address'],
    ['-bad.example:80', 'not a hostname or IPv4 address'],
  ])('rejects %j (%s)', (address, hint) => {
    expect(errorsOf({ replicas: [{ address }] })).toEqual([
      {
        path: 'replicas[0].address',
        message: `must be host:port with a port 1-65535, got ${JSON.stringify(address)}` + (hint ? ` (${hint})` : ''),
      },
    ]);
  });

  it.each([0.8, 0.001, 0, 65535, 2.5])('accepts fractional and boundary weight %s', (weight) => {
    // A second replica with weight 1: a list whose every weight is 0 is refused (next describe).
    expect(configOf({ replicas: [{ address: 'a:1', weight }, { address: 'b:1' }] }).replicas[0].weight).toBe(weight);
  });
});

describe('validate: a replica list nobody could be picked from', () => {
  it.each<[string, unknown[]]>([
    ['one replica of weight 0', [{ address: 'a:1', weight: 0 }]],
    ['three replicas of weight 0', [{ address: 'a:1', weight: 0 }, { address: 'b:1', weight: 0 }, { address: 'c:1', weight: 0 }]],
  ])('%s is refused on replicas', (_name, replicas) => {
    const result = validate({ replicas });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toEqual([
      {
        path: 'replicas',
        message: `must have at least one replica with a weight above 0: every weight is 0, so no replica could ever be picked (every request would get 503), got ${replicas.length} replica${replicas.length === 1 ? '' : 's'}`,
      },
    ]);
  });

  it('accepts one weight above 0 among zeros, and an empty list (Kong reads its upstream)', () => {
    expect(validate({ replicas: [{ address: 'a:1', weight: 0 }, { address: 'b:1', weight: 0.001 }] }).ok).toBe(true);
    expect(validate({ replicas: [] }).ok).toBe(true);
  });

  it('says nothing more when a weight is itself invalid', () => {
    const result = validate({ replicas: [{ address: 'a:1', weight: 0 }, { address: 'b:1', weight: -1 }] });
    expect(result.ok ? [] : result.errors.map((e) => e.path)).toEqual(['replicas[1].weight']);
  });
});

describe('validate: replica ids are printable', () => {
  it.each(['gpu\nserver { listen 1; }', 'a\tb', 'a\rb', 'nul\u0000', 'del\u007f', 'c1\u0085', 'ls\u2028'])('refuses %j', (id) => {
    const result = validate({ replicas: [{ address: 'a:1', id }] });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toHaveLength(1);
    expect(result.errors[0].path).toBe('replicas[0].id');
    expect(result.errors[0].message).toMatch(/^must not contain control characters such as newlines or tabs, got "/);
  });

  it.each(['gpu-a', 'H100 #1 (rack 7)', 'naïve-répliques', '{weird;"id"}', 'ok\u00a0nbsp'])('accepts %j', (id) => {
    const parsed = id;
    expect(configOf({ replicas: [{ address: 'a:1', id: parsed }] }).replicas[0].id).toBe(parsed);
  });
});

describe('validate: duplicate replica ids', () => {
  it.each<[string, unknown[], ConfigError[]]>([
    [
      'same address, no ids',
      [{ address: 'a:1' }, { address: 'a:1' }],
      [{ path: 'replicas[1].address', message: 'must be unique or the replica needs a distinct id, got "a:1" again (replicas[0] has it)' }],
    ],
    [
      'same explicit id',
      [{ address: 'a:1', id: 'gpu' }, { address: 'b:1', id: 'gpu' }],
      [{ path: 'replicas[1].id', message: 'must be a unique id, got "gpu" again (replicas[0] has it)' }],
    ],
    [
      'an id equal to another replica\'s address',
      [{ address: 'a:1' }, { address: 'b:1', id: 'a:1' }],
      [{ path: 'replicas[1].id', message: 'must be a unique id, got "a:1" again (replicas[0] has it)' }],
    ],
    [
      'three of a kind point at the first',
      [{ address: 'a:1' }, { address: 'b:1' }, { address: 'a:1' }, { address: 'a:1' }],
      [
        { path: 'replicas[2].address', message: 'must be unique or the replica needs a distinct id, got "a:1" again (replicas[0] has it)' },
        { path: 'replicas[3].address', message: 'must be unique or the replica needs a distinct id, got "a:1" again (replicas[0] has it)' },
      ],
    ],
  ])('%s', (_name, replicas, expected) => {
    expect(errorsOf({ replicas })).toEqual(expected);
  });

  it('same address with distinct ids is fine (two ports of one process behind one address is not, but ids decide)', () => {
    expect(configOf({ replicas: [{ address: 'a:1', id: 'x' }, { address: 'a:1', id: 'y' }] }).replicas.map((r) => r.id)).toEqual([
      'x',
      'y',
    ]);
  });

  it('an invalid id is reported once, not again as a duplicate of the address', () => {
    expect(errorsOf({ replicas: [{ address: 'a:1' }, { address: 'a:1', id: '' }] }).map((e) => e.path)).toEqual([
      'replicas[1].id',
    ]);
  });

  it('a replica with another invalid field still counts for duplicates', () => {
    expect(errorsOf({ replicas: [{ address: 'a:1' }, { address: 'a:1', weight: -1 }] }).map((e) => e.path)).toEqual([
      'replicas[1].weight',
      'replicas[1].address',
    ]);
  });
});

describe('validate: cross-field rules', () => {
  const key = { source: 'header', name: 'x-user' };
  it.each<[string, unknown, ConfigError[]]>([
    ['consistent-hash without hash_key', { strategy: 'consistent-hash' }, [{ path: 'hash_key', message: 'is required when strategy is "consistent-hash", got null' }]],
    ['consistent-hash with hash_key', { strategy: 'consistent-hash', hash_key: key }, []],
    // Without hash_key no request has a key, so hybrid is simply load filter + latency: valid.
    ['hybrid sticky (default) without hash_key', { strategy: 'hybrid' }, []],
    ['probe timeout as long as the interval', { active_health: { interval_s: 2, timeout_s: 2 } }, [{ path: 'active_health.timeout_s', message: 'must be less than interval_s (2): a probe still running at the next one is cut off, got 2' }]],
    ['probe timeout shorter than the interval', { active_health: { interval_s: 1, timeout_s: 0.5 } }, []],
    ['hybrid not sticky without hash_key', { strategy: 'hybrid', hybrid: { sticky: false } }, []],
    ['hybrid sticky with hash_key', { strategy: 'hybrid', hash_key: key }, []],
    ['sticky only matters for hybrid', { strategy: 'round-robin', hybrid: { sticky: true } }, []],
    ['header needs a name', { hash_key: { source: 'header' } }, [{ path: 'hash_key.name', message: 'is required when source is "header", got nothing' }]],
    ['body needs a name', { hash_key: { source: 'body', name: null } }, [{ path: 'hash_key.name', message: 'is required when source is "body", got nothing' }]],
    [
      'consumer takes no name',
      { hash_key: { source: 'consumer', name: 'x-user' } },
      [{ path: 'hash_key.name', message: 'must be unset when source is "consumer" (it names nothing), got "x-user"' }],
    ],
    [
      'client-ip takes no name',
      { hash_key: { source: 'client-ip', name: 'ip' } },
      [{ path: 'hash_key.name', message: 'must be unset when source is "client-ip" (it names nothing), got "ip"' }],
    ],
    [
      'header name must be a token',
      { hash_key: { source: 'header', name: 'x user' } },
      [{ path: 'hash_key.name', message: 'must be a header name (letters, digits and !#$%&\'*+-.^_`|~), got "x user"' }],
    ],
    [
      'cookie name must be a token',
      { hash_key: { source: 'cookie', name: 'a=b' } },
      [{ path: 'hash_key.name', message: 'must be a cookie name (letters, digits and !#$%&\'*+-.^_`|~), got "a=b"' }],
    ],
    ...['.user', 'user.', 'a..b', '.'].map((name): [string, unknown, ConfigError[]] => [
      `body path ${name}`,
      { hash_key: { source: 'body', name } },
      [{ path: 'hash_key.name', message: `must be a dotted path such as user or metadata.session_id, got "${name}"` }],
    ]),
    ['body path nested', { hash_key: { source: 'body', name: 'metadata.session_id' } }, []],
    ['query names are free-form', { hash_key: { source: 'query', name: 'session id' } }, []],
    [
      'max_ejection_s below base',
      { passive_health: { base_ejection_s: 60, max_ejection_s: 59.5 } },
      [{ path: 'passive_health.max_ejection_s', message: 'must be at least base_ejection_s (60), got 59.5' }],
    ],
    [
      'max_ejection_s below the default base',
      { passive_health: { max_ejection_s: 10 } },
      [{ path: 'passive_health.max_ejection_s', message: 'must be at least base_ejection_s (30), got 10' }],
    ],
    ['max_ejection_s equal to base', { passive_health: { base_ejection_s: 60, max_ejection_s: 60 } }, []],
    [
      'admission by concurrency without a limit',
      { admission: { enabled: true, saturation: 'concurrency' } },
      [{ path: 'admission.max_concurrency', message: 'must be above 0 when saturation is "concurrency" (the in-flight requests per weight that saturate a replica), got 0' }],
    ],
    [
      'admission by metrics with a concurrency limit it would ignore',
      { admission: { max_concurrency: 8 } },
      [{ path: 'admission.max_concurrency', message: 'is not used when saturation is "metrics" (set saturation to "concurrency" or "both" to judge by in-flight requests), got 8' }],
    ],
    ['admission by both', { admission: { enabled: true, saturation: 'both', max_concurrency: 8 } }, []],
    // A field that is already wrong does not trigger rules that read it.
    ['invalid strategy, no hash_key', { strategy: 'consistent' }, [{ path: 'strategy', message: `must be one of ${STRATEGY_LIST}, got "consistent"` }]],
    [
      'invalid hash_key with consistent-hash',
      { strategy: 'consistent-hash', hash_key: 'x-user' },
      [{ path: 'hash_key', message: 'must be a record (an object of named fields), got string "x-user"' }],
    ],
    [
      'invalid base_ejection_s',
      { passive_health: { base_ejection_s: 0, max_ejection_s: 1 } },
      [{ path: 'passive_health.base_ejection_s', message: 'must be a number between 1 and 3600, got 0' }],
    ],
    [
      'invalid source',
      { hash_key: { source: 'jwt', name: 'sub' } },
      [{ path: 'hash_key.source', message: 'must be one of header, consumer, cookie, query, client-ip, body, got "jwt"' }],
    ],
  ])('%s', (_name, input, expected) => {
    expect(errorsOf(input)).toEqual(expected);
  });

  it('models: alias names and declared replicas are unique, and declared replicas name a listed replica', () => {
    expect(errorsOf({ models: { aliases: [{ name: 'a', model: 'x' }, { name: 'a', model: 'y' }] } })).toEqual([
      { path: 'models.aliases[1].name', message: 'must be unique, got "a" again (models.aliases[0] has it)' },
    ]);
    const replicas = [{ address: '10.0.0.1:8000', id: 'gpu-a' }, { address: '10.0.0.2:8000' }];
    expect(errorsOf({ replicas, models: { declared: [{ replica: 'gpu-a', models: ['m'] }, { replica: '10.0.0.2:8000', models: ['m'] }, { replica: 'gpu-a', models: ['n'] }, { replica: 'gpu-z', models: ['n'] }] } })).toEqual([
      { path: 'models.declared[2].replica', message: 'must be unique, got "gpu-a" again (models.declared[0] has it)' },
      { path: 'models.declared[3].replica', message: 'must be the id or address of one of the replicas, got "gpu-z"' },
    ]);
    // Kong with an Admin API upstream lists no replicas: targets are named by host:port, checked when read.
    expect(errorsOf({ models: { declared: [{ replica: '10.0.0.9:8000', models: ['m'] }] } })).toEqual([]);
  });

  it('every rule has a sentence for the docs', () => {
    for (const rule of rules) expect(rule.rule.length).toBeGreaterThan(10);
  });
});

// ------------------------------------------------------------------------------------------------
// Properties

/** A generator of valid configs, driven by the schema data (plus the format and rule specifics). */
function validArbitrary(spec: FieldSpec, path: string): fc.Arbitrary<unknown> {
  if (path === 'replicas[].address') {
    return fc.oneof(
      fc.tuple(fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/), fc.integer({ min: 1, max: 65535 })).map(([h, p]) => `${h}:${p}`),
      fc.ipV4().chain((ip) => fc.integer({ min: 1, max: 65535 }).map((p) => `${ip}:${p}`)),
      fc.ipV6().chain((ip) => fc.integer({ min: 1, max: 65535 }).map((p) => `[${ip}]:${p}`)),
    );
  }
  if (path === 'hash_key') {
    return fc.oneof(
      fc.constant(null),
      fc.record({ source: fc.constantFrom('consumer', 'client-ip') }),
      fc.record({ source: fc.constantFrom('header', 'cookie'), name: fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/) }),
      fc.record({ source: fc.constant('query'), name: fc.string({ minLength: 1, maxLength: 20 }) }),
      fc.record({ source: fc.constant('body'), name: fc.stringMatching(/^[a-z_]{1,8}(\.[a-z_]{1,8}){0,3}$/) }),
    );
  }
  switch (spec.type) {
    case 'string':
      if (spec.one_of) return fc.constantFrom(...spec.one_of);
      if (spec.format === 'url-path') return fc.stringMatching(/^\/[a-z0-9/_.-]{0,20}$/);
      if (spec.format === 'printable') return fc.stringMatching(/^[A-Za-z0-9./:_ -]{1,30}$/);
      return fc.string({ minLength: spec.len_min ?? 0, maxLength: Math.min(spec.len_max ?? 40, 40) });
    case 'integer':
    case 'number': {
      const [min, max] = spec.between ?? [-1e9, 1e9];
      const inRange =
        spec.type === 'integer'
          ? fc.integer({ min, max })
          : fc.double({ min, max, noNaN: true, noDefaultInfinity: true }).map((n) => (Object.is(n, -0) ? 0 : n));
      return spec.also_allowed ? fc.oneof(inRange, fc.constantFrom(...spec.also_allowed)) : inRange;
    }
    case 'boolean':
      return fc.boolean();
    case 'array':
      return fc.array(validArbitrary(spec.elements as FieldSpec, path + '[]'), { minLength: spec.len_min ?? 0, maxLength: Math.min(spec.len_max ?? 8, 8) });
    case 'record': {
      const shape: Record<string, fc.Arbitrary<unknown>> = {};
      const required: string[] = [];
      for (const entry of spec.fields as FieldEntry[]) {
        const name = entryName(entry);
        shape[name] = validArbitrary(entry[name], path === '' ? name : `${path}.${name}`);
        if (entry[name].required && entry[name].type !== 'record') required.push(name);
      }
      return fc.record(shape, { requiredKeys: required });
    }
  }
}

const ROOT: FieldSpec = { type: 'record', fields: schema };

describe('validate: properties', () => {
  it('never throws, and always answers either a config or a non-empty list of errors', () => {
    fc.assert(
      fc.property(fc.anything({ withNullPrototype: true, withObjectString: true, withSparseArray: true }), (input) => {
        const result = validate(input);
        if (result.ok) {
          expect(Object.keys(result.config)).toEqual(schema.map(entryName));
        } else {
          expect(result.errors.length).toBeGreaterThan(0);
          for (const error of result.errors) {
            expect(typeof error.path).toBe('string');
            expect(error.message.length).toBeGreaterThan(0);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws on arbitrary values planted at every declared field', () => {
    const planted = fc
      .tuple(fc.constantFrom(...fieldPaths().map((f) => f.path)), fc.anything({ withNullPrototype: true }))
      .map(([path, value]) => plant(path, value));
    fc.assert(
      fc.property(planted, (input) => {
        const result = validate(input);
        if (!result.ok) {
          for (const error of result.errors) expect(error.message).toMatch(/\S/);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('is idempotent on valid configs: validate(validate(x).config) is ok and equal, also after JSON', () => {
    let valid = 0;
    fc.assert(
      fc.property(validArbitrary(ROOT, ''), (input) => {
        const first = validate(input);
        fc.pre(first.ok);
        if (!first.ok) return;
        valid++;
        const again = validate(first.config);
        expect(again).toEqual(first);
        expect(validate(JSON.parse(JSON.stringify(first.config)))).toEqual(first);
      }),
      { numRuns: 500 },
    );
    // Most generated configs must be valid, or the property tests little.
    expect(valid).toBeGreaterThan(250);
  });
});

// ------------------------------------------------------------------------------------------------
// Kong schema

function kongByPath(fields: KongField[], path: string): KongFieldSpec | undefined {
  const steps = path.split('.');
  let current: KongField[] | undefined = fields;
  let found: KongFieldSpec | undefined;
  for (const rawStep of steps) {
    const isArray = rawStep.endsWith('[]');
    const step = isArray ? rawStep.slice(0, -2) : rawStep;
    const entry: KongField | undefined = current?.find((f) => Object.keys(f)[0] === step);
    if (!entry) return undefined;
    found = entry[step];
    current = isArray ? found.elements?.fields : found.fields;
  }
  return found;
}

describe('kongSchema', () => {
  const kong = kongSchema();

  it('is plain JSON (it travels through JSON.stringify and Lua cjson)', () => {
    expect(JSON.parse(JSON.stringify(kong))).toEqual(kong);
  });

  it('is an ordered list of single-key field entries, like schema.ts', () => {
    expect(kong.map((f) => Object.keys(f))).toEqual(schema.map((f) => [entryName(f)]));
  });

  it.each(fieldPaths().map((f) => [f.path, f.spec] as const))('%s matches its declaration', (path, spec) => {
    const field = kongByPath(kong, path);
    expect(field).toBeDefined();
    if (!field) return;
    expect(field.type).toBe(spec.type);
    expect(field.description).toBe(spec.description);
    expect(field.default).toEqual(spec.default);
    expect(field.required).toBe(spec.required);
    // Values a Kong JS plugin cannot serve are left out of Kong's list (Kong refuses them itself).
    expect(field.one_of).toEqual(spec.one_of?.filter((value) => !(spec.kong_excluded ?? []).includes(String(value))));
    expect(field.len_min).toBe(spec.len_min);
    expect(field.len_max).toBe(spec.len_max);
    if (!spec.also_allowed) expect(field.between).toEqual(spec.between);
    if (spec.elements) expect(field.elements?.one_of).toEqual(spec.elements.one_of);
    // Only attributes Kong's metaschema knows.
    expect(Object.keys(field).filter((k) => ['also_allowed', 'hint', 'format', 'kong_excluded'].includes(k))).toEqual([]);
  });

  it('leaves tpot out of latency_metric: Kong refuses what its JS plugins cannot measure', () => {
    expect(kongByPath(kong, 'response_time.latency_metric')?.one_of).toEqual(['e2e', 'ttft']);
  });

  it('widens between over sentinels and excludes the integer gap', () => {
    expect(kongByPath(kong, 'least_connections.choices')).toMatchObject({ type: 'integer', between: [0, 16], not_one_of: [1] });
    const factor = kongByPath(kong, 'consistent_hash.balance_factor');
    expect(factor).toMatchObject({ type: 'number', between: [0, 10] });
    expect(factor).not.toHaveProperty('not_one_of');
  });

  it('declares option records required (Kong expands them) and hash_key nullable without a default', () => {
    for (const name of ['least_connections', 'response_time', 'consistent_hash', 'hybrid', 'passive_health']) {
      expect(kongByPath(kong, name)).toMatchObject({ type: 'record', required: true });
    }
    const hashKey = kongByPath(kong, 'hash_key');
    expect(hashKey).toMatchObject({ type: 'record', required: false });
    expect(hashKey).not.toHaveProperty('default');
  });

  it('gives replica addresses a coarse Lua pattern', () => {
    expect(kongByPath(kong, 'replicas[].address')).toMatchObject({ type: 'string', required: true, match: '^.+:%d+$' });
  });

  it('obeys the rules of Kong 3.x metaschema.lua', () => {
    walkKong(kong, (name, field) => {
      if (field.description !== undefined) {
        expect(field.description.length, name).toBeGreaterThanOrEqual(10);
        expect(field.description.length, name).toBeLessThanOrEqual(500);
      }
      if (field.between) {
        expect(['integer', 'number'], name).toContain(field.type);
        expect(field.between).toHaveLength(2);
      }
      if (field.one_of) expect(['string', 'number', 'integer'], name).toContain(field.type);
      if (field.match) expect(field.type, name).toBe('string');
      if (field.type === 'record') expect(field.fields, name).toBeDefined();
      if (field.type === 'array') expect(field.elements, name).toBeDefined();
      if (field.default !== undefined) expect(kongAccepts(field, field.default), name).toBe(true);
    });
  });

  it('every value Kong would reject, validate() rejects too (Kong is the weaker check)', () => {
    const arbitrary = fc.tuple(
      fc.constantFrom(...fieldPaths().filter((f) => f.spec.type !== 'record' && f.spec.type !== 'array').map((f) => f.path)),
      fc.oneof(fc.integer({ min: -5, max: 20 }), fc.double({ noNaN: true }), fc.string(), fc.boolean()),
    );
    fc.assert(
      fc.property(arbitrary, ([path, value]) => {
        const field = kongByPath(kong, path) as KongFieldSpec;
        if (!kongAccepts(field, value)) {
          const input = path.startsWith('replicas[]')
            ? { replicas: [{ address: 'a:1', [path.slice('replicas[].'.length)]: value }] }
            : plant(path, value);
          expect(validate(input).ok).toBe(false);
        }
      }),
    );
  });
});

// ------------------------------------------------------------------------------------------------
// Docs

describe('configTable', () => {
  const table = configTable();

  it('has a header and one row per declared field', () => {
    const rows = table.split('\n');
    expect(rows[0]).toBe('| Option | Type | Default | Allowed | Description |');
    expect(rows).toHaveLength(fieldPaths().length + 2);
  });

  it.each(fieldPaths().map((f) => [f.path, f.spec] as const))('mentions %s with its description', (path, spec) => {
    const row = table.split('\n').find((line) => line.startsWith('| `' + path + '` |'));
    expect(row).toBeDefined();
    expect(row).toContain(spec.description as string);
    if (spec.default !== undefined && typeof spec.default !== 'object') expect(row).toContain('`' + String(spec.default) + '`');
  });

  it('shows sentinels next to ranges', () => {
    expect(table).toContain('| `least_connections.choices` | integer | `0` | 0, or 2 – 16 |');
    expect(table).toContain('| `passive_health.failure_kinds` | array of string | `[connect-error, timeout, 5xx]` |');
  });

  it('README.md carries the current table (run `npm run docs` when this fails)', () => {
    const readme = fileURLToPath(new URL('../README.md', import.meta.url));
    if (!existsSync(readme)) return;
    const text = readFileSync(readme, 'utf8');
    const start = text.indexOf('<!-- config-table:start -->\n') + '<!-- config-table:start -->\n'.length;
    const end = text.indexOf('<!-- config-table:end -->');
    expect(text.slice(start, end)).toBe(configSection().trimEnd() + '\n');
  });
});

// ------------------------------------------------------------------------------------------------
// Helpers

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
    Object.freeze(value);
  }
  return value;
}

/** An input with `value` at a dotted path; `replicas[]` paths plant into a one-replica list. */
function plant(path: string, value: unknown): Record<string, unknown> {
  const steps = path.split('.');
  const root: Record<string, unknown> = {};
  let node = root;
  for (let i = 0; i < steps.length; i++) {
    const last = i === steps.length - 1;
    if (steps[i].endsWith('[]')) {
      const child: Record<string, unknown> = { address: 'a:1' };
      node[steps[i].slice(0, -2)] = last ? [value] : [child];
      node = child;
    } else if (last) {
      node[steps[i]] = value;
    } else {
      const child: Record<string, unknown> = {};
      node[steps[i]] = child;
      node = child;
    }
  }
  return root;
}

function walkKong(fields: KongField[], visit: (name: string, field: KongFieldSpec) => void): void {
  for (const entry of fields) {
    const name = Object.keys(entry)[0];
    const field = entry[name];
    visit(name, field);
    if (field.fields) walkKong(field.fields, visit);
    if (field.elements) {
      visit(name + '[]', field.elements);
      if (field.elements.fields) walkKong(field.elements.fields, visit);
    }
  }
}

/** Kong's per-field validators for the attributes we emit (kong/db/schema/init.lua), for scalars and arrays. */
function kongAccepts(field: KongFieldSpec, value: unknown): boolean {
  switch (field.type) {
    case 'string':
      if (typeof value !== 'string') return false;
      if (field.len_min !== undefined && value.length < field.len_min) return false;
      if (field.len_max !== undefined && value.length > field.len_max) return false;
      if (field.match === '^.+:%d+$' && !/^.+:\d+$/.test(value)) return false;
      break;
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) return false;
      break;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) return false;
      break;
    case 'boolean':
      return typeof value === 'boolean';
    case 'array':
      if (!Array.isArray(value)) return false;
      if (field.len_max !== undefined && value.length > field.len_max) return false;
      return value.every((v) => kongAccepts(field.elements as KongFieldSpec, v));
    case 'record':
      return value !== null && typeof value === 'object';
  }
  if (field.one_of && !field.one_of.includes(value as string | number)) return false;
  if (field.not_one_of && field.not_one_of.includes(value as number)) return false;
  if (field.between && ((value as number) < field.between[0] || (value as number) > field.between[1])) return false;
  return true;
}

/**
 * What Kong stores for a plugin config: its process_auto_fields on insert (kong/db/schema/init.lua,
 * handle_missing_field): a missing field takes its default; else null when not required; a required
 * record is built from its fields; given records are filled recursively.
 */
function kongFill(fields: KongField[], input: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const entry of fields) {
    const name = Object.keys(entry)[0];
    const field = entry[name];
    const value = input[name];
    if (field.type === 'record' && value && typeof value === 'object') {
      out[name] = kongFill(field.fields as KongField[], value as Record<string, unknown>);
    } else if (value !== undefined) {
      out[name] = value;
    } else if (field.default !== undefined) {
      out[name] = structuredClone(field.default);
    } else if (field.required !== true) {
      out[name] = null;
    } else if (field.type === 'record') {
      out[name] = kongFill(field.fields as KongField[], {});
    }
  }
  return out;
}
