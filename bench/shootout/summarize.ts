// Several shootout runs (other seeds, mixes, lengths) in one table: per mix and row, the median
// and the range over the runs of each row's ratios to nginx round robin IN ITS OWN RUN (rows of
// different runs are never compared directly: each run calibrates its own load), plus the median
// prefix-cache hit rate and its ratio to round robin's, and how unevenly the replicas' peak
// loads were spread (per-replica max load). Runs with the `oracle` row also give every row's shares
// of the oracle's goodput, hit rate and TTFT p50 in its own run (oracle-shares.ts), and per mix
// whether the best shipped row reaches issue 16's target on the medians.
//   node --import tsx bench/shootout/summarize.ts bench/results/runs/<dir> ... [--level 0.9] [--json out.json]
// Prints a Markdown table. A benchmark summary, not a test: nothing asserts a speed.

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { LevelResult, Row, ShootoutResult } from './format';
import { judgeAgainstOracle, oracleRowOf, oracleShares, renderVerdict } from './oracle-shares';

export const REFERENCE_ROW = 'nginx round robin';

export interface RowRatios {
  mean: number | null;
  p99: number | null;
  ttftP50: number | null;
  goodput: number | null;
  hitRate: number | null;
  /** This row's hit rate over the reference's. */
  hitRatio: number | null;
  /** The busiest replica's peak in flight over the mean of the replicas' peaks (1 = even; the weights make ~1.1 fair). */
  peakSpread: number | null;
  /** Shares of the oracle row of the same run (oracle-shares.ts); null without one. */
  goodputVsOracle: number | null;
  hitsVsOracle: number | null;
  /** The oracle's TTFT p50 over this row's. */
  ttftVsOracle: number | null;
}

function peakSpread(row: Row): number | null {
  const peaks = (row.report.replicas ?? []).filter((share) => share.replica !== null).map((share) => share.peakInFlight);
  if (peaks.length === 0 || peaks.some((peak) => typeof peak !== 'number')) return null;
  const mean = peaks.reduce((sum, peak) => sum + peak, 0) / peaks.length;
  return mean > 0 ? Math.max(...peaks) / mean : null;
}

function ratio(value: number | null | undefined, reference: number | null | undefined): number | null {
  if (value === null || value === undefined || reference === null || reference === undefined || !(reference > 0)) return null;
  return value / reference;
}

/** One level of one run: every row's ratios to the reference row of the same level. */
export function levelRatios(level: LevelResult): Record<string, RowRatios> | null {
  const reference = level.rows.find((row) => row.strategy === REFERENCE_ROW);
  if (reference === undefined) return null;
  const oracle = oracleRowOf(level);
  const out: Record<string, RowRatios> = {};
  const metric = (row: Row) => row.report.metrics;
  for (const row of level.rows) {
    const hit = row.cache?.hitRate ?? null;
    const shares = oracle === undefined ? null : oracleShares(row, oracle);
    out[row.strategy] = {
      mean: ratio(metric(row).e2e.meanMs, metric(reference).e2e.meanMs),
      p99: ratio(metric(row).e2e.p99Ms, metric(reference).e2e.p99Ms),
      ttftP50: ratio(metric(row).ttft.p50Ms, metric(reference).ttft.p50Ms),
      goodput: row.report.goodput === null ? null : row.report.goodput.share,
      hitRate: hit,
      hitRatio: ratio(hit, reference.cache?.hitRate ?? null),
      peakSpread: peakSpread(row),
      goodputVsOracle: shares?.goodput ?? null,
      hitsVsOracle: shares?.hitRate ?? null,
      ttftVsOracle: shares?.ttftP50 ?? null,
    };
  }
  return out;
}

export function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = values.slice().sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export interface Summary {
  mix: string;
  row: string;
  runs: number;
  /** Per field: median, min, max over the runs that had it. */
  fields: Record<keyof RowRatios, { median: number | null; min: number | null; max: number | null }>;
}

const FIELDS: Array<keyof RowRatios> = ['mean', 'p99', 'ttftP50', 'goodput', 'hitRate', 'hitRatio', 'peakSpread', 'goodputVsOracle', 'hitsVsOracle', 'ttftVsOracle'];

