// The shootout's flags and the signal probe's rank maths (bench/shootout/main.ts, probe.ts): pure parts.
import { describe, expect, it } from 'vitest';
import { ALL_ROWS, KNOWN_ROWS, LLM_VARIANT_ROWS, balancerFile, isKnownRow, oracleOverlapOf, parseChoices, parseNodeRow } from '../bench/shootout/main';
import { DEFAULT_OVERLAP_WEIGHT } from '../testbed/oracle/router';
import { NODE_SUITE, oneNodeRow, renderNodesTable, summarizeNodes } from '../bench/shootout/nodes';
import { MODEL_SUITE, maxLoadShare, renderModelsTable, summarizeModels } from '../bench/shootout/models';
import { median, renderSummary, summarize } from '../bench/shootout/summarize';
import { renderTable } from '../bench/shootout/format';
import type { LevelResult, Row, ShootoutResult } from '../bench/shootout/format';
import { ORACLE_ROW, isShippedRow, judgeAgainstOracle, oracleShares } from '../bench/shootout/oracle-shares';
import { validate } from '../shared/config/validate';
import { ranks, score, spearman } from '../bench/shootout/probe';

describe('shootout flags', () => {
  it('takes a seed, a known mix and known rows in the order given', () => {
    expect(parseChoices({ seed: '7', mix: 'short-chat', rows: 'kong least-connections, nginx round robin' })).toEqual({
      seed: 7,
      mix: 'short-chat',
      rows: ['kong least-connections', 'nginx round robin'],
    });
    expect(parseChoices({})).toEqual({});
  });

  it.each([
    [{ seed: 'x' }, "--seed must be a whole number >= 0, got 'x'"],
    [{ seed: '1.5' }, '--seed must be a whole number'],
    [{ seed: '' }, '--seed must be a whole number'],
    [{ mix: 'chatty' }, "--mix: unknown mix 'chatty' (known: short-chat,"],
    [{ rows: 'least-connections,least-conn' }, "--rows: unknown row 'least-conn' (known: nginx round robin,"],
    [{ rows: ' , ' }, '--rows: name at least one row'],
    [{ 'trace-s': '0' }, "--trace-s must be a whole number of seconds from 1 to 600, got '0'"],
    [{ 'trace-s': '2.5' }, '--trace-s must be a whole number'],
    [{ 'trace-s': '601' }, '--trace-s must be a whole number'],
  ])('rejects %j with a message naming the flag', (values, message) => {
    expect(() => parseChoices(values)).toThrow(message);
  });

  it('takes a trace length', () => {
    expect(parseChoices({ 'trace-s': '40' })).toEqual({ traceS: 40 });
  });

  it('llm variant rows are valid llm configs with other weights, not in the default run', () => {
    expect(LLM_VARIANT_ROWS.length).toBeGreaterThan(0);
    for (const row of LLM_VARIANT_ROWS) {
      expect(KNOWN_ROWS).toContain(row);
      expect(ALL_ROWS).not.toContain(row);
      const file = balancerFile(row, ['127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:3', '127.0.0.1:4']);
      const checked = validate(file);
      const defaults = validate(balancerFile('llm', ['127.0.0.1:1']));
      expect(checked.ok && defaults.ok, row).toBe(true);
      if (checked.ok && defaults.ok) {
        expect(checked.config.strategy).toBe('llm');
        expect(checked.config.llm).not.toEqual(defaults.config.llm);
      }
    }
  });

  it('lists the Kong rows among the known rows', () => {
    expect(ALL_ROWS).toContain('kong round-robin');
    expect(ALL_ROWS).toContain('kong least-connections');
  });

  it('knows the oracle row, which is no strategy of a gateway', () => {
    expect(ALL_ROWS).toContain(ORACLE_ROW);
    expect(parseChoices({ rows: 'nginx round robin,oracle' }).rows).toEqual(['nginx round robin', 'oracle']);
    expect(parseNodeRow('2 nginx: oracle')).toBeNull();
    // Oracle rows with another overlap weight: known, and never counted as shipped.
    expect(oracleOverlapOf('oracle')).toBe(DEFAULT_OVERLAP_WEIGHT);
    expect(oracleOverlapOf('oracle (overlap 1)')).toBe(1);
    expect(oracleOverlapOf('oracle (overlap 2.5)')).toBe(2.5);
    expect(oracleOverlapOf('oracle (overlap x)')).toBeNull();
    expect(oracleOverlapOf('llm')).toBeNull();
    expect(isKnownRow('oracle (overlap 16)')).toBe(true);
    expect(isShippedRow('oracle (overlap 16)')).toBe(false);
  });
});

