// The shootout's flags and the signal probe's rank maths (bench/shootout/main.ts, probe.ts): pure parts.
import { describe, expect, it } from 'vitest';
import { ALL_ROWS, KNOWN_ROWS, LLM_VARIANT_ROWS, balancerFile, parseChoices } from '../bench/shootout/main';
import { median, renderSummary, summarize } from '../bench/shootout/summarize';
import type { ShootoutResult } from '../bench/shootout/format';
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
