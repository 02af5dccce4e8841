// The status page of both adapters (NGINX's /llm-balancer/status and /metrics locations, Kong's
// kong.status_path): the core's per-replica rows (balancer.status) as JSON, and the same numbers
// in the Prometheus text exposition format (version 0.0.4). Pure rendering from plain rows.

import type { RejectedBecause } from './admission-queue';
import type { ReplicaStatus } from './balancer';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

function round(value: number | null): number | null {
  return value === null ? null : Math.round(value * 10) / 10;
}

function iso(ms: number | null): string | null {
  return ms === null || ms <= 0 ? null : new Date(ms).toISOString();
}

/** The JSON status document. `upstreams[i]` is the nginx upstream block of rows[i] (null: Kong, no such field). */
export function statusDocument(rows: ReplicaStatus[], upstreams: string[] | null, strategy: string, nowMs: number, withoutLlmBody?: number): Record<string, unknown> {
  const replicas: Record<string, unknown>[] = [];
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    replicas.push({
      id: row.id,
      address: row.address,
      upstream: upstreams === null ? undefined : i < upstreams.length ? upstreams[i] : null,
      weight: row.weight,
      state: row.state,
      healthy: row.state === 'healthy',
      ejected_until: iso(row.ejectedUntil),
      ejections: row.ejections,
      in_flight: row.inFlight,
      tokens_in_flight: row.tokens,
      queue: row.queue,
      kv_cache_usage: row.kvUsage,
      prefix_cache_queries: row.prefixQueries,
      prefix_cache_hits: row.prefixHits,
      latency_ewma_ms: round(row.ewmaMs),
      ttft_ewma_ms: round(row.ttftMs),
      tpot_ewma_ms: round(row.tpotMs),
      samples: row.samples,
      picks: row.picks,
      failures: row.failures,
    });
  }
  const doc: Record<string, unknown> = { strategy: strategy, generated_at: iso(nowMs), replicas: replicas };
  // Only for strategies that read the OpenAI body: requests placed without one (never refused).
  if (withoutLlmBody !== undefined) doc.requests_without_llm_body = withoutLlmBody;
  return doc;
}

