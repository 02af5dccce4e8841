// The report of one run: a plain JSON-serialisable object (results files, comparisons across
// strategies) and formatReport, its text table. Pure: it reads the per-request records and the
// measured window, never a clock.
//
// Latency metrics (TTFT, TPOT, ITL, e2e) count successful requests only: a timeout has no e2e and
// a 500's TTFT means nothing. Failures are counted by kind instead, and goodput charges them.
// Throughput divides by the measured window (run start to the last request's end), as vLLM's
// benchmark_serving does: a run whose tail drags shows a lower rate than it was offered.

import { ERROR_KINDS, type ClientResult, type ErrorKind } from './client';
import type { ArrivalMode } from './arrivals';
import type { RequestKind } from './mixes';
import { MetricHistogram, type MetricSummary } from './stats';

/** One request as the runner saw it: the client's result plus its place in the schedule. */
export interface RequestRecord extends ClientResult {
  id: string;
  kind: RequestKind;
  /** When the trace scheduled it, ms from the run start. */
  atMs: number;
  /** When it was actually handed to the client, ms from the run start. */
  sentAtMs: number;
  /** sentAtMs − atMs: how late the generator was (0 when on time). */
  scheduleLagMs: number;
}

/** Service-level objective for goodput; a request meets it when it succeeds within every bound given. */
export interface Slo {
  ttftMs?: number;
  tpotMs?: number;
  e2eMs?: number;
}

/** What was run, echoed into the report so a results file explains itself. */
export interface TraceInfo {
  seed: number;
  ratePerS: number;
  durationS: number;
  mix: string;
  arrivals: ArrivalMode;
  model: string;
  requests: number;
}

export interface ReplicaShare {
  /** x-llm-replica / system_fingerprint; null for responses that named no replica. */
  replica: string | null;
  /** Responses from it, errors included. */
  requests: number;
  completed: number;
  /** requests / all requests that got a response: the shares sum to 1. */
  share: number;
  /** The most of its requests open at once, as the client saw them (sent → last byte or failure). */
  peakInFlight: number;
}

/** Per replica, the most requests open at once over [sentAtMs, sentAtMs + elapsedMs]. */
export function peakInFlight(records: ReadonlyArray<Pick<RequestRecord, 'replica' | 'status' | 'sentAtMs' | 'elapsedMs'>>): Map<string | null, number> {
  const events = new Map<string | null, Array<[number, number]>>();
  for (const record of records) {
    if (record.status === null) continue;
    const list = events.get(record.replica) ?? [];
    list.push([record.sentAtMs, 1], [record.sentAtMs + record.elapsedMs, -1]);
    events.set(record.replica, list);
  }
  const peaks = new Map<string | null, number>();
  for (const [replica, list] of events) {
    // Ends before starts at the same instant: a request that ended as another began did not overlap it.
    list.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let open = 0;
    let peak = 0;
    for (const [, change] of list) {
      open += change;
      if (open > peak) peak = open;
    }
    peaks.set(replica, peak);
  }
  return peaks;
}

export interface Report {
  trace: TraceInfo | null;
  target: { baseUrl: string; path: string | null } | null;
  /** Run start to the end of the last request, seconds. */
  windowS: number;
  requests: { total: number; completed: number; failed: number };
  /**
   * offeredPerS: the trace's requests over its duration, the rate actually offered (a Poisson
   * trace's count varies around rate × duration); null without trace information.
   */
  throughput: { offeredPerS: number | null; completedPerS: number; outputTokens: number; outputTokensPerS: number };
  errors: { byKind: Record<ErrorKind, number>; byStatus: Record<string, number> };
  metrics: {
    ttft: MetricSummary;
    tpot: MetricSummary;
    itl: MetricSummary;
    e2e: MetricSummary;
    /** How late requests were sent: a saturated generator shows here first. */
    scheduleLag: MetricSummary;
    /** Time to a connected socket: pool wait + connect. */
    socketReady: MetricSummary;
  };
  replicas: ReplicaShare[];
  goodput: { slo: Slo; requests: number; share: number; perS: number } | null;
}

