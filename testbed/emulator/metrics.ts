// GET /metrics of an emulated replica: Prometheus text (format 0.0.4) with vLLM V1's metric names
// and labels, carrying the emulation's TRUE values, so a balancer scraping it sees what it would
// see from vLLM (and a test can compare the balancer's estimates with the truth).
//
// Counters are written as prometheus_client (which vLLM uses) writes them in this format: the
// `# TYPE` line names the `_total` sample. Histograms hold real seconds (time-scaled durations:
// what a client of this replica actually waits), with vLLM's bucket bounds; the inter-token
// histogram adds three bounds below vLLM's first (10 ms) so time-scaled runs do not land in one bucket.

import type { FinishReason } from './content';
import type { EngineStats } from './model';
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

export interface MetricsSnapshot {
  modelName: string;
  engine: EngineStats;
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
  return lines.join('\n') + '\n';
}