describe('signal probe maths', () => {
  it('ranks with ties sharing their mean position', () => {
    expect(ranks([30, 10, 20, 10])).toEqual([4, 1.5, 3, 1.5]);
  });

  it("Spearman's rho: 1 for the same order, -1 reversed, null without spread", () => {
    expect(spearman([1, 2, 3, 4], [10, 20, 30, 40])).toBeCloseTo(1, 10);
    expect(spearman([1, 2, 3, 4], [40, 30, 20, 10])).toBeCloseTo(-1, 10);
    expect(spearman([1, 1, 1, 1], [1, 2, 3, 4])).toBeNull();
    // Monotone but not linear: rank correlation is still 1.
    expect(spearman([1, 2, 3, 100], [1, 4, 9, 16])).toBeCloseTo(1, 10);
  });

  it('scores a signal against the truth over samples, skipping samples it cannot rank', () => {
    const samples = [
      { atMs: 0, truth: [0, 1, 2, 3], inFlight: [0, 1, 2, 3], ewmaMs: [400, 300, 200, 100] },
      { atMs: 500, truth: [3, 2, 1, 0], inFlight: [3, 2, 1, 0], ewmaMs: [null, 1, 1, 1] },
      { atMs: 1000, truth: [1, 1, 1, 1], inFlight: [0, 1, 2, 3], ewmaMs: [1, 2, 3, 4] },
    ];
    const inFlight = score(samples, 'in-flight/weight');
    // The third sample has no spread in the truth: skipped. In-flight ranks match the truth in both others.
    expect(inFlight.samples).toBe(2);
    expect(inFlight.rho).toBeCloseTo(1, 10);
    expect(inFlight.agree).toBe(1);
    const ewma = score(samples, 'latency EWMA');
    // Only the first sample has every estimate; it is exactly reversed.
    expect(ewma.samples).toBe(1);
    expect(ewma.rho).toBeCloseTo(-1, 10);
    expect(ewma.agree).toBe(0);
  });
});

describe('shootout summary over runs', () => {
  const report = (meanMs: number, p99Ms: number, ttftP50Ms: number, share: number) => ({
    metrics: { e2e: { meanMs, p99Ms }, ttft: { p50Ms: ttftP50Ms } },
    goodput: { share },
    replicas: [
      { replica: 'x', peakInFlight: 4 },
      { replica: 'y', peakInFlight: 2 },
      { replica: null, peakInFlight: 9 },
    ],
  });
  const run = (mix: string, rr: number, pa: number, rrHits: number, paHits: number) =>
    ({
      settings: { mix },
      levels: [
        {
          level: 0.9,
          rows: [
            { strategy: 'nginx round robin', report: report(rr, 2 * rr, rr / 2, 0.5), cache: { hitRate: rrHits } },
            { strategy: 'prefix-affinity', report: report(pa, 2 * pa, pa / 4, 0.8), cache: { hitRate: paHits } },
          ],
        },
      ],
    }) as unknown as ShootoutResult;

  it('medians of per-run ratios to round robin, with their range', () => {
    const rows = summarize([run('m', 100, 50, 0.2, 0.6), run('m', 200, 160, 0.25, 0.5), run('m', 100, 70, 0.3, 0.6)], 0.9);
    const pa = rows.find((r) => r.row === 'prefix-affinity');
    expect(pa?.runs).toBe(3);
    expect(pa?.fields.mean).toEqual({ median: 0.7, min: 0.5, max: 0.8 });
    expect(pa?.fields.ttftP50.median).toBeCloseTo(0.35, 10);
    expect(pa?.fields.hitRatio.median).toBeCloseTo(2, 10);
    expect(pa?.fields.hitRatio.min).toBeCloseTo(2, 10);
    expect(pa?.fields.hitRatio.max).toBeCloseTo(3, 10);
    // The busiest replica's peak over the mean peak of the named replicas: 4 / 3.
    expect(pa?.fields.peakSpread.median).toBeCloseTo(4 / 3, 10);
    expect(renderSummary(rows)).toContain('| m | prefix-affinity | 3 | 0.70 (0.50–0.80) |');
  });

  it('skips runs without the level or the reference row', () => {
    const other = run('m', 100, 50, 0.2, 0.6);
    other.levels[0].level = 0.6;
    expect(summarize([other], 0.9)).toEqual([]);
    const noReference = run('m', 100, 50, 0.2, 0.6);
    noReference.levels[0].rows.shift();
    expect(summarize([noReference], 0.9)).toEqual([]);
  });

  it('median', () => {
    expect(median([])).toBeNull();
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });
});

