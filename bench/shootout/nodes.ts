// The multi-node suite (`npm run bench -- --nodes`): 1, 2 and 4 gateway nodes in front of the same
// four replicas, the trace split across them (bench/shootout/main.ts, node rows), for nginx nodes
// and Kong nodes without and with kong.redis, over the mixes `fleet-prefixes` (prefix caches decide)
// and `mixed` (load decides) and several seeds, at 90% of the calibrated capacity.
//
// Every (mix, seed) is one shootout run of its own (its own calibration), written to
// bench/results/nodes/<mix>-seed<N>/; rows of different runs are never compared directly. Each
// multi-node row is compared with the ONE-node row of the same gateway and strategy in the same run
// (`4 kong+redis: llm` with `1 kong: llm`), and the table gives the mean and range of those ratios
// over the seeds. Targets (issue 12): with 4 nodes the best prefix-aware strategy keeps ≥ 0.95x the
// one node's prefix-cache hit rate and ≤ 1.1x its TTFT p50, on both gateways; least-connections over
// 4 Kong nodes with Redis within 5% of one node on `mixed` (mean e2e); a Redis restart mid-run fails
// no request. A benchmark, not a test: it reports whether each target was met, it asserts nothing.

import type { ShootoutResult } from './format';
import { parseNodeRow } from './main';
import { ratio, rowsOverRuns, runSuite, spread, spreadCell as cell, targetCell } from './suite';
import type { Spread, SuiteDefinition, SuiteOptions } from './suite';

export const NODES_START = '<!-- nodes:start -->';
export const NODES_END = '<!-- nodes:end -->';

/**
 * The rows of each mix. The prefix-aware strategies (least-tokens' uncached-prompt discount,
 * prefix-affinity, llm) all consult the prefix table and the rendezvous placement; which is best
 * depends on the mix (BENCHMARKS.md: least-tokens on fleet-prefixes), so each gets its 1 vs 4 rows.
 */
export const NODE_SUITE: Record<string, string[]> = {
  'fleet-prefixes': [
    '1 nginx: llm', '2 nginx: llm', '4 nginx: llm',
    '1 kong: llm', '2 kong: llm', '4 kong: llm',
    '2 kong+redis: llm', '4 kong+redis: llm', '4 kong+redis (redis restart): llm',
    '1 nginx: prefix-affinity', '4 nginx: prefix-affinity', '1 kong: prefix-affinity', '4 kong+redis: prefix-affinity',
    '1 nginx: least-tokens', '4 nginx: least-tokens', '1 kong: least-tokens', '4 kong+redis: least-tokens',
  ],
  mixed: [
    '1 nginx: llm', '4 nginx: llm',
    '1 kong: llm', '4 kong: llm', '4 kong+redis: llm',
    '1 kong: least-connections', '2 kong: least-connections', '4 kong: least-connections',
    '4 kong+redis: least-connections', '4 kong+redis (redis restart): least-connections',
  ],
};
export const NODE_SEEDS = [42, 43];
export const NODE_LEVEL = 0.9;
export const NODE_TRACE_S = 20;
const PREFIX_AWARE = ['llm', 'prefix-affinity', 'least-tokens'];

/** The one-node row a node row is compared with: same gateway (Kong for kong+redis), same strategy. */
export function oneNodeRow(row: string): string | null {
  const parsed = parseNodeRow(row);
  if (parsed === null) return null;
  return `1 ${parsed.gateway === 'nginx' ? 'nginx' : 'kong'}: ${parsed.strategy}`;
}

export interface NodeSummaryRow {
  mix: string;
  row: string;
  nodes: number;
  runs: number;
  hitRate: Spread | null;
  ttftP50Ms: Spread | null;
  /** Ratios to the one-node row of the same run, over the runs. */
  hitRatio: Spread | null;
  ttftP50Ratio: Spread | null;
  meanRatio: Spread | null;
  failed: number;
  notes: string[];
  /** The target for this row, and whether every run met it; null when the row has none. */
  target: { text: string; met: boolean } | null;
}

/** The target of a row (null: none); `ratios` are per run. */
function targetOf(mix: string, row: string, ratios: Array<{ hit: number | null; ttft: number | null; mean: number | null }>, failed: number): NodeSummaryRow['target'] {
  const parsed = parseNodeRow(row);
  if (parsed === null || parsed.nodes === 1) return null;
  if (parsed.redisRestart) return { text: 'no failed request', met: failed === 0 };
  if (parsed.nodes !== 4) return null;
  if (PREFIX_AWARE.includes(parsed.strategy)) {
    // A mix whose one-node rows hit no cache (mixed: no shared prefixes) has no hit rate to keep.
    if (ratios.every((r) => r.hit === null)) return { text: 'TTFT p50 ≤ 1.1x (no cache hits to keep)', met: ratios.length > 0 && ratios.every((r) => r.ttft !== null && r.ttft <= 1.1) };
    const met = ratios.length > 0 && ratios.every((r) => r.hit !== null && r.hit >= 0.95 && r.ttft !== null && r.ttft <= 1.1);
    return { text: 'hits ≥ 0.95x, TTFT p50 ≤ 1.1x', met };
  }
  if (parsed.strategy === 'least-connections' && parsed.gateway === 'kong+redis' && mix === 'mixed') {
    return { text: 'mean e2e ≤ 1.05x', met: ratios.length > 0 && ratios.every((r) => r.mean !== null && r.mean <= 1.05) };
  }
  return null;
}

