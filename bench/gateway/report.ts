// bench:gateway's results (bench/gateway.js starts nginx and drives wrk; variants.ts says what it
// runs): wrk's output, the medians over rounds, the ratios (req/s to native least_conn on the same
// nginx, CPU to the hand-written reference on the same nginx and engine), issue 14's check, the
// tables and the results file. Pure: spec/bench-gateway.spec.ts checks them.
import { LLM_AWARE_TARGET, NATIVE_BASELINE, REFERENCE_BASELINE } from './variants';
import type { Engine, Generation, GatewayTarget, Job, VariantSpec } from './variants';

export interface WrkResult {
  requestsPerSecond: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  socketErrors: string | null;
}

/** wrk's text output (with --latency); NaN for what it lacks. */
export function parseWrk(output: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(output);
  const toMs = (value: string, unit: string) => Number(value) * ({ us: 0.001, ms: 1, s: 1000 }[unit] ?? NaN);
  const pct = (p: number) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(output);
    return m ? toMs(m[1], m[2]) : NaN;
  };
  const errors = /Non-2xx or 3xx responses:\s+(\d+)/.exec(output);
  const requests = /(\d+) requests in/.exec(output);
  const socket = /Socket errors:.*/.exec(output);
  return {
    requestsPerSecond: rps ? Number(rps[1]) : NaN,
    requests: requests ? Number(requests[1]) : NaN,
    p50Ms: pct(50),
    p99Ms: pct(99),
    non2xx: errors ? Number(errors[1]) : 0,
    socketErrors: socket ? socket[0] : null,
  };
}

/** A finished run, or one that failed (nginx did not start, wrk failed): then `error` says why. */
export type Run = Job &
  ({ error: null; cpuUsPerRequest: number; errorLog: string | null } & WrkResult | { error: string });

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = values.slice().sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** One variant on one cell over its rounds: the medians, and what went wrong. */
export interface Summary extends WrkResult {
  variant: string;
  on: string;
  cpuUsPerRequest: number;
  /** Successful runs the medians are of. */
  runs: number;
  /** Runs that failed, and the first one's reason. */
  failedRuns: number;
  error: string | null;
  /** The first error-log line of the gateway's nginx that says the module failed (js exception, [error] or worse), if any. */
  errorLog: string | null;
}

function key(variant: string, on: string): string {
  return variant + '\u0000' + on;
}

/**
 * Per (variant, cell): medians of req/s, CPU per request, p50 and p99 over the successful runs;
 * requests, non-2xx and socket errors from the median run by CPU per request.
 */
export function summarizeRuns(runs: readonly Run[]): Map<string, Summary> {
  const groups = new Map<string, Run[]>();
  for (const r of runs) groups.set(key(r.variant, r.on), (groups.get(key(r.variant, r.on)) ?? []).concat([r]));
  const out = new Map<string, Summary>();
  for (const [k, group] of groups) {
    const ok = group.filter((r): r is Extract<Run, { error: null }> => r.error === null).sort((a, b) => a.cpuUsPerRequest - b.cpuUsPerRequest);
    const failed = group.filter((r): r is Extract<Run, { error: string }> => r.error !== null);
    const mid = ok.length > 0 ? ok[Math.floor(ok.length / 2)] : null;
    const of = (field: 'requestsPerSecond' | 'cpuUsPerRequest' | 'p50Ms' | 'p99Ms') => median(ok.map((r) => r[field]));
    out.set(k, {
      variant: group[0].variant,
      on: group[0].on,
      requestsPerSecond: of('requestsPerSecond'),
      requests: mid ? mid.requests : NaN,
      p50Ms: of('p50Ms'),
      p99Ms: of('p99Ms'),
      non2xx: mid ? mid.non2xx : NaN,
      socketErrors: mid ? mid.socketErrors : null,
      cpuUsPerRequest: of('cpuUsPerRequest'),
      runs: ok.length,
      failedRuns: failed.length,
      error: failed.length > 0 ? failed[0].error : null,
      errorLog: ok.map((r) => r.errorLog).find((line) => line !== null) ?? null,
    });
  }
  return out;
}

/** `value / reference`, or null when either is missing or the reference is not positive. */
export function ratio(value: number | null | undefined, reference: number | null | undefined): number | null {
  if (value === null || value === undefined || reference === null || reference === undefined) return null;
  if (!Number.isFinite(value) || !Number.isFinite(reference) || !(reference > 0)) return null;
  return value / reference;
}

export interface TargetRow extends Summary {
  /** req/s over native least_conn's on the same nginx. */
  vsNativeLeastConn: number | null;
  /** CPU per request over native least_conn's on the same nginx. */
  cpuVsNative: number | null;
  /** CPU per request over the hand-written reference's on the same nginx and engine. */
  cpuVsReference: number | null;
}

/** One target's rows, in `variants` order, with their ratios; variants that never ran there are left out. */
export function targetRows(target: GatewayTarget, variants: readonly VariantSpec[], summaries: ReadonlyMap<string, Summary>): TargetRow[] {
  const at = (v: VariantSpec | undefined) => (v === undefined ? undefined : summaries.get(key(v.name, v.kind === 'native' ? target.generation : target.name)));
  const native = at(variants.find((v) => v.name === NATIVE_BASELINE));
  const reference = at(variants.find((v) => v.name === REFERENCE_BASELINE));
  const rows: TargetRow[] = [];
  for (const v of variants) {
    const s = at(v);
    if (s === undefined) continue;
    rows.push(
      Object.assign({}, s, {
        vsNativeLeastConn: ratio(s.requestsPerSecond, native?.requestsPerSecond),
        cpuVsNative: ratio(s.cpuUsPerRequest, native?.cpuUsPerRequest),
        cpuVsReference: ratio(s.cpuUsPerRequest, reference?.cpuUsPerRequest),
      }),
    );
  }
  return rows;
}

