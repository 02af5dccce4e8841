// `npm run bench:capacity`: how much traffic the same replicas carry while meeting the SLO, per
// strategy — the number a team buying GPUs asks for (llm-d and SGLang report their wins this way).
//
// For each mix and seed: capacity is calibrated as the shootout does (main.ts calibrate()), then,
// per row, a bisection over the offered rate finds the highest rate at which goodput (TTFT and TPOT
// within the shootout's SLO, failures charged) stays at or above the target over a trace of
// `traceS` seconds. The target is GOODPUT_TARGET of what idle replicas achieve (nginx round robin
// at a tenth of capacity, measured per mix and seed): under the shootout's SLO some requests miss
// at any load — `mixed`'s 4000-token prompts prefill past the TTFT bound on the slower a100
// replicas — so 90% of all requests is out of reach for every balancer, and the goodput lost to
// LOAD is what routing can change. Each probe is a fresh stack (emulated replicas + gateway) replaying the seeded
// trace at that rate. Reported per row: the capacity in req/s per seed, the median, and the median
// of the per-seed ratios to nginx round robin's capacity, and, with the `oracle` row (the yardstick
// router reading the replicas' true state, no gateway hop), to the oracle's. Writes <out>/capacity.json and .md.
// What a short trace can show: a rate a little above capacity builds its queues slowly, so a
// trace of 20 s finds the rate whose queues stay short for 20 s; longer traces find a little less.
// A benchmark, not a test: nothing here asserts a speed.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildReport, traceInfo } from '../../testbed/loadgen/index';
import { REPO_ROOT } from '../../testbed/lib/nginx-env';
import { MODEL_LIST_WARMUP_MS, ROW_TIMEOUT_MS, TIME_SCALE, calibrate, executeSplit, namesModels, scaledSlo, traceWithSessions, withStack } from './main';
import type { Mode } from './main';
import { ORACLE_ROW } from './oracle-shares';
import { median } from './summarize';

/** The share of what idle replicas achieve that must still meet the SLO at a feasible rate. */
export const GOODPUT_TARGET = 0.9;

/** The rate (fraction of calibrated capacity) at which the idle goodput is measured, over this many traces' length. */
const IDLE_LOAD = 0.1;
const IDLE_TRACES = 3;

export interface CapacityOptions {
  mode: Mode;
  mixes: string[];
  seeds: number[];
  rows: string[];
  traceS: number;
  /** Bisection steps after the bracket (each halves the uncertainty). */
  steps: number;
  outDir: string;
  log?: (line: string) => void;
}

export interface CapacityProbe {
  ratePerS: number;
  goodput: number;
  feasible: boolean;
}

export interface RowCapacity {
  mix: string;
  seed: number;
  row: string;
  /** The highest feasible rate found (req/s); 0 when even the bracket's low end failed. */
  capacityPerS: number;
  /** Where the search stopped: within (low, high) req/s; high is null when the bracket's top was feasible. */
  bracket: [number, number | null];
  /** Goodput share idle replicas achieve (nginx round robin at IDLE_LOAD), and the target it sets. */
  idleGoodput: number;
  target: number;
  probes: CapacityProbe[];
}

/** What `npm run bench:capacity` runs (the first row is the reference of the ratios). */
export const CAPACITY_DEFAULTS: Record<'full' | 'smoke', { mixes: string[]; seeds: number[]; rows: string[]; traceS: number; steps: number }> = {
  // 2 mixes x 2 seeds x 5 rows x (2 + 4) probes of ~30 s: ~80 minutes on 2 cores (65 measured with 4 rows).
  full: { mixes: ['mixed', 'fleet-prefixes'], seeds: [42, 43], rows: ['nginx round robin', 'least-connections', 'llm', 'prefix-affinity', ORACLE_ROW], traceS: 20, steps: 4 },
  smoke: { mixes: ['mixed'], seeds: [42], rows: ['nginx round robin', 'least-connections'], traceS: 2, steps: 1 },
};