describe('multi-node rows and their summary', () => {
  it('parses node rows; unknown gateways, strategies and restarts without Redis are not rows', () => {
    expect(parseNodeRow('4 kong+redis: llm')).toEqual({ nodes: 4, gateway: 'kong+redis', strategy: 'llm', redisRestart: false });
    expect(parseNodeRow('4 kong+redis (redis restart): least-connections')).toEqual({ nodes: 4, gateway: 'kong+redis', strategy: 'least-connections', redisRestart: true });
    expect(parseNodeRow('2 gateways: llm')).toEqual({ nodes: 2, gateway: 'nginx', strategy: 'llm', redisRestart: false });
    expect(parseNodeRow('2 nginx: llm (least-load placement)')?.strategy).toBe('llm (least-load placement)');
    for (const row of ['4 kong (redis restart): llm', '4 envoy: llm', '4 kong: fastest', '0 nginx: llm', '9 nginx: llm', 'llm']) expect(parseNodeRow(row), row).toBeNull();
    expect(isKnownRow('4 kong+redis: llm')).toBe(true);
    expect(() => parseChoices({ rows: '4 kong: fastest' })).toThrow("unknown row '4 kong: fastest'");
    expect(parseChoices({ rows: '1 nginx: llm,4 kong+redis: llm' }).rows).toEqual(['1 nginx: llm', '4 kong+redis: llm']);
  });

  it('compares every row of the suite with a one-node row of the same run', () => {
    for (const rows of Object.values(NODE_SUITE)) {
      for (const row of rows) {
        expect(parseNodeRow(row), row).not.toBeNull();
        expect(rows, row).toContain(oneNodeRow(row));
      }
    }
    expect(oneNodeRow('4 kong+redis (redis restart): llm')).toBe('1 kong: llm');
  });

  const row = (strategy: string, hitRate: number, ttftP50Ms: number, meanMs: number, failed = 0) =>
    ({ strategy, report: { metrics: { e2e: { meanMs }, ttft: { p50Ms: ttftP50Ms } }, requests: { failed } }, cache: { hitRate } }) as unknown as Row;
  const run = (mix: string, rows: Row[]) => ({ settings: { mix }, levels: [{ level: 0.9, rows }] }) as unknown as ShootoutResult;

  it('gives ratios to the one-node row of the same run, over the runs, and says whether each target was met', () => {
    const summary = summarizeNodes([
      run('fleet-prefixes', [row('1 kong: llm', 0.8, 100, 1000), row('4 kong: llm', 0.4, 300, 2000), row('4 kong+redis: llm', 0.8, 105, 1000), row('4 kong+redis (redis restart): llm', 0.7, 120, 1100, 2)]),
      run('fleet-prefixes', [row('1 kong: llm', 0.5, 200, 1000), row('4 kong: llm', 0.5, 200, 1000), row('4 kong+redis: llm', 0.49, 200, 1000), row('4 kong+redis (redis restart): llm', 0.5, 200, 1000)]),
      run('mixed', [row('1 kong: least-connections', 0.1, 50, 1000), row('4 kong+redis: least-connections', 0.1, 50, 1040)]),
    ]);
    const find = (mix: string, name: string) => summary.find((r) => r.mix === mix && r.row === name);
    const shared = find('fleet-prefixes', '4 kong+redis: llm');
    expect(shared?.runs).toBe(2);
    expect(shared?.hitRatio?.min).toBeCloseTo(0.98, 10);
    expect(shared?.hitRatio?.max).toBeCloseTo(1, 10);
    expect(shared?.ttftP50Ratio?.max).toBeCloseTo(1.05, 10);
    expect(shared?.target).toEqual({ text: 'hits ≥ 0.95x, TTFT p50 ≤ 1.1x', met: true });
    expect(find('fleet-prefixes', '4 kong: llm')?.target?.met).toBe(false);
    expect(find('fleet-prefixes', '4 kong: llm')?.hitRatio).toEqual({ mean: 0.75, min: 0.5, max: 1 });
    expect(find('fleet-prefixes', '4 kong+redis (redis restart): llm')?.target).toEqual({ text: 'no failed request', met: false });
    expect(find('fleet-prefixes', '1 kong: llm')?.hitRatio).toBeNull();
    expect(find('mixed', '4 kong+redis: least-connections')?.target).toEqual({ text: 'mean e2e ≤ 1.05x', met: true });
    const noHits = summarizeNodes([run('mixed', [row('1 nginx: llm', 0, 100, 1000), row('4 nginx: llm', 0, 105, 1000)])]);
    expect(noHits[1].target).toEqual({ text: 'TTFT p50 ≤ 1.1x (no cache hits to keep)', met: true });
    expect(renderNodesTable(summary).join('\n')).toContain('| fleet-prefixes | 4 kong: llm | 2 | 45% (40%–50%) | 0.75 (0.50–1.00) |');
  });
});