/** Issue 14's check on one target: each LLM-aware row's CPU per request over least-connections's. */
export function llmAwareRatios(rows: readonly TargetRow[]): { variant: string; cpuVsLeastConnections: number | null; within: boolean | null }[] {
  const base = rows.find((r) => r.variant === LLM_AWARE_TARGET.of);
  const out: { variant: string; cpuVsLeastConnections: number | null; within: boolean | null }[] = [];
  for (const name of LLM_AWARE_TARGET.rows) {
    const row = rows.find((r) => r.variant === name);
    if (row === undefined) continue;
    const r = ratio(row.cpuUsPerRequest, base?.cpuUsPerRequest);
    out.push({ variant: name, cpuVsLeastConnections: r, within: r === null ? null : r <= LLM_AWARE_TARGET.max });
  }
  return out;
}

/** The line under a target's table for llmAwareRatios, or null when it has nothing to say. */
export function llmAwareLine(rows: readonly TargetRow[]): string | null {
  const ratios = llmAwareRatios(rows);
  if (ratios.length === 0 || ratios.every((r) => r.cpuVsLeastConnections === null)) return null;
  const parts = ratios.map((r) => `${r.variant.replace(/^njs /, '')} ${r.cpuVsLeastConnections === null ? '—' : r.cpuVsLeastConnections.toFixed(2) + 'x'}${r.within === null ? '' : r.within ? ' (within)' : ' (over)'}`);
  return `CPU per request vs ${LLM_AWARE_TARGET.of} (issue 14: within ${LLM_AWARE_TARGET.max}x): ${parts.join(', ')}`;
}

const fixed = (value: number | null, digits: number, suffix = '') => (value === null || !Number.isFinite(value) ? '—' : value.toFixed(digits) + suffix);

export const TABLE_HEADER = ['variant', 'req/s', 'vs native least_conn', 'p50 ms', 'p99 ms', 'nginx CPU µs/req', 'CPU vs native', 'CPU vs hand-written LC', 'non-2xx'];

/** One target's rows as a Markdown table (a failed row shows "failed" and dashes; the reason goes below the table). */
export function renderTable(rows: readonly TargetRow[]): string {
  const cells = rows.map((r) =>
    r.runs === 0
      ? [r.variant, 'failed', '—', '—', '—', '—', '—', '—', '—']
      : [
          r.variant,
          fixed(r.requestsPerSecond, 0),
          fixed(r.vsNativeLeastConn, 2),
          fixed(r.p50Ms, 2),
          fixed(r.p99Ms, 2),
          fixed(r.cpuUsPerRequest, 1),
          fixed(r.cpuVsNative, 2, 'x'),
          fixed(r.cpuVsReference, 2, 'x'),
          String(r.non2xx),
        ],
  );
  const widths = TABLE_HEADER.map((h, c) => Math.max(h.length, ...cells.map((row) => row[c].length)));
  const line = (row: string[]) => '| ' + row.map((cell, c) => cell.padEnd(widths[c])).join(' | ') + ' |';
  return [line(TABLE_HEADER), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|'].concat(cells.map(line)).join('\n');
}

/** What did not work on a target: failed runs, non-2xx answers, module errors in nginx's log. */
export function problemLines(rows: readonly TargetRow[]): string[] {
  const out: string[] = [];
  for (const r of rows) {
    if (r.error !== null) out.push(`${r.variant}: ${r.failedRuns} of ${r.runs + r.failedRuns} runs failed: ${r.error}`);
    if (r.runs > 0 && r.non2xx > 0) out.push(`${r.variant}: ${r.non2xx} non-2xx answers of ${r.requests}`);
    if (r.errorLog !== null) out.push(`${r.variant}: nginx logged: ${r.errorLog}`);
  }
  return out;
}

/** One target's section of the report: its heading, table, the issue-14 line and its problems. */
export function renderTarget(report: TargetReport): string {
  const shared = report.generation === 'forky' ? ' (native rows: the same runs for every engine of this nginx)' : '';
  const out = [`### ${report.target}: nginx ${report.nginx} + njs ${report.njs}, js_engine ${report.engine}${shared}`, '', renderTable(report.rows)];
  const llm = llmAwareLine(report.rows);
  if (llm !== null) out.push('', llm);
  const problems = problemLines(report.rows);
  if (problems.length > 0) out.push('', 'Did not work:', ...problems.map((p) => '- ' + p));
  return out.join('\n');
}

export interface TargetReport {
  target: string;
  generation: Generation;
  engine: Engine;
  nginx: string;
  njs: string;
  rows: TargetRow[];
}

/** bench/results/gateway.json (schema 2: one entry per target, each with its own baselines). */
export interface GatewayResults {
  schema: 2;
  date: string;
  machine: { cpus: number };
  settings: { durationS: number; connections: number; workers: number; rounds: number; request: string; wrk: string };
  targets: (TargetReport & { llmAware: ReturnType<typeof llmAwareRatios> })[];
  skipped: { target: string; reason: string }[];
}

export function resultsDocument(input: Omit<GatewayResults, 'schema' | 'targets'> & { targets: TargetReport[] }): GatewayResults {
  return {
    schema: 2,
    date: input.date,
    machine: input.machine,
    settings: input.settings,
    targets: input.targets.map((t) => Object.assign({}, t, { llmAware: llmAwareRatios(t.rows) })),
    skipped: input.skipped,
  };
}