/** The offered rates the search starts from, as fractions of the calibrated (round robin) capacity. */
const BRACKET: [number, number] = [0.25, 4];

/** Goodput share of one row at one offered rate (a fresh stack, the seeded trace at that rate). */
async function goodputAt(row: string, mix: string, seed: number, ratePerS: number, traceS: number, timeScale: number): Promise<number> {
  const trace = traceWithSessions({ seed, ratePerS, durationS: traceS, mix });
  const slo = scaledSlo(timeScale);
  const outcome = await withStack(
    row,
    timeScale,
    seed,
    async (gateway) => {
      if (namesModels(mix)) await new Promise((resolve) => setTimeout(resolve, MODEL_LIST_WARMUP_MS));
      const result = await executeSplit(trace, gateway.urls, ROW_TIMEOUT_MS);
      return { report: buildReport(result.records, { windowMs: result.windowMs, slo, trace: traceInfo(trace), target: { baseUrl: gateway.urls.join(' + '), path: null } }) };
    },
    mix,
  );
  return outcome.report.goodput === null ? 0 : outcome.report.goodput.share;
}

/**
 * The highest offered rate in [low, high] (fractions of `referencePerS`) at which the row meets
 * the goodput `target`: the bracket's ends first, then `steps` bisections (geometric: capacities differ
 * by ratios). Goodput falls with the rate (more load, longer queues) up to the noise of one run.
 */
export async function searchCapacity(
  measure: (ratePerS: number) => Promise<number>,
  referencePerS: number,
  steps: number,
  target: number = GOODPUT_TARGET,
): Promise<{ capacityPerS: number; bracket: [number, number | null]; probes: CapacityProbe[] }> {
  const probes: CapacityProbe[] = [];
  const probe = async (rate: number): Promise<boolean> => {
    const goodput = await measure(rate);
    const feasible = goodput >= target;
    probes.push({ ratePerS: rate, goodput, feasible });
    return feasible;
  };
  const round = (rate: number) => Math.max(0.1, Math.round(rate * 10) / 10);
  let low = round(referencePerS * BRACKET[0]);
  let high = round(referencePerS * BRACKET[1]);
  // A row that misses the SLO even at the bracket's low end: halve the rate (twice at most).
  let lowOk = await probe(low);
  for (let i = 0; i < 2 && !lowOk; i++) {
    high = low;
    low = round(low / 2);
    lowOk = await probe(low);
  }
  if (!lowOk) return { capacityPerS: 0, bracket: [0, low], probes };
  if (probes.length === 1 && (await probe(high))) return { capacityPerS: high, bracket: [high, null], probes };
  for (let i = 0; i < steps; i++) {
    const middle = round(Math.sqrt(low * high));
    if (middle <= low || middle >= high) break;
    if (await probe(middle)) low = middle;
    else high = middle;
  }
  return { capacityPerS: low, bracket: [low, high], probes };
}

/**
 * The Markdown table: per mix and row, capacity per seed, its median, and the median of the per-seed
 * ratios to the reference row (and to the oracle row's, when it ran).
 */