describe('model suite rows and their summary', () => {
  it('knows every row of the suite; adapter-filter rows turn models.adapter_filter on', () => {
    for (const rows of Object.values(MODEL_SUITE)) for (const row of rows) expect(isKnownRow(row), row).toBe(true);
    const file = balancerFile('least-connections + adapter filter', ['127.0.0.1:1']);
    expect(file.strategy).toBe('least-connections');
    expect((file.models as Record<string, unknown>).adapter_filter).toBe(true);
    expect(validate(file).ok).toBe(true);
  });

  const row = (strategy: string, loads: number, ttftP50Ms: number, shares: number[]) =>
    ({
      strategy,
      report: {
        requests: { total: 1000, failed: 0 },
        metrics: { e2e: { meanMs: 1000, p99Ms: 2000 }, ttft: { p50Ms: ttftP50Ms, p99Ms: 3 * ttftP50Ms } },
        goodput: { share: 0.9 },
        replicas: shares.map((share, i) => ({ replica: ['h100', 'h100', 'a100', 'a100'][i] + '-' + (i + 1), requests: 0, completed: 0, share, peakInFlight: 0 })),
      },
      cache: { hitRate: null, adapterLoads: loads },
    }) as unknown as Row;
  const run = (mix: string, rows: Row[]) => ({ settings: { mix }, levels: [{ level: 0.9, rows }] }) as unknown as ShootoutResult;
  const even = [0.25, 0.25, 0.25, 0.25];

  it("gives ratios to least-connections of the same run and checks llm's LoRA targets", () => {
    const summary = summarizeModels([
      run('multi-lora-16', [row('least-connections', 200, 800, even), row('llm', 50, 60, even)]),
      run('multi-lora-16', [row('least-connections', 220, 1000, even), row('llm', 55, 70, even)]),
      run('multi-lora', [row('least-connections', 300, 1700, even), row('llm', 150, 70, even)]),
      // The busiest replica (an a100: fair share 0.8 / 3.6) at 3.6x its share: past the guard.
      run('multi-lora', [row('least-connections', 300, 1700, even), row('llm', 60, 70, [0.1, 0.1, 0.8, 0])]),
    ]);
    const find = (mix: string, name: string) => summary.find((r) => r.mix === mix && r.row === name);
    expect(find('multi-lora-16', 'llm')?.loadsRatio).toEqual({ mean: 0.25, min: 0.25, max: 0.25 });
    expect(find('multi-lora-16', 'llm')?.target?.met).toBe(true);
    expect(find('multi-lora-16', 'least-connections')?.loadsRatio).toBeNull();
    expect(find('multi-lora', 'llm')?.target?.met).toBe(false);
    expect(find('multi-lora', 'llm')?.maxLoadShare?.max).toBeCloseTo(3.6, 10);
    expect(maxLoadShare(row('x', 0, 0, even))).toBeCloseTo(0.25 / (0.8 / 3.6), 10);
    expect(renderModelsTable(summary).join('\n')).toContain('| multi-lora-16 | llm | 2 | 53 (50–55) | 0.25 |');
  });
});

