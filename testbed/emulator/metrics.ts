// GET /metrics of an emulated replica: Prometheus text (format 0.0.4) with vLLM V1's metric names
// and labels, carrying the emulation's TRUE values, so a balancer scraping it sees what it would
// see from vLLM (and a test can compare the balancer's estimates with the truth).
//
// Counters are written as prometheus_client (which vLLM uses) writes them in this format: the
// `# TYPE` line names the `_total` sample. Histograms hold real seconds (time-scaled durations:
// what a client of this replica actually waits), with vLLM's bucket bounds; the inter-token
// histogram adds three bounds below vLLM's first (10 ms) so time-scaled runs do not land in one bucket.
//
// LoRA (only when the replica serves adapters, as vLLM registers it only with --enable-lora):
// vllm:lora_requests_info exactly as vLLM V1 writes it (vllm/v1/metrics/loggers.py, record()):
// a gauge with the labels max_lora, running_lora_adapters and waiting_lora_adapters (no
// model_name or engine label), set to the current wall-clock time in seconds each time the engine
// reports stats, i.e. at the end of every step. The adapter lists are the comma-joined names of
// the adapters that have any waiting or running request, in the order they became active: current
// vLLM fills BOTH label values from the same per-LoRA dict (LoRARequestStates, vllm/v1/metrics/
// stats.py), so the two lists are equal (a real vLLM replica shows running_lora_adapters="alpaca",
// waiting_lora_adapters="alpaca" for one waiting request); older V1 releases kept them apart.
// prometheus_client keeps one series per label set ever seen, each with the time it was last set:
// a reader takes the series with the LATEST value, as the Gateway API Inference Extension does.
// Labels print sorted by name and the value in Go's float style, as prometheus_client prints them.
// The llm_emulator_lora_* counters are the emulator's own, NOT vLLM metrics: adapter loads into
// and evictions from the GPU slots, the truth a test compares a balancer's LoRA affinity with.

import type { FinishReason } from './content';
import type { EngineStats, LoraActivity } from './model';
import { BLOCK_TOKENS } from './model';

/** vLLM V1's vllm:time_to_first_token_seconds bounds. */
export const TTFT_BUCKETS_S: readonly number[] = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];

/** vLLM V1's vllm:inter_token_latency_seconds bounds, with 1, 2.5 and 5 ms in front for time-scaled runs. */
export const INTER_TOKEN_BUCKETS_S: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
];

export interface Histogram {
  readonly upperBounds: readonly number[];
  /** Non-cumulative count per bound; observations above the last bound are only in `count`. */
  readonly bucketCounts: number[];
  sum: number;
  count: number;
  observe(value: number): void;
}

export function createHistogram(upperBounds: readonly number[]): Histogram {
  const histogram: Histogram = {
    upperBounds,
    bucketCounts: upperBounds.map(() => 0),
    sum: 0,
    count: 0,
    observe(value) {
      histogram.sum += value;
      histogram.count++;
      for (let i = 0; i < upperBounds.length; i++) {
        if (value <= upperBounds[i]) {
          histogram.bucketCounts[i]++;
          return;
        }
      }
    },
  };
  return histogram;
}

/**
 * How many vllm:lora_requests_info series to keep. vLLM keeps every label set it ever set; a busy
 * multi-LoRA replica then grows its /metrics without bound. The newest 64 hold every series a
 * reader looking for the latest one needs, and keep scrapes of a long benchmark small.
 */
export const LORA_INFO_SERIES_KEPT = 64;

/** The vllm:lora_requests_info series: one per label set, valued with the time it was last set. */
export interface LoraInfoSeries {
  /** Records the engine's adapter activity at `epochSeconds`. */
  record(activity: readonly LoraActivity[], epochSeconds: number): void;
  /** Series, least recently set first. */
  entries(): Array<{ adapters: string; epochSeconds: number }>;
}

export function createLoraInfoSeries(kept = LORA_INFO_SERIES_KEPT): LoraInfoSeries {
  // Keyed by the adapter list (both labels carry it); delete + set keeps the newest at the end.
  const series = new Map<string, number>();
  return {
    record(activity, epochSeconds) {
      const adapters = activity.map((entry) => entry.adapter).join(',');
      series.delete(adapters);
      series.set(adapters, epochSeconds);
      if (series.size > kept) series.delete(series.keys().next().value as string);
    },
    entries: () => Array.from(series, ([adapters, epochSeconds]) => ({ adapters, epochSeconds })),
  };
}

/**
 * A sample value as prometheus_client prints it (floatToGoString): Python's repr of the float, in
 * exponent form once there are more than six digits before the point (a Unix time in seconds
 * prints as 1.7e+09-style text).
 */