export function renderCapacity(results: RowCapacity[], reference: string): string {
  const withOracle = results.some((r) => r.row === ORACLE_ROW);
  const lines = [
    '| mix | row | capacity req/s per seed | median | vs ' + reference + ' (median of seeds) |' + (withOracle ? ' vs oracle (median of seeds) |' : '') + ' goodput target (idle) |',
    '|---|---|---|--:|--:|' + (withOracle ? '--:|' : '') + '--:|',
  ];
  const mixes = [...new Set(results.map((r) => r.mix))];
  for (const mix of mixes) {
    const rows = [...new Set(results.filter((r) => r.mix === mix).map((r) => r.row))];
    for (const row of rows) {
      const mine = results.filter((r) => r.mix === mix && r.row === row);
      // Ratios within a seed only: each seed calibrates its own load.
      const ratioTo = (other: string) =>
        median(
          mine
            .map((r) => {
              const ref = results.find((x) => x.mix === mix && x.seed === r.seed && x.row === other);
              return ref && ref.capacityPerS > 0 ? r.capacityPerS / ref.capacityPerS : NaN;
            })
            .filter((v) => Number.isFinite(v)),
        );
      const perSeed = mine.map((r) => r.capacityPerS.toFixed(1) + (r.bracket[1] === null ? '+' : '')).join(', ');
      const m = median(mine.map((r) => r.capacityPerS));
      const times = (ratio: number | null) => (ratio === null ? '-' : ratio.toFixed(2) + 'x');
      const targets = mine.map((r) => `${Math.round(r.target * 100)}% (${Math.round(r.idleGoodput * 100)}%)`).join(', ');
      lines.push(
        `| ${mix} | ${row} | ${perSeed} | ${m === null ? '-' : m.toFixed(1)} | ${times(ratioTo(reference))} |` + (withOracle ? ` ${times(ratioTo(ORACLE_ROW))} |` : '') + ` ${targets} |`,
      );
    }
  }
  return lines.join('\n') + '\n';
}

export async function runCapacity(options: CapacityOptions): Promise<RowCapacity[]> {
  const log = options.log ?? ((line: string) => console.log(line));
  const timeScale = TIME_SCALE[options.mode];
  const started = Date.now();
  const results: RowCapacity[] = [];
  for (const mix of options.mixes) {
    for (const seed of options.seeds) {
      const calibration = await calibrate(options.mode, timeScale, { seed, mix, rows: options.rows, traceS: options.traceS, levels: [] }, log);
      const idleRate = Math.max(0.1, Math.round(calibration.capacityPerS * IDLE_LOAD * 10) / 10);
      // Three traces' length: at a tenth of capacity one trace holds few requests (15 s x 1 req/s).
      const idleGoodput = await goodputAt(calibration.row, mix, seed, idleRate, options.traceS * IDLE_TRACES, timeScale);
      const target = GOODPUT_TARGET * idleGoodput;
      log(
        `capacity at the SLO: mix ${mix}, seed ${seed}, calibrated ${calibration.capacityPerS.toFixed(1)} req/s through ${calibration.row}; ` +
          `idle goodput ${(idleGoodput * 100).toFixed(0)}% at ${idleRate} req/s, target ${(target * 100).toFixed(0)}%`,
      );
      for (const row of options.rows) {
        const found = await searchCapacity((rate) => goodputAt(row, mix, seed, rate, options.traceS, timeScale), calibration.capacityPerS, options.steps, target);
        results.push({ mix, seed, row, ...found, idleGoodput, target });
        log(`  ${row.padEnd(24)} ${found.capacityPerS.toFixed(1)} req/s  (${found.probes.map((p) => `${p.ratePerS}:${Math.round(p.goodput * 100)}%`).join(' ')})`);
      }
    }
  }
  const reference = options.rows[0];
  const table = renderCapacity(results, reference);
  fs.mkdirSync(options.outDir, { recursive: true });
  fs.writeFileSync(
    path.join(options.outDir, 'capacity.json'),
    JSON.stringify({ date: new Date().toISOString(), machine: { cpus: os.cpus().length, node: process.version }, goodputTarget: GOODPUT_TARGET, idleLoad: IDLE_LOAD, timeScale, traceS: options.traceS, steps: options.steps, results, elapsedS: Math.round((Date.now() - started) / 1000) }, null, 2) + '\n',
  );
  fs.writeFileSync(path.join(options.outDir, 'capacity.md'), table);
  log('\n' + table);
  log(`wrote ${path.relative(REPO_ROOT, path.join(options.outDir, 'capacity.json'))} and capacity.md in ${Math.round((Date.now() - started) / 1000)} s`);
  return results;
}
