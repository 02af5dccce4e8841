// The model suite (`npm run bench -- --models`): several models and LoRA adapters behind one
// endpoint, at 90% of the capacity calibrated in each run, four emulated replicas (h100, h100,
// a100, a100; vLLM --enable-lora with 4 GPU adapter slots each for the LoRA mixes).
//   multi-lora     chat turns to 24 adapters of one base model, Zipf popularity (s = 1): 8 more
//                  adapters than the fleet's 16 slots, so some are always loaded somewhere
//   multi-lora-16  the same over 16 adapters: the fleet's slots hold them all
//   multi-model    two base models on two replica sets, 60/40: only model routing avoids 404s
// Every (mix, seed) is one shootout run of its own, written to bench/results/models/<mix>-seed<N>/;
// each row is compared with least-connections of the same run (the LoRA targets of issue 13:
// adapter loads ≤ 0.3x and TTFT p50 ≤ 0.5x least-connections' for llm). "Max load / share": the
// largest replica's share of the requests over its weighted fair share, which must stay within
// models.adapter_balance_factor (3) however hot the most popular adapter is. A benchmark, not a
// test: it reports whether each target was met, it asserts nothing.

import type { Row, ShootoutResult } from './format';
import { WEIGHTS } from './main';
import { ratio, rowsOverRuns, runSuite, spread, spreadCell as cell, targetCell } from './suite';
import type { Spread, SuiteDefinition, SuiteOptions } from './suite';

export const MODELS_START = '<!-- models:start -->';
export const MODELS_END = '<!-- models:end -->';

const LORA_ROWS = ['nginx round robin', 'least-connections', 'least-connections + adapter filter', 'least-tokens', 'llm', '1 kong: llm'];
export const MODEL_SUITE: Record<string, string[]> = {
  'multi-lora': LORA_ROWS,
  'multi-lora-16': LORA_ROWS,
  // nginx's own round robin cannot route by model (half its requests are 404s): ours stands in.
  'multi-model': ['nginx round robin', 'round-robin', 'least-connections', 'least-tokens', 'llm', '1 kong: llm'],
};
export const MODEL_SEEDS = [42, 43];
export const MODEL_LEVEL = 0.9;
/** Longer than the other suites' 20 s: the first seconds load every adapter once, whatever the strategy. */
export const MODEL_TRACE_S = 30;
/** The load guard the targets check against (models.adapter_balance_factor's default). */
const LOAD_BOUND = 3;
const REFERENCE = 'least-connections';

export interface ModelSummaryRow {
  mix: string;
  row: string;
  runs: number;
  loadsPer1k: Spread | null;
  ttftP50Ms: Spread | null;
  ttftP99Ms: Spread | null;
  meanMs: Spread | null;
  p99Ms: Spread | null;
  goodput: Spread | null;
  /** Ratios to least-connections of the same run. */
  loadsRatio: Spread | null;
  ttftP50Ratio: Spread | null;
  /** The busiest replica's share of requests over its weighted fair share. */
  maxLoadShare: Spread | null;
  failed: number;
  target: { text: string; met: boolean } | null;
}

function loadsPer1k(row: Row): number | null {
  const loads = row.cache?.adapterLoads;
  const total = row.report.requests.total;
  return loads === undefined || total === 0 ? null : (loads * 1000) / total;
}

/**
 * The busiest replica's request share over its weighted fair share. The emulator names replica i
 * (from 1) `<profile>-<i>`, and WEIGHTS are in that order. null when a name does not say.
 */
export function maxLoadShare(row: Row): number | null {
  const replicas = row.report.replicas;
  if (replicas === undefined || replicas.length === 0) return null;
  const totalWeight = WEIGHTS.reduce((sum, weight) => sum + weight, 0);
  let max = 0;
  for (const replica of replicas) {
    const index = replica.replica === null ? -1 : Number(/-(\d+)$/.exec(replica.replica)?.[1]) - 1;
    if (!(index >= 0 && index < WEIGHTS.length)) return null;
    max = Math.max(max, replica.share / (WEIGHTS[index] / totalWeight));
  }
  return max;
}

function targetOf(mix: string, row: string, ratios: Array<{ loads: number | null; ttft: number | null }>, shares: Array<number | null>): ModelSummaryRow['target'] {
  if (!mix.startsWith('multi-lora') || row !== 'llm') return null;
  const met =
    ratios.length > 0 &&
    ratios.every((r) => r.loads !== null && r.loads <= 0.3 && r.ttft !== null && r.ttft <= 0.5) &&
    shares.every((share) => share !== null && share <= LOAD_BOUND);
  return { text: `loads ≤ 0.3x, TTFT p50 ≤ 0.5x ${REFERENCE}, max load ≤ ${LOAD_BOUND}x share`, met };
}