describe('shares of the oracle', () => {
  const row = (strategy: string, goodput: number | null, hitRate: number | null, ttftP50Ms: number | null) =>
    ({
      strategy,
      report: {
        requests: { total: 100, failed: 0 },
        metrics: { e2e: { meanMs: 1000, p99Ms: 2000 }, ttft: { p50Ms: ttftP50Ms, p99Ms: 3000 } },
        throughput: { completedPerS: 1, outputTokensPerS: 10 },
        goodput: goodput === null ? null : { share: goodput },
      },
      moduleErrors: [],
      cache: hitRate === null ? null : { queriedTokens: 100, hitTokens: 100 * hitRate, hitRate },
    }) as unknown as Row;
  const oracle = row(ORACLE_ROW, 0.8, 0.6, 100);

  it('goodput and hits as row / oracle, TTFT p50 as oracle / row: 1 is as good, below is worse', () => {
    const shares = oracleShares(row('llm', 0.72, 0.66, 250), oracle);
    expect(shares.goodput).toBeCloseTo(0.9, 10);
    expect(shares.hitRate).toBeCloseTo(1.1, 10);
    expect(shares.ttftP50).toBeCloseTo(0.4, 10);
    expect(oracleShares(oracle, oracle)).toEqual({ goodput: 1, hitRate: 1, ttftP50: 1 });
  });

  it('has no share where the oracle has nothing to divide by, or the row no value', () => {
    const noHits = row(ORACLE_ROW, 0, 0, 100);
    expect(oracleShares(row('llm', 0.5, 0, 100), noHits)).toEqual({ goodput: null, hitRate: null, ttftP50: 1 });
    expect(oracleShares(row('llm', null, null, null), oracle)).toEqual({ goodput: null, hitRate: null, ttftP50: null });
  });

  it('judges the shipped row whose weaker share is highest, not the best of each', () => {
    const shares = (goodput: number, hitRate: number | null) => ({ goodput, hitRate, ttftP50: 1 });
    const verdict = judgeAgainstOracle([
      { row: 'nginx least_conn', shares: shares(1.2, 1.2) },
      { row: ORACLE_ROW, shares: shares(1, 1) },
      { row: 'least-tokens', shares: shares(0.99, 0.7) },
      { row: 'llm', shares: shares(0.91, 0.93) },
      { row: 'prefix-affinity', shares: shares(0.8, 0.99) },
    ]);
    expect(verdict?.row).toBe('llm');
    expect(verdict?.met).toBe(true);
    expect(judgeAgainstOracle([{ row: 'llm', shares: shares(0.95, 0.89) }])?.met).toBe(false);
    // Without cache hits anywhere (the oracle hit nothing), goodput alone decides.
    expect(judgeAgainstOracle([{ row: 'least-connections', shares: shares(0.92, null) }])?.met).toBe(true);
    expect(judgeAgainstOracle([{ row: 'nginx round robin', shares: shares(1, 1) }])).toBeNull();
    expect(isShippedRow('4 kong+redis: llm')).toBe(true);
    expect(isShippedRow('nginx round robin')).toBe(false);
  });

  it("adds the oracle's columns and a verdict to a level's table only when the oracle ran", () => {
    const level: LevelResult = { level: 0.9, ratePerS: 10, requests: 100, rows: [row('nginx round robin', 0.4, 0.3, 400), row('llm', 0.76, 0.57, 125), oracle] };
    const result = { settings: { traceS: 30 } } as unknown as ShootoutResult;
    const table = renderTable(result, level).join('\n');
    expect(table).toContain('| goodput vs oracle | hits vs oracle | TTFT p50 oracle/row | mean vs RR |');
    expect(table).toMatch(/^\| llm +\| .*\| +0\.95 \| +0\.95 \| +0\.80 \| +1\.00 \| +1\.00 \|$/m);
    expect(table).toMatch(/^\| oracle +\| .*\| +1\.00 \| +1\.00 \| +1\.00 \| +1\.00 \| +1\.00 \|$/m);
    expect(table).toContain('the closest shipped row is `llm` — goodput 0.95x, cache hits 0.95x');
    expect(table).toContain('**met**');
    const without = renderTable(result, { ...level, rows: level.rows.slice(0, 2) }).join('\n');
    expect(without).not.toContain('oracle');
  });

  it("summarizes shares of each run's own oracle over the runs, with the verdict on the medians", () => {
    const run = (llmGoodput: number, oracleGoodput: number) =>
      ({ settings: { mix: 'fleet-prefixes' }, levels: [{ level: 0.9, rows: [row('nginx round robin', 0.3, 0.3, 400), row('llm', llmGoodput, 0.6, 200), row(ORACLE_ROW, oracleGoodput, 0.75, 100)] }] }) as unknown as ShootoutResult;
    const rows = summarize([run(0.6, 0.8), run(0.7, 0.7), run(0.4, 0.8)], 0.9);
    const llm = rows.find((r) => r.row === 'llm');
    expect(llm?.fields.goodputVsOracle.median).toBeCloseTo(0.75, 10);
    expect(llm?.fields.goodputVsOracle.min).toBeCloseTo(0.5, 10);
    expect(llm?.fields.goodputVsOracle.max).toBeCloseTo(1, 10);
    expect(llm?.fields.hitsVsOracle.median).toBeCloseTo(0.8, 10);
    expect(llm?.fields.ttftVsOracle.median).toBeCloseTo(0.5, 10);
    const text = renderSummary(rows);
    expect(text).toContain('| goodput vs oracle | hits vs oracle | TTFT p50 oracle/row |');
    expect(text).toContain('- fleet-prefixes (medians over the runs): Against the oracle: the closest shipped row is `llm` — goodput 0.75x, cache hits 0.80x');
    expect(text).toContain('**missed**');
  });
});