export function goFloatText(value: number): string {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  if (Number.isNaN(value)) return 'NaN';
  let text = String(value);
  if (Number.isInteger(value) && !text.includes('e')) text += '.0';
  const dot = text.indexOf('.');
  if (value > 0 && dot > 6) {
    const mantissa = (text.slice(0, 1) + '.' + text.slice(1, dot) + text.slice(dot + 1)).replace(/[0.]+$/, '');
    return `${mantissa}e+0${dot - 1}`;
  }
  return text;
}

export interface LoraMetricsSnapshot {
  maxLoras: number;
  series: LoraInfoSeries;
}

export interface MetricsSnapshot {
  modelName: string;
  engine: EngineStats;
  /** Present when the replica serves LoRA adapters. */
  lora?: LoraMetricsSnapshot;
  /** Finished requests by finish reason (vllm:request_success_total). */
  finished: Record<FinishReason, number>;
  ttftSeconds: Histogram;
  interTokenSeconds: Histogram;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export function renderMetrics(snapshot: MetricsSnapshot): string {
  const base = `model_name="${escapeLabel(snapshot.modelName)}",engine="0"`;
  const lines: string[] = [];
  const family = (name: string, type: string, help: string) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  };
  const sample = (name: string, value: number, extraLabels = '') => {
    lines.push(`${name}{${base}${extraLabels}} ${value}`);
  };
  const engine = snapshot.engine;

  family('vllm:num_requests_running', 'gauge', 'Number of requests in model execution batches.');
  sample('vllm:num_requests_running', engine.running);
  family('vllm:num_requests_waiting', 'gauge', 'Number of requests waiting to be processed.');
  sample('vllm:num_requests_waiting', engine.waiting);
  family('vllm:kv_cache_usage_perc', 'gauge', 'KV-cache usage. 1 means 100 percent usage.');
  sample('vllm:kv_cache_usage_perc', engine.kvUsage);
  family('vllm:prefix_cache_queries_total', 'counter', 'Prefix cache queries, in terms of number of queried tokens.');
  sample('vllm:prefix_cache_queries_total', engine.prefixQueries);
  family('vllm:prefix_cache_hits_total', 'counter', 'Prefix cache hits, in terms of number of cached tokens.');
  sample('vllm:prefix_cache_hits_total', engine.prefixHits);
  family('vllm:prompt_tokens_total', 'counter', 'Number of prefill tokens processed.');
  sample('vllm:prompt_tokens_total', engine.promptTokens);
  family('vllm:generation_tokens_total', 'counter', 'Number of generation tokens processed.');
  sample('vllm:generation_tokens_total', engine.generationTokens);
  family('vllm:request_success_total', 'counter', 'Count of successfully processed requests.');
  for (const reason of Object.keys(snapshot.finished) as FinishReason[]) {
    sample('vllm:request_success_total', snapshot.finished[reason], `,finished_reason="${reason}"`);
  }
  family('vllm:cache_config_info', 'gauge', 'Information of the LLMEngine CacheConfig.');
  lines.push(`vllm:cache_config_info{block_size="${BLOCK_TOKENS}",num_gpu_blocks="${engine.kvBlocksTotal}",engine="0"} 1`);

  const histogram = (name: string, help: string, h: Histogram) => {
    family(name, 'histogram', help);
    let cumulative = 0;
    for (let i = 0; i < h.upperBounds.length; i++) {
      cumulative += h.bucketCounts[i];
      sample(name + '_bucket', cumulative, `,le="${h.upperBounds[i]}"`);
    }
    sample(name + '_bucket', h.count, ',le="+Inf"');
    sample(name + '_count', h.count);
    sample(name + '_sum', h.sum);
  };
  histogram('vllm:time_to_first_token_seconds', 'Histogram of time to first token in seconds.', snapshot.ttftSeconds);
  histogram('vllm:inter_token_latency_seconds', 'Histogram of inter-token latency in seconds.', snapshot.interTokenSeconds);

  const lora = snapshot.lora;
  if (lora !== undefined) {
    family('vllm:lora_requests_info', 'gauge', 'Running stats on lora requests.');
    for (const entry of lora.series.entries()) {
      const adapters = escapeLabel(entry.adapters);
      lines.push(
        `vllm:lora_requests_info{max_lora="${lora.maxLoras}",running_lora_adapters="${adapters}",waiting_lora_adapters="${adapters}"} ${goFloatText(entry.epochSeconds)}`,
      );
    }
    const stats = engine.lora;
    family('llm_emulator_lora_adapter_loads_total', 'counter', 'LoRA adapters loaded into a GPU slot (emulator only, not a vLLM metric).');
    sample('llm_emulator_lora_adapter_loads_total', stats === null ? 0 : stats.loads);
    family('llm_emulator_lora_adapter_evictions_total', 'counter', 'LoRA adapters evicted from a GPU slot for another (emulator only, not a vLLM metric).');
    sample('llm_emulator_lora_adapter_evictions_total', stats === null ? 0 : stats.evictions);
  }
  return lines.join('\n') + '\n';
}
