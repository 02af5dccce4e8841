// The shootout's text: the per-level table (printed, and the BENCHMARKS.md section), in the seed's
// form (SUMMARY §9) with the columns an LLM benchmark needs on top. Pure: data in, text out.

import fs from 'node:fs';
import type { Report } from '../../testbed/loadgen/index';
import type { CacheStats, Calibration, Mode } from './main';
import { ORACLE_ROW, ORACLE_TARGET, judgeAgainstOracle, oracleRowOf, oracleShares, renderVerdict } from './oracle-shares';

export interface Row {
  strategy: string;
  report: Report;
  /** njs exceptions in nginx's error log, or the Kong plugin's errors (first few); empty for the native rows. */
  moduleErrors: string[];
  /** Prefix-cache hits the replicas reported for this row (null when their /metrics could not be read). */
  cache?: CacheStats | null;
  /** What happened during the run besides the trace (the redis-restart rows' outage). */
  notes?: string[];
}

export interface LevelResult {
  /** Fraction of the calibrated capacity offered. */
  level: number;
  ratePerS: number;
  requests: number;
  rows: Row[];
}

export interface ShootoutResult {
  date: string;
  mode: Mode;
  machine: { cpus: number; cpuModel: string; nginx: string; njs: string; node: string };
  settings: {
    replicas: string[];
    weights: number[];
    timeScale: number;
    seed: number;
    mix: string;
    arrivals: string;
    sessions: number;
    traceS: number;
    levels: number[];
    rows: string[];
    slo: { ttftMs?: number; tpotMs?: number; e2eMs?: number };
    rowTimeoutMs: number;
    reference: string;
  };
  calibration: Calibration;
  levels: LevelResult[];
  elapsedS: number;
}

export const SECTION_START = '<!-- shootout:start -->';
export const SECTION_END = '<!-- shootout:end -->';

/** The seed's table (SUMMARY §9: GPT-J 6B, 4 replicas, mixed requests), for the ratios. */
export const SEED_TABLE = [
  { strategy: 'round robin', meanMs: 250, p99Ms: 450, perS: 80 },
  { strategy: 'least connections', meanMs: 180, p99Ms: 320, perS: 95 },
  { strategy: 'response-time aware', meanMs: 170, p99Ms: 300, perS: 100 },
];

function ms(value: number | null): string {
  if (value === null) return '-';
  return value < 100 ? value.toFixed(1) : value.toFixed(0);
}

function ratio(value: number | null, reference: number | null): string {
  if (value === null || reference === null || reference === 0) return '-';
  return (value / reference).toFixed(2);
}

function errorCount(report: Report): number {
  return report.requests.failed;
}

/** The reference row of a level: nginx round robin when it ran, else llm-balancer's round-robin, else the first. */
export function referenceRow(level: LevelResult): Row {
  return level.rows.find((row) => row.strategy === 'nginx round robin') ?? level.rows.find((row) => row.strategy === 'round-robin') ?? level.rows[0];
}

function share(value: number | null): string {
  return value === null ? '-' : value.toFixed(2);
}

/** Markdown table lines of one level (with the shares of the oracle and the verdict when the oracle row ran). */
export function renderTable(result: ShootoutResult, level: LevelResult): string[] {
  const reference = referenceRow(level).report;
  const oracle = oracleRowOf(level);
  // LoRA mixes: the replicas' adapter loads per 1,000 requests (each load stalls a batch).
  const adapters = level.rows.some((row) => (row.cache?.adapterLoads ?? 0) > 0);
  const header = ['strategy', 'mean ms', 'p99 ms', 'TTFT p50', 'TTFT p99', 'req/s', 'out tok/s', 'errors', 'goodput', 'cache hits']
    .concat(oracle === undefined ? [] : ['goodput vs oracle', 'hits vs oracle', 'TTFT p50 oracle/row'])
    .concat(['mean vs RR', 'p99 vs RR'], adapters ? ['adapter loads /1k'] : []);
  const rows = level.rows.map((row) => {
    const r = row.report;
    const loads = adapters ? [row.cache?.adapterLoads === undefined || r.requests.total === 0 ? '-' : ((row.cache.adapterLoads * 1000) / r.requests.total).toFixed(0)] : [];
    const shares = oracle === undefined ? null : oracleShares(row, oracle);
    return [
      row.strategy,
      ms(r.metrics.e2e.meanMs),
      ms(r.metrics.e2e.p99Ms),
      ms(r.metrics.ttft.p50Ms),
      ms(r.metrics.ttft.p99Ms),
      r.throughput.completedPerS.toFixed(1),
      r.throughput.outputTokensPerS.toFixed(0),
      String(errorCount(r)),
      r.goodput === null ? '-' : (r.goodput.share * 100).toFixed(0) + '%',
      row.cache === undefined || row.cache === null || row.cache.hitRate === null ? '-' : (row.cache.hitRate * 100).toFixed(0) + '%',
    ]
      .concat(shares === null ? [] : [share(shares.goodput), share(shares.hitRate), share(shares.ttftP50)])
      .concat([ratio(r.metrics.e2e.meanMs, reference.metrics.e2e.meanMs), ratio(r.metrics.e2e.p99Ms, reference.metrics.e2e.p99Ms)], loads);
  });
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => row[column].length)));
  const line = (cells: string[]) => '| ' + cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]) : cell.padStart(widths[column]))).join(' | ') + ' |';
  const rule = '|' + widths.map((width, column) => (column === 0 ? '-'.repeat(width + 2) : '-'.repeat(width + 1) + ':')).join('|') + '|';
  return [
    `**${Math.round(level.level * 100)}% of capacity** — ${level.ratePerS} req/s offered, ${level.requests} requests, ${result.settings.traceS} s trace`,
    '',
    line(header),
    rule,
    ...rows.map(line),
  ].concat(oracle === undefined ? [] : ['', renderVerdict(judgeAgainstOracle(level.rows.map((row) => ({ row: row.strategy, shares: oracleShares(row, oracle) }))))]);
}