/** A Prometheus label value: backslash, double quote and newline escaped. */
export function labelValue(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

interface Metric {
  name: string;
  type: 'gauge' | 'counter';
  help: string;
  /** The sample of one row, or null to leave the row out (no data yet). */
  value: (row: ReplicaStatus) => number | null;
}

// Built on use, not at module level: njs evaluates the module's top level for every request, and
// this table (fifteen objects, fifteen closures) would cost each proxied request for a page few ask for.
function metricTable(): Metric[] {
  return [
    { name: 'in_flight', type: 'gauge', help: 'Requests in flight to the replica, across all worker processes.', value: (r) => r.inFlight },
    { name: 'tokens_in_flight', type: 'gauge', help: 'Estimated tokens (prompt + expected output) of the requests in flight; counted by least-tokens only.', value: (r) => r.tokens },
    { name: 'queue', type: 'gauge', help: "Running + waiting requests as the replica's own /metrics last reported (absent unless scraped and fresh).", value: (r) => r.queue },
    { name: 'kv_cache_usage', type: 'gauge', help: "KV-cache usage 0..1 as the replica's own /metrics last reported (absent unless scraped and fresh).", value: (r) => r.kvUsage },
    { name: 'prefix_cache_queries_total', type: 'counter', help: "Prompt tokens the replica looked up in its prefix cache, its own counter as its /metrics last reported (vLLM prefix_cache_queries; llama.cpp computed + cached prompt tokens; absent unless reported, scraped and fresh; a replica restart resets it).", value: (r) => r.prefixQueries },
    { name: 'prefix_cache_hits_total', type: 'counter', help: "Of those tokens, the ones found in the replica's prefix cache, as its /metrics last reported (vLLM prefix_cache_hits; llama.cpp cached prompt tokens; absent unless reported, scraped and fresh).", value: (r) => r.prefixHits },
    { name: 'picks_total', type: 'counter', help: 'Attempts started on the replica (picks and failover attempts).', value: (r) => r.picks },
    { name: 'failures_total', type: 'counter', help: 'Attempts that failed with a configured failure kind (connect error, timeout, 5xx, 429).', value: (r) => r.failures },
    { name: 'latency_ewma_ms', type: 'gauge', help: 'Time-decayed peak EWMA of response time in milliseconds (absent before the first sample).', value: (r) => round(r.ewmaMs) },
    { name: 'ttft_ewma_ms', type: 'gauge', help: 'Peak EWMA of time to the first response byte (latency_metric ttft or tpot; else to the response header) in milliseconds (absent before the first sample).', value: (r) => round(r.ttftMs) },
    { name: 'tpot_ewma_ms', type: 'gauge', help: 'Peak EWMA of time per output token in milliseconds (latency_metric tpot only; absent before the first sample).', value: (r) => round(r.tpotMs) },
    { name: 'healthy', type: 'gauge', help: '1 when the replica takes traffic normally, else 0.', value: (r) => (r.state === 'healthy' ? 1 : 0) },
    { name: 'ejected', type: 'gauge', help: '1 while passive outlier detection keeps the replica out (ejected or awaiting its half-open trial).', value: (r) => (r.state === 'ejected' || r.state === 'half-open' ? 1 : 0) },
    { name: 'ejections', type: 'gauge', help: 'Ejections in the current streak (the count sets the ejection length; forgotten after max_ejection_s healthy).', value: (r) => r.ejections },
    { name: 'weight', type: 'gauge', help: 'Configured relative capacity.', value: (r) => r.weight },
  ];
}

/** GET /llm-balancer/metrics: one family per metric, one sample per replica, plus a state info family. */
export function prometheusText(rows: ReplicaStatus[], withoutLlmBody?: number): string {
  const lines: string[] = [];
  const labels: string[] = [];
  for (let i = 0; i < rows.length; i++) {
    labels.push('replica="' + labelValue(rows[i].id) + '",address="' + labelValue(rows[i].address) + '"');
  }
  const metrics = metricTable();
  for (let m = 0; m < metrics.length; m++) {
    const metric = metrics[m];
    const name = 'llm_balancer_replica_' + metric.name;
    lines.push('# HELP ' + name + ' ' + metric.help);
    lines.push('# TYPE ' + name + ' ' + metric.type);
    for (let i = 0; i < rows.length; i++) {
      const value = metric.value(rows[i]);
      if (value !== null) lines.push(name + '{' + labels[i] + '} ' + value);
    }
  }
  lines.push('# HELP llm_balancer_replica_state The replica\'s state (healthy, unhealthy, draining, disabled, ejected, half-open, stuck); always 1.');
  lines.push('# TYPE llm_balancer_replica_state gauge');
  for (let i = 0; i < rows.length; i++) {
    lines.push('llm_balancer_replica_state{' + labels[i] + ',state="' + rows[i].state + '"} 1');
  }
  if (withoutLlmBody !== undefined) {
    lines.push('# HELP llm_balancer_requests_without_llm_body_total Requests a body-reading strategy placed without an OpenAI body (none, not JSON, too large, no messages or prompt).');
    lines.push('# TYPE llm_balancer_requests_without_llm_body_total counter');
    lines.push('llm_balancer_requests_without_llm_body_total ' + withoutLlmBody);
  }
  return lines.join('\n') + '\n';
}

/**
 * Every kind of balancer state, for the status page's shared_state and the Prometheus family
 * below: the first five can be shared between gateway nodes (Kong with kong.redis); the rest are
 * always each node's own (each node judges a replica on its own traffic).
 */
export const STATE_KINDS = ['in_flight', 'tokens', 'prefix_table', 'ejections', 'half_open_trials', 'latency', 'failure_counts', 'stuck_detection', 'slow_start', 'replica_metrics'];

/** The kinds of STATE_KINDS not in `shared`: this node's own. */
export function localStateKinds(shared: string[]): string[] {
  const local: string[] = [];
  for (let i = 0; i < STATE_KINDS.length; i++) {
    let isShared = false;
    for (let j = 0; j < shared.length; j++) if (shared[j] === STATE_KINDS[i]) isShared = true;
    if (!isShared) local.push(STATE_KINDS[i]);
  }
  return local;
}

/** llm_balancer_state_shared{state}: 1 where that state is shared with other gateway nodes right now, 0 where it is this node's own. */
export function sharedStatePrometheus(shared: string[]): string {
  const lines: string[] = [];
  lines.push('# HELP llm_balancer_state_shared 1 where this kind of balancer state is shared with the other gateway nodes right now (Kong: through Redis, while connected), 0 where it is this node\'s own.');
  lines.push('# TYPE llm_balancer_state_shared gauge');
  const local = localStateKinds(shared);
  for (let i = 0; i < STATE_KINDS.length; i++) {
    let own = false;
    for (let j = 0; j < local.length; j++) if (local[j] === STATE_KINDS[i]) own = true;
    lines.push('llm_balancer_state_shared{state="' + STATE_KINDS[i] + '"} ' + (own ? 0 : 1));
  }
  return lines.join('\n') + '\n';
}

/** What admission reports on the status page and in Prometheus (an adapter's gate, shared/admission-queue.ts). */
export interface AdmissionReport {
  /** Requests whose client left while they waited (NGINX sees the close; Kong's plugin server cannot): absent where unknown. */
  left?: number;
  /** Requests waiting now, per priority band (highest first). */
  waiting: Array<{ band: number; waiting: number }>;
  /** Requests that waited and were then dispatched. */
  admittedAfterWait: number;
  /** Requests turned away, by why: shed (sheddable band), full (queue cap), timeout (max_wait_s), displaced (by a higher band). */
  rejected: Record<RejectedBecause, number>;
}

/** The admission families in Prometheus text: waiting per band, dispatched after a wait, rejected by why. */
export function admissionPrometheus(report: AdmissionReport): string {
  const lines: string[] = [];
  lines.push('# HELP llm_balancer_admission_waiting Requests waiting at this gateway node for a saturated pool, per priority band.');
  lines.push('# TYPE llm_balancer_admission_waiting gauge');
  let total = 0;
  for (let i = 0; i < report.waiting.length; i++) {
    lines.push('llm_balancer_admission_waiting{band="' + report.waiting[i].band + '"} ' + report.waiting[i].waiting);
    total += report.waiting[i].waiting;
  }
  if (report.waiting.length === 0) lines.push('llm_balancer_admission_waiting{band="0"} 0');
  lines.push('# HELP llm_balancer_admission_waiting_total_now Requests waiting at this gateway node, all bands.');
  lines.push('# TYPE llm_balancer_admission_waiting_total_now gauge');
  lines.push('llm_balancer_admission_waiting_total_now ' + total);
  lines.push('# HELP llm_balancer_admission_admitted_after_wait_total Requests that waited for a saturated pool and were then sent to a replica.');
  lines.push('# TYPE llm_balancer_admission_admitted_after_wait_total counter');
  lines.push('llm_balancer_admission_admitted_after_wait_total ' + report.admittedAfterWait);
  lines.push('# HELP llm_balancer_admission_rejected_total Requests admission turned away (admission.reject_status), by why.');
  lines.push('# TYPE llm_balancer_admission_rejected_total counter');
  const reasons: RejectedBecause[] = ['shed', 'full', 'timeout', 'displaced'];
  for (let i = 0; i < reasons.length; i++) lines.push('llm_balancer_admission_rejected_total{reason="' + reasons[i] + '"} ' + report.rejected[reasons[i]]);
  if (report.left !== undefined) {
    lines.push('# HELP llm_balancer_admission_left_total Requests whose client closed the connection while they waited.');
    lines.push('# TYPE llm_balancer_admission_left_total counter');
    lines.push('llm_balancer_admission_left_total ' + report.left);
  }
  return lines.join('\n') + '\n';
}