export interface ReportOptions {
  /** The measured window in ms (run start to the last request's end). */
  windowMs: number;
  slo?: Slo;
  trace?: TraceInfo;
  target?: { baseUrl: string; path: string | null };
}

export function buildReport(records: readonly RequestRecord[], options: ReportOptions): Report {
  const windowS = Math.max(0, options.windowMs) / 1000;
  const perSecond = (count: number) => (windowS > 0 ? count / windowS : 0);
  const histograms = {
    ttft: new MetricHistogram(),
    tpot: new MetricHistogram(),
    itl: new MetricHistogram(),
    e2e: new MetricHistogram(),
    scheduleLag: new MetricHistogram(),
    socketReady: new MetricHistogram(),
  };
  const byKind = Object.fromEntries(ERROR_KINDS.map((kind) => [kind, 0])) as Record<ErrorKind, number>;
  const byStatus: Record<string, number> = {};
  const replicas = new Map<string | null, { requests: number; completed: number }>();
  let completed = 0;
  let outputTokens = 0;
  let responded = 0;
  let meetingSlo = 0;

  for (const record of records) {
    histograms.scheduleLag.record(record.scheduleLagMs);
    if (record.socketReadyMs !== null) histograms.socketReady.record(record.socketReadyMs);
    if (record.status !== null) {
      responded++;
      const entry = replicas.get(record.replica) ?? { requests: 0, completed: 0 };
      entry.requests++;
      if (record.ok) entry.completed++;
      replicas.set(record.replica, entry);
    }
    if (!record.ok) {
      if (record.error !== null) byKind[record.error]++;
      if (record.error === 'http-status' && record.status !== null) byStatus[record.status] = (byStatus[record.status] ?? 0) + 1;
      continue;
    }
    completed++;
    outputTokens += record.outputTokens;
    if (record.ttftMs !== null) histograms.ttft.record(record.ttftMs);
    if (record.tpotMs !== null) histograms.tpot.record(record.tpotMs);
    if (record.e2eMs !== null) histograms.e2e.record(record.e2eMs);
    histograms.itl.recordAll(record.interTokenMs);
    if (options.slo !== undefined && meetsSlo(record, options.slo)) meetingSlo++;
  }

  const peaks = peakInFlight(records);
  const replicaShares: ReplicaShare[] = [...replicas.entries()]
    .map(([replica, entry]) => ({ replica, requests: entry.requests, completed: entry.completed, share: entry.requests / responded, peakInFlight: peaks.get(replica) ?? 0 }))
    .sort((a, b) => b.requests - a.requests || String(a.replica).localeCompare(String(b.replica)));

  return {
    trace: options.trace ?? null,
    target: options.target ?? null,
    windowS,
    requests: { total: records.length, completed, failed: records.length - completed },
    throughput: {
      offeredPerS: options.trace !== undefined ? options.trace.requests / options.trace.durationS : null,
      completedPerS: perSecond(completed),
      outputTokens,
      outputTokensPerS: perSecond(outputTokens),
    },
    errors: { byKind, byStatus },
    metrics: {
      ttft: histograms.ttft.summary(),
      tpot: histograms.tpot.summary(),
      itl: histograms.itl.summary(),
      e2e: histograms.e2e.summary(),
      scheduleLag: histograms.scheduleLag.summary(),
      socketReady: histograms.socketReady.summary(),
    },
    replicas: replicaShares,
    goodput:
      options.slo === undefined
        ? null
        : {
            slo: options.slo,
            requests: meetingSlo,
            share: records.length > 0 ? meetingSlo / records.length : 0,
            perS: perSecond(meetingSlo),
          },
  };
}

/** A successful request within every bound the SLO sets (a missing measurement misses its bound). */
export function meetsSlo(record: Pick<ClientResult, 'ok' | 'ttftMs' | 'tpotMs' | 'e2eMs'>, slo: Slo): boolean {
  if (!record.ok) return false;
  const within = (value: number | null, bound: number | undefined) => bound === undefined || (value !== null && value <= bound);
  return within(record.ttftMs, slo.ttftMs) && within(record.tpotMs, slo.tpotMs) && within(record.e2eMs, slo.e2eMs);
}

