// What the benchmark suites (`--nodes`: nodes.ts, `--models`: models.ts) share: one shootout run
// per (mix, seed) at one load level, kept or resumed in <outDir>/<mix>-seed<N>/, then a summary
// table written beside them and, for a default run, into its BENCHMARKS.md section; and the
// mean-and-range cells of that table.

import fs from 'node:fs';
import path from 'node:path';
import type { Row, ShootoutResult } from './format';
import { updateBenchmarksFile } from './format';
import { runShootout } from './main';
import { REPO_ROOT } from '../../testbed/lib/nginx-env';

/** Mean and range of a value over the runs. */
export interface Spread {
  mean: number;
  min: number;
  max: number;
}

export function spread(values: Array<number | null>): Spread | null {
  const known = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (known.length === 0) return null;
  return { mean: known.reduce((sum, v) => sum + v, 0) / known.length, min: Math.min(...known), max: Math.max(...known) };
}

export function ratio(value: number | null | undefined, reference: number | null | undefined): number | null {
  if (value === null || value === undefined || reference === null || reference === undefined || !(reference > 0)) return null;
  return value / reference;
}

/** A table cell: the mean, with the range in brackets when the runs differ. */
export function spreadCell(value: Spread | null, digits: number, percent = false): string {
  if (value === null) return '-';
  const f = (v: number) => (percent ? (v * 100).toFixed(0) + '%' : v.toFixed(digits));
  return value.min === value.max ? f(value.mean) : `${f(value.mean)} (${f(value.min)}–${f(value.max)})`;
}

/** One row name of one mix, found in each run of that mix with its reference row of the same run. */
export interface RowOverRuns {
  mix: string;
  name: string;
  found: Array<{ row: Row; reference: Row | undefined }>;
}

/** Per mix (in the order first run) and row name (in the order first seen): the row in each run of the mix with the row `referenceOf` names. */
export function rowsOverRuns(results: ShootoutResult[], referenceOf: (name: string) => string | null): RowOverRuns[] {
  const out: RowOverRuns[] = [];
  const mixes: string[] = [];
  for (const result of results) if (!mixes.includes(result.settings.mix)) mixes.push(result.settings.mix);
  for (const mix of mixes) {
    const runs = results.filter((result) => result.settings.mix === mix && result.levels.length > 0);
    const names: string[] = [];
    for (const run of runs) for (const row of run.levels[0].rows) if (!names.includes(row.strategy)) names.push(row.strategy);
    for (const name of names) {
      const referenceName = referenceOf(name);
      const found: RowOverRuns['found'] = [];
      for (const run of runs) {
        const rows = run.levels[0].rows;
        const row = rows.find((r) => r.strategy === name);
        if (row !== undefined) found.push({ row, reference: rows.find((r) => r.strategy === referenceName) });
      }
      out.push({ mix, name, found });
    }
  }
  return out;
}

/** The target column: met / **missed** and what it asks, or empty. */
export function targetCell(target: { text: string; met: boolean } | null): string {
  return target === null ? '' : `${target.met ? 'met' : '**missed**'}: ${target.text}`;
}

/** What the command line chooses for a suite. */
export interface SuiteOptions {
  mixes: string[];
  seeds: number[];
  traceS: number;
  outDir: string;
  /** Reuse the runs whose shootout.json is already in outDir. */
  resume: boolean;
  updateBenchmarks: boolean;
  log?: (line: string) => void;
}

/** A suite: its rows per mix, defaults, and how its runs become a summary and a section. */
export interface SuiteDefinition<Summary> {
  /** The flag and the results folder: `nodes`, `models`. */
  name: string;
  rows: Record<string, string[]>;
  seeds: number[];
  traceS: number;
  level: number;
  markers: { start: string; end: string };
  summarize(results: ShootoutResult[]): Summary[];
  table(summary: Summary[]): string[];
  section(results: ShootoutResult[], summary: Summary[], elapsedS: number): string;
}

export async function runSuite<Summary>(suite: SuiteDefinition<Summary>, options: SuiteOptions): Promise<Summary[]> {
  const log = options.log ?? ((line: string) => console.log(line));
  const results: ShootoutResult[] = [];
  for (const mix of options.mixes) {
    const rows = suite.rows[mix];
    if (rows === undefined) throw new Error(`--${suite.name}: no rows for mix '${mix}' (the suite's mixes: ${Object.keys(suite.rows).join(', ')})`);
    for (const seed of options.seeds) {
      const dir = path.join(options.outDir, `${mix}-seed${seed}`);
      const file = path.join(dir, 'shootout.json');
      if (options.resume && fs.existsSync(file)) {
        log(`\n${mix}, seed ${seed}: kept ${path.relative(REPO_ROOT, file)}`);
        results.push(JSON.parse(fs.readFileSync(file, 'utf8')) as ShootoutResult);
        continue;
      }
      log(`\n${mix}, seed ${seed}:`);
      results.push(await runShootout({ mode: 'full', outDir: dir, updateBenchmarks: false, log, choices: { mix, seed, rows, traceS: options.traceS, levels: [suite.level] } }));
    }
  }
  const summary = suite.summarize(results);
  // The runs' own time (kept runs included, so a resumed suite reports what the whole took).
  const elapsedS = results.reduce((sum, result) => sum + result.elapsedS, 0);
  const section = suite.section(results, summary, elapsedS);
  fs.writeFileSync(path.join(options.outDir, `${suite.name}.json`), JSON.stringify({ date: new Date().toISOString(), elapsedS, rows: summary }, null, 2) + '\n');
  fs.writeFileSync(path.join(options.outDir, `${suite.name}.md`), section);
  log('\n' + suite.table(summary).join('\n'));
  log(`\nwrote ${path.relative(REPO_ROOT, path.join(options.outDir, `${suite.name}.md`))} in ${elapsedS} s`);
  if (options.updateBenchmarks) {
    updateBenchmarksFile(path.join(REPO_ROOT, 'BENCHMARKS.md'), section, suite.markers.start, suite.markers.end);
    log('updated BENCHMARKS.md');
  }
  return summary;
}