/** Per mix and row, over the runs of that mix: absolute values and ratios to least-connections. */
export function summarizeModels(results: ShootoutResult[]): ModelSummaryRow[] {
  return rowsOverRuns(results, () => REFERENCE).map(({ mix, name, found }) => {
    const ratios = found.map(({ row, reference }) => ({
      loads: reference === undefined ? null : ratio(loadsPer1k(row), loadsPer1k(reference)),
      ttft: ratio(row.report.metrics.ttft.p50Ms, reference?.report.metrics.ttft.p50Ms),
    }));
    const shares = found.map(({ row }) => maxLoadShare(row));
    const isReference = name === REFERENCE;
    return {
      mix,
      row: name,
      runs: found.length,
      loadsPer1k: spread(found.map(({ row }) => loadsPer1k(row))),
      ttftP50Ms: spread(found.map(({ row }) => row.report.metrics.ttft.p50Ms)),
      ttftP99Ms: spread(found.map(({ row }) => row.report.metrics.ttft.p99Ms)),
      meanMs: spread(found.map(({ row }) => row.report.metrics.e2e.meanMs)),
      p99Ms: spread(found.map(({ row }) => row.report.metrics.e2e.p99Ms)),
      goodput: spread(found.map(({ row }) => row.report.goodput?.share ?? null)),
      loadsRatio: isReference ? null : spread(ratios.map((r) => r.loads)),
      ttftP50Ratio: isReference ? null : spread(ratios.map((r) => r.ttft)),
      maxLoadShare: spread(shares),
      failed: found.reduce((sum, { row }) => sum + row.report.requests.failed, 0),
      target: targetOf(mix, name, ratios, shares),
    };
  });
}

/** The table lines (Markdown). */
export function renderModelsTable(rows: ModelSummaryRow[]): string[] {
  const lines = [
    '| mix | row | runs | adapter loads /1k | loads vs LC | TTFT p50 ms | TTFT p50 vs LC | TTFT p99 ms | mean ms | p99 ms | goodput | max load / share | failed | target |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of rows) {
    const target = targetCell(r.target);
    lines.push(
      `| ${r.mix} | ${r.row} | ${r.runs} | ${cell(r.loadsPer1k, 0)} | ${cell(r.loadsRatio, 2)} | ${cell(r.ttftP50Ms, 0)} | ${cell(r.ttftP50Ratio, 2)} | ${cell(r.ttftP99Ms, 0)} | ${cell(r.meanMs, 0)} | ${cell(r.p99Ms, 0)} | ${cell(r.goodput, 0, true)} | ${cell(r.maxLoadShare, 2)} | ${r.failed} | ${target} |`,
    );
  }
  return lines;
}

/** The BENCHMARKS.md section, markers included. */
export function renderModelsSection(results: ShootoutResult[], rows: ModelSummaryRow[], elapsedS: number): string {
  const first = results[0];
  const seeds = results.map((r) => r.settings.seed).filter((s, i, all) => all.indexOf(s) === i);
  const capacities = results.map((r) => `${r.settings.mix} seed ${r.settings.seed}: ${r.calibration.capacityPerS.toFixed(1)} req/s`);
  return [
    MODELS_START,
    '## Several models and LoRA adapters',
    '',
    `\`npm run bench -- --models\` (${first.date.slice(0, 10)}, ${elapsedS} s; ${first.machine.cpus} cores, nginx ${first.machine.nginx} + njs ${first.machine.njs}, Node ${first.machine.node}).`,
    '',
    `Four emulated replicas (${first.settings.replicas.join(', ')}) at ${Math.round(MODEL_LEVEL * 100)}% of the capacity calibrated in each run, ` +
      `${first.settings.traceS} s traces, seeds ${seeds.join(', ')}; values are the mean over the runs, ranges in brackets. ` +
      `multi-lora: chat turns to 24 LoRA adapters of one base model, Zipf popularity (s = 1: the most popular takes ~26%), every replica ` +
      `vLLM --enable-lora with 4 GPU adapter slots (LRU; a missing adapter costs its batch a 50 ms load, scaled); multi-lora-16: the same over 16 ` +
      `adapters; multi-model: two base models on two replica sets (60/40). Adapter loads: the replicas' own count of adapters loaded into a ` +
      `slot, per 1,000 requests. "vs LC": ratio to least-connections of the same run. Max load / share: the busiest replica's share of the ` +
      `requests over its weighted fair share. Rows without a gateway name are nginx + njs; "1 kong: llm" is the real plugin server behind the Kong stand-in.`,
    '',
    `Capacity per run: ${capacities.join('; ')}.`,
    '',
    ...renderModelsTable(rows),
    MODELS_END,
    '',
  ].join('\n');
}

export const MODELS_SUITE: SuiteDefinition<ModelSummaryRow> = {
  name: 'models',
  rows: MODEL_SUITE,
  seeds: MODEL_SEEDS,
  traceS: MODEL_TRACE_S,
  level: MODEL_LEVEL,
  markers: { start: MODELS_START, end: MODELS_END },
  summarize: summarizeModels,
  table: renderModelsTable,
  section: renderModelsSection,
};

export function runModelSuite(options: SuiteOptions): Promise<ModelSummaryRow[]> {
  return runSuite(MODELS_SUITE, options);
}