/** Per mix and row, over the runs of that mix: absolute values and ratios to the one-node row. */
export function summarizeNodes(results: ShootoutResult[]): NodeSummaryRow[] {
  return rowsOverRuns(results, oneNodeRow).map(({ mix, name, found }) => {
    const parsed = parseNodeRow(name);
    const ratios = found.map(({ row, reference }) => ({
      hit: ratio(row.cache?.hitRate, reference?.cache?.hitRate),
      ttft: ratio(row.report.metrics.ttft.p50Ms, reference?.report.metrics.ttft.p50Ms),
      mean: ratio(row.report.metrics.e2e.meanMs, reference?.report.metrics.e2e.meanMs),
    }));
    const failed = found.reduce((sum, { row }) => sum + row.report.requests.failed, 0);
    return {
      mix,
      row: name,
      nodes: parsed === null ? 1 : parsed.nodes,
      runs: found.length,
      hitRate: spread(found.map(({ row }) => row.cache?.hitRate ?? null)),
      ttftP50Ms: spread(found.map(({ row }) => row.report.metrics.ttft.p50Ms)),
      hitRatio: parsed !== null && parsed.nodes > 1 ? spread(ratios.map((r) => r.hit)) : null,
      ttftP50Ratio: parsed !== null && parsed.nodes > 1 ? spread(ratios.map((r) => r.ttft)) : null,
      meanRatio: parsed !== null && parsed.nodes > 1 ? spread(ratios.map((r) => r.mean)) : null,
      failed,
      notes: found.flatMap(({ row }) => row.notes ?? []).filter((note, i, all) => all.indexOf(note) === i),
      target: targetOf(mix, name, ratios, failed),
    };
  });
}

/** The table lines (Markdown). */
export function renderNodesTable(rows: NodeSummaryRow[]): string[] {
  const lines = [
    '| mix | row | runs | cache hits | hits vs 1 node | TTFT p50 ms | TTFT p50 vs 1 node | mean e2e vs 1 node | failed | target |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of rows) {
    const target = targetCell(r.target);
    lines.push(
      `| ${r.mix} | ${r.row} | ${r.runs} | ${cell(r.hitRate, 0, true)} | ${cell(r.hitRatio, 2)} | ${cell(r.ttftP50Ms, 0)} | ${cell(r.ttftP50Ratio, 2)} | ${cell(r.meanRatio, 2)} | ${r.failed} | ${target} |`,
    );
  }
  return lines;
}

/** The BENCHMARKS.md section, markers included. */
export function renderNodesSection(results: ShootoutResult[], rows: NodeSummaryRow[], elapsedS: number): string {
  const first = results[0];
  const seeds = results.map((r) => r.settings.seed).filter((s, i, all) => all.indexOf(s) === i);
  const capacities = results.map((r) => `${r.settings.mix} seed ${r.settings.seed}: ${r.calibration.capacityPerS.toFixed(1)} req/s`);
  return [
    NODES_START,
    '## Several gateway nodes',
    '',
    `\`npm run bench -- --nodes\` (${first.date.slice(0, 10)}, ${elapsedS} s; ${first.machine.cpus} cores, nginx ${first.machine.nginx} + njs ${first.machine.njs}, Node ${first.machine.node}).`,
    '',
    `1, 2 and 4 gateway nodes in front of the same four emulated replicas (${first.settings.replicas.join(', ')}), one seeded trace ` +
      `split across them (request i to node i mod N: a conversation's turns arrive at different nodes, as behind a plain L4 balancer), ` +
      `at ${Math.round(NODE_LEVEL * 100)}% of the capacity calibrated in each run, ${first.settings.traceS} s traces, seeds ${seeds.join(', ')}. ` +
      `nginx rows: real nginx + njs, one shared dict per node. kong rows: one real kong-js-pluginserver per node behind the Kong stand-in; ` +
      `kong+redis: the same nodes sharing one real redis-server (kong.redis). Each multi-node row is compared with the one-node row of the ` +
      `same gateway and strategy IN THE SAME RUN (kong+redis with one Kong node); values are the mean over the runs, ranges in brackets. ` +
      `Cache hits: prefix-cache hit tokens / prompt tokens from the replicas' own /metrics. ` +
      `All nodes share this machine's 2 cores with the replicas and the load generator: 4 Kong nodes are 8 extra processes, so ` +
      `multi-node Kong rows also measure CPU contention that separate machines would not have.`,
    '',
    `Capacity per run: ${capacities.join('; ')}.`,
    '',
    ...renderNodesTable(rows),
    NODES_END,
    '',
  ].join('\n');
}

export const NODES_SUITE: SuiteDefinition<NodeSummaryRow> = {
  name: 'nodes',
  rows: NODE_SUITE,
  seeds: NODE_SEEDS,
  traceS: NODE_TRACE_S,
  level: NODE_LEVEL,
  markers: { start: NODES_START, end: NODES_END },
  summarize: summarizeNodes,
  table: renderNodesTable,
  section: renderNodesSection,
};

export function runNodeSuite(options: SuiteOptions): Promise<NodeSummaryRow[]> {
  return runSuite(NODES_SUITE, options);
}
