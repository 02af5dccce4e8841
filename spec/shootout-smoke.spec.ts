// The shootout's smoke pipeline end to end: `node bench/shootout.js --smoke --out <tmp>` runs the
// calibration and its rows (nginx, the njs module, one Kong node, two Kong nodes sharing a real
// redis-server, and the oracle router inside the emulator process) through emulated replicas, and
// writes the JSON, the SVG and the BENCHMARKS.md section. Asserts the report is complete and
// consistent, never a timing.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ShootoutResult } from '../bench/shootout/format';

const run = promisify(execFile);
const REPO_ROOT = path.resolve(__dirname, '..');
const SMOKE_ROWS = ['nginx round robin', 'least-connections', 'kong least-connections', '2 kong+redis: least-connections', 'oracle'];

describe('npm run bench -- --smoke', () => {
  let out: string;
  let stdout: string;
  let result: ShootoutResult;

  beforeAll(async () => {
    out = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-shootout-'));
    ({ stdout } = await run(process.execPath, [path.join(REPO_ROOT, 'bench', 'shootout.js'), '--smoke', '--out', out], { cwd: REPO_ROOT, timeout: 110_000 }));
    result = JSON.parse(fs.readFileSync(path.join(out, 'shootout.json'), 'utf8')) as ShootoutResult;
  }, 120_000);

  afterAll(() => {
    if (out) fs.rmSync(out, { recursive: true, force: true });
  });

  it('runs every requested row at every requested level, in order', () => {
    expect(result.mode).toBe('smoke');
    expect(result.levels.map((level) => level.level)).toEqual(result.settings.levels);
    for (const level of result.levels) expect(level.rows.map((row) => row.strategy)).toEqual(SMOKE_ROWS);
  });

  it('accounts for every request of the trace in every row', () => {
    for (const level of result.levels) {
      expect(level.requests).toBeGreaterThan(0);
      for (const row of level.rows) {
        const r = row.report;
        expect(r.requests.total).toBe(level.requests);
        expect(r.requests.completed + r.requests.failed).toBe(level.requests);
        expect(r.trace?.requests).toBe(level.requests);
        expect(r.metrics.e2e.count).toBe(r.requests.completed);
        // Every request that got an answer is attributed to one of the four replicas.
        const answered = r.replicas.reduce((sum, share) => sum + share.requests, 0);
        expect(answered).toBeLessThanOrEqual(level.requests);
        for (const share of r.replicas) expect(share.replica).toMatch(/^(h100|a100)-[1-4]$/);
        expect(row.moduleErrors).toEqual([]);
      }
    }
  });

  it("reads every row's prefix-cache counters from the replicas' own /metrics", () => {
    for (const level of result.levels) {
      for (const row of level.rows) {
        expect(row.cache, row.strategy).toBeTruthy();
        expect(row.cache?.queriedTokens).toBeGreaterThan(0);
        expect(row.cache?.hitTokens).toBeLessThanOrEqual(row.cache?.queriedTokens ?? 0);
        expect(row.cache?.hitRate).toBeCloseTo((row.cache?.hitTokens ?? 0) / (row.cache?.queriedTokens ?? 1), 10);
      }
    }
  });

  it('records a positive calibrated capacity and the settings that produced it', () => {
    expect(result.calibration.capacityPerS).toBeGreaterThan(0);
    expect(result.calibration.attempts.length).toBeGreaterThan(0);
    expect(result.settings.replicas).toEqual(['h100', 'h100', 'a100', 'a100']);
    expect(result.settings.weights).toEqual([1, 1, 0.8, 0.8]);
  });

  it('writes an SVG with one series per row', () => {
    const svg = fs.readFileSync(path.join(out, 'shootout.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    const series = [...svg.matchAll(/<g class="series" data-level="([^"]+)" data-strategy="([^"]+)"/g)].map((m) => `${m[1]}/${m[2]}`);
    const expected = result.levels.flatMap((level) => level.rows.map((row) => `${level.level}/${row.strategy}`));
    expect(series).toEqual(expected);
    // Balanced tags: every <g> closed.
    expect((svg.match(/<g /g) ?? []).length).toBe((svg.match(/<\/g>/g) ?? []).length);
  });

  it('writes the BENCHMARKS.md section with a table row per strategy and prints the same table', () => {
    const section = fs.readFileSync(path.join(out, 'shootout.md'), 'utf8');
    expect(section.startsWith('<!-- shootout:start -->')).toBe(true);
    expect(section.trimEnd().endsWith('<!-- shootout:end -->')).toBe(true);
    for (const strategy of SMOKE_ROWS) {
      const name = strategy.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      expect(section).toMatch(new RegExp(`^\\| ${name} +\\|`, 'm'));
      expect(stdout).toMatch(new RegExp(`^\\| ${name} +\\|`, 'm'));
    }
    // The reference row's ratios are 1 by definition.
    expect(section).toMatch(/^\| nginx round robin .*\| +1\.00 \| +1\.00 \|$/m);
  });

  it("shows every row as a share of the oracle's, says the oracle has no gateway hop, and judges the target", () => {
    const section = fs.readFileSync(path.join(out, 'shootout.md'), 'utf8');
    expect(section).toContain('| goodput vs oracle | hits vs oracle | TTFT p50 oracle/row |');
    expect(section).toContain('no nginx or Kong hop');
    expect(section).toMatch(/Against the oracle: the closest shipped row is `(least-connections|kong least-connections|2 kong\+redis: least-connections)`.*\*\*(met|missed)\*\*/);
    // The oracle's own TTFT share is 1 by definition (its goodput and hit shares too, when it has any).
    expect(section).toMatch(/^\| oracle +\|.*\| +(1\.00|-) \| +(1\.00|-) \| +1\.00 \|/m);
  });

  it('routes the oracle row through the router beside the replicas, to every replica', () => {
    for (const level of result.levels) {
      const oracle = level.rows.find((row) => row.strategy === 'oracle');
      expect(oracle?.report.target?.baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(oracle?.report.requests.completed).toBe(level.requests);
      // Every request of the trace was answered through the oracle by some replica.
      expect(oracle?.report.replicas.reduce((sum, share) => sum + share.requests, 0)).toBe(level.requests);
    }
  });
});