/** The metric rows of the text table, in print order. */
export const METRIC_ROWS: ReadonlyArray<{ key: keyof Report['metrics']; label: string }> = [
  { key: 'ttft', label: 'TTFT' },
  { key: 'tpot', label: 'TPOT' },
  { key: 'itl', label: 'ITL' },
  { key: 'e2e', label: 'e2e latency' },
  { key: 'scheduleLag', label: 'schedule lag' },
  { key: 'socketReady', label: 'socket ready' },
];

export function formatReport(report: Report): string {
  const lines: string[] = [];
  const trace = report.trace;
  if (trace !== null) {
    lines.push(
      `trace: mix ${trace.mix}, ${trace.arrivals} arrivals at ${trace.ratePerS}/s for ${trace.durationS} s, seed ${trace.seed}, model ${trace.model}`,
    );
  }
  if (report.target !== null) lines.push(`target: ${report.target.baseUrl}${report.target.path ?? ''}`);
  const r = report.requests;
  lines.push(`requests: ${r.total} (completed ${r.completed}, failed ${r.failed}) in a ${report.windowS.toFixed(2)} s window`);
  lines.push(
    `throughput: ${report.throughput.offeredPerS === null ? '' : `${report.throughput.offeredPerS.toFixed(2)} offered req/s, `}` +
      `${report.throughput.completedPerS.toFixed(2)} completed req/s, ` +
      `${report.throughput.outputTokensPerS.toFixed(1)} output tokens/s (${report.throughput.outputTokens} tokens)`,
  );
  if (report.goodput !== null) {
    const g = report.goodput;
    const bounds = Object.entries(g.slo)
      .filter(([, value]) => value !== undefined)
      .map(([name, value]) => `${name.replace(/Ms$/, '')} <= ${value} ms`)
      .join(', ');
    lines.push(`goodput (${bounds || 'no bounds'}): ${g.requests} requests, ${percent(g.share)}, ${g.perS.toFixed(2)} req/s`);
  }
  lines.push('');

  const header = ['metric (ms)', 'count', 'mean', 'p50', 'p90', 'p99', 'max'];
  const rows = METRIC_ROWS.map(({ key, label }) => {
    const m = report.metrics[key];
    return [label, String(m.count), ms(m.meanMs), ms(m.p50Ms), ms(m.p90Ms), ms(m.p99Ms), ms(m.maxMs)];
  });
  lines.push(...table([header, ...rows]));
  lines.push('');

  const errorParts = ERROR_KINDS.filter((kind) => report.errors.byKind[kind] > 0).map((kind) => `${kind} ${report.errors.byKind[kind]}`);
  const statuses = Object.entries(report.errors.byStatus).map(([status, count]) => `${status}×${count}`);
  lines.push(`errors: ${errorParts.length === 0 ? 'none' : errorParts.join(', ')}${statuses.length > 0 ? ` (HTTP ${statuses.join(', ')})` : ''}`);

  if (report.replicas.length > 0) {
    lines.push('');
    lines.push(
      ...table([
        ['replica', 'requests', 'completed', 'share'],
        ...report.replicas.map((entry) => [entry.replica ?? '(unnamed)', String(entry.requests), String(entry.completed), percent(entry.share)]),
      ]),
    );
  }
  return lines.join('\n');
}

/** Milliseconds with precision that suits the magnitude: ITLs are fractions, e2e are thousands. */
function ms(value: number | null): string {
  if (value === null) return '-';
  if (value < 10) return value.toFixed(2);
  if (value < 1000) return value.toFixed(1);
  return value.toFixed(0);
}

function percent(fraction: number): string {
  return (fraction * 100).toFixed(1) + '%';
}

/** Left-aligned first column, right-aligned numbers. */
function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows.map((row) => row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]) : cell.padStart(widths[column]))).join('  '));
}