/** Groups runs by mix, then rows in first-seen order. */
export function summarize(results: ShootoutResult[], level: number): Summary[] {
  const byKey = new Map<string, { mix: string; row: string; values: RowRatios[] }>();
  for (const result of results) {
    const found = result.levels.find((l) => Math.abs(l.level - level) < 1e-9);
    if (found === undefined) continue;
    const ratios = levelRatios(found);
    if (ratios === null) continue;
    for (const row of Object.keys(ratios)) {
      const key = result.settings.mix + '\u0000' + row;
      if (!byKey.has(key)) byKey.set(key, { mix: result.settings.mix, row, values: [] });
      (byKey.get(key) as { values: RowRatios[] }).values.push(ratios[row]);
    }
  }
  const out: Summary[] = [];
  for (const group of byKey.values()) {
    const fields = {} as Summary['fields'];
    for (const field of FIELDS) {
      const values = group.values.map((v) => v[field]).filter((v): v is number => v !== null);
      fields[field] = { median: median(values), min: values.length ? Math.min(...values) : null, max: values.length ? Math.max(...values) : null };
    }
    out.push({ mix: group.mix, row: group.row, runs: group.values.length, fields });
  }
  return out;
}

function cell(field: { median: number | null; min: number | null; max: number | null }, percent = false): string {
  if (field.median === null) return '-';
  const f = (v: number) => (percent ? `${Math.round(v * 100)}%` : v.toFixed(2));
  if (field.min === null || field.max === null || field.min === field.max) return f(field.median);
  return `${f(field.median)} (${f(field.min)}–${f(field.max)})`;
}

/** Per mix whose runs had the oracle row: the best shipped row on the medians of its shares, and the verdict. */
export function oracleVerdicts(summaries: Summary[]): Array<{ mix: string; line: string }> {
  const out: Array<{ mix: string; line: string }> = [];
  const mixes = [...new Set(summaries.map((s) => s.mix))];
  for (const mix of mixes) {
    const rows = summaries.filter((s) => s.mix === mix && s.fields.goodputVsOracle.median !== null);
    if (rows.length === 0) continue;
    const verdict = judgeAgainstOracle(
      rows.map((s) => ({ row: s.row, shares: { goodput: s.fields.goodputVsOracle.median, hitRate: s.fields.hitsVsOracle.median, ttftP50: s.fields.ttftVsOracle.median } })),
    );
    out.push({ mix, line: renderVerdict(verdict) });
  }
  return out;
}

export function renderSummary(summaries: Summary[]): string {
  // The oracle's columns only when some run had the oracle row.
  const withOracle = summaries.some((s) => s.fields.goodputVsOracle.median !== null);
  const lines = [
    '| mix | row | runs | mean | p99 | TTFT p50 | goodput | cache hits | hits vs RR | peak in flight, busiest / mean |' +
      (withOracle ? ' goodput vs oracle | hits vs oracle | TTFT p50 oracle/row |' : ''),
    '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|' + (withOracle ? '--:|--:|--:|' : ''),
  ];
  for (const s of summaries) {
    lines.push(
      `| ${s.mix} | ${s.row} | ${s.runs} | ${cell(s.fields.mean)} | ${cell(s.fields.p99)} | ${cell(s.fields.ttftP50)} | ` +
        `${cell(s.fields.goodput, true)} | ${cell(s.fields.hitRate, true)} | ${cell(s.fields.hitRatio)} | ${cell(s.fields.peakSpread)} |` +
        (withOracle ? ` ${cell(s.fields.goodputVsOracle)} | ${cell(s.fields.hitsVsOracle)} | ${cell(s.fields.ttftVsOracle)} |` : ''),
    );
  }
  const verdicts = oracleVerdicts(summaries);
  if (verdicts.length > 0) lines.push('', ...verdicts.map((v) => `- ${v.mix} (medians over the runs): ${v.line}`));
  return lines.join('\n') + '\n';
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { level: { type: 'string' }, json: { type: 'string' } } });
  if (positionals.length === 0) {
    console.error('usage: node --import tsx bench/shootout/summarize.ts <run dir or shootout.json> ... [--level 0.9] [--json out.json]');
    process.exitCode = 2;
    return;
  }
  const level = values.level === undefined ? 0.9 : Number(values.level);
  const results = positionals.map((p) => {
    const file = fs.statSync(p).isDirectory() ? path.join(p, 'shootout.json') : p;
    return JSON.parse(fs.readFileSync(file, 'utf8')) as ShootoutResult;
  });
  const summaries = summarize(results, level);
  process.stdout.write(renderSummary(summaries));
  if (values.json !== undefined) fs.writeFileSync(values.json, JSON.stringify({ level, runs: positionals, summaries }, null, 2) + '\n');
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  main(process.argv.slice(2)).catch((error) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
}