/** The BENCHMARKS.md section, markers included. */
export function renderSection(result: ShootoutResult): string {
  const s = result.settings;
  const c = result.calibration;
  const seedRr = SEED_TABLE[0];
  const out: string[] = [
    SECTION_START,
    '## Strategy shootout',
    '',
    `\`npm run bench\` (${result.mode} run, ${result.date.slice(0, 10)}, ${result.elapsedS} s; ${result.machine.cpus} cores, nginx ${result.machine.nginx} + njs ${result.machine.njs}, Node ${result.machine.node}).`,
    '',
    `The seed's comparison (SUMMARY §9), reproduced: one seeded trace (mix \`${s.mix}\`, ${s.arrivals} arrivals, ` +
      `${s.sessions} users as \`x-session-id\`, seed ${s.seed}) replayed through every row, each with fresh ` +
      `emulated replicas (${s.replicas.join(', ')}; weights ${s.weights.join(', ')}) and a fresh gateway: real nginx for the ` +
      `\`nginx …\` rows (its own balancers) and the llm-balancer njs rows; for the \`kong …\` rows the llm-balancer Kong plugin ` +
      `in the real kong-js-pluginserver, behind a streaming Node proxy that plays Kong's nginx (Kong itself cannot run here; ` +
      `testbed/kong-gateway/). The emulator runs at ` +
      `timeScale ${s.timeScale} (every emulated duration × ${s.timeScale}), so milliseconds here are ${s.timeScale}× what the ` +
      `profiles' cards would show. Latency is end-to-end (request sent to \`[DONE]\`) of completed requests; TTFT is to the first ` +
      `content chunk. Cache hits: prefix-cache hit tokens / queried prompt tokens, summed over the replicas' own \`/metrics\`. Goodput: share of requests with TTFT ≤ ${s.slo.ttftMs} ms and TPOT ≤ ${s.slo.tpotMs} ms. Ratios are to nginx's own round robin. ` +
      `req/s and out tok/s divide by the whole window, trace start to the last completion (vLLM's definition): with short traces ` +
      `the drain of the long generations weighs in, so they sit below the offered rate.`,
    '',
  ];
  if (s.rows.includes(ORACLE_ROW)) {
    out.push(
      `The \`${ORACLE_ROW}\` row is the yardstick (issue 16), not a gateway: the trace goes straight to a router inside the emulator ` +
        `process (testbed/oracle/router.ts; no nginx or Kong hop) that reads each replica's true state — the exact prefix it caches, ` +
        `its KV blocks in use and waiting — and routes by Dynamo's cost (prefill blocks not cached there + KV blocks carried, per weight). ` +
        `The "vs oracle" columns are each row's share of it: goodput and cache hits row ÷ oracle, TTFT p50 oracle ÷ row, so 1.00 is ` +
        `as good as the oracle, below is worse, above is better. Issue 16's target: the best shipped row ≥ ${ORACLE_TARGET}x on goodput and hits.`,
      '',
    );
  }
  out.push(
    `Capacity: ${c.capacityPerS.toFixed(1)} req/s — ${c.method} (offered ${c.offeredPerS} req/s for ${c.durationS} s).`,
    '',
  );
  for (const level of result.levels) {
    out.push(...renderTable(result, level), '');
  }
  out.push(
    'The seed\'s numbers (GPT-J 6B, 4 replicas), as ratios to its round robin: ' +
      SEED_TABLE.map((row) => `${row.strategy} ${(row.meanMs / seedRr.meanMs).toFixed(2)} mean / ${(row.p99Ms / seedRr.p99Ms).toFixed(2)} p99 / ${row.perS} req/s`).join('; ') +
      '.',
    '',
    '![latency per strategy](bench/results/shootout.svg)',
    SECTION_END,
    '',
  );
  return out.join('\n');
}

const INTRO = `# Benchmarks

Every number here comes from a script in \`bench/\` run on the machine named in its section; each
script prints its table and writes its results file in \`bench/results/\`. Comparisons run both sides
in the same run. Sections between markers are rewritten by their script.
`;

/** Replaces (or appends) the section between the markers in `file`, creating it with an intro if missing. */
export function updateBenchmarksFile(file: string, section: string, startMarker = SECTION_START, endMarker = SECTION_END): void {
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : INTRO;
  const start = text.indexOf(startMarker);
  const end = text.indexOf(endMarker);
  const body = section.trimEnd();
  const next =
    start >= 0 && end > start ? text.slice(0, start) + body + text.slice(end + endMarker.length) : text.trimEnd() + '\n\n' + body + '\n';
  fs.writeFileSync(file, next);
}
