// Statistics and the report of the load generator: HDR percentiles against an exact sorted-array
// reference (nearest rank), exact mean and max, empty inputs, goodput, replica shares, the table.
import { describe, expect, it } from 'vitest';
import {
  ERROR_KINDS,
  METRIC_ROWS,
  MetricHistogram,
  buildReport,
  createRandom,
  peakInFlight,
  exponential,
  formatReport,
  summarise,
  type RequestRecord,
} from '../testbed/loadgen/index';

/** Nearest-rank percentile of sorted values, with p given in per-mille so the rank is exact integer maths. */
function referencePercentile(sorted: number[], perMille: number): number {
  const rank = Math.max(1, Math.ceil((perMille * sorted.length) / 1000));
  return sorted[rank - 1];
}

const random = createRandom(2024, 'stats-spec');
const many = (n: number, draw: () => number) => Array.from({ length: n }, draw);

const DISTRIBUTIONS: Array<[string, number[]]> = [
  ['uniform 0–1000 ms', many(5000, () => random.next() * 1000)],
  ['exponential, mean 50 ms', many(5000, () => exponential(random, 50))],
  ['bimodal: 90% near 20 ms, 10% near 2 s', many(5000, () => (random.next() < 0.9 ? 15 + random.next() * 10 : 1800 + random.next() * 400))],
  ['sub-millisecond ITLs', many(2000, () => random.next() * 0.8)],
  ['a single value', many(100, () => 42.5)],
  ['two values, 50/50', [...many(50, () => 10), ...many(50, () => 1000)]],
  ['three values', [3, 700, 12]],
  ['one value', [250.25]],
];

/** p50, p90, p99, p99.9, p100 and a few more, in per-mille. */
const PERCENTILES_PER_MILLE = [10, 250, 500, 510, 750, 900, 990, 999, 1000];

/** HDR's precision at 3 significant digits (bucket width ≤ 1/1024 of the value) plus µs rounding. */
function tolerance(reference: number): number {
  return reference * 1e-3 + 1e-3;
}

describe('MetricHistogram', () => {
  it.each(DISTRIBUTIONS)('%s: percentiles match the sorted-array reference within HDR precision', (_name, values) => {
    const histogram = new MetricHistogram();
    histogram.recordAll(values);
    const sorted = values.slice().sort((a, b) => a - b);
    for (const perMille of PERCENTILES_PER_MILLE) {
      const expected = referencePercentile(sorted, perMille);
      const actual = histogram.percentileMs(perMille / 10) as number;
      expect(Math.abs(actual - expected), `p${perMille / 10}: ${actual} vs ${expected}`).toBeLessThanOrEqual(tolerance(expected));
      // Reported at the bucket's top: never below the true value (beyond µs rounding).
      expect(actual).toBeGreaterThanOrEqual(expected - 5e-4);
    }
  });

  it.each(DISTRIBUTIONS)('%s: count, exact mean and exact max', (_name, values) => {
    const summary = summarise(values);
    expect(summary.count).toBe(values.length);
    expect(summary.meanMs).toBeCloseTo(values.reduce((sum, value) => sum + value, 0) / values.length, 9);
    expect(summary.maxMs).toBe(Math.max(...values));
    expect(summary.p50Ms as number).toBeLessThanOrEqual(summary.p90Ms as number);
    expect(summary.p90Ms as number).toBeLessThanOrEqual(summary.p99Ms as number);
    expect(summary.p99Ms as number).toBeLessThanOrEqual(summary.maxMs as number);
  });

  it('two values 50/50: p50 is the lower, p51 the upper (nearest rank, not interpolation)', () => {
    const histogram = new MetricHistogram();
    histogram.recordAll([...many(50, () => 10), ...many(50, () => 1000)]);
    expect(Math.abs((histogram.percentileMs(50) as number) - 10)).toBeLessThanOrEqual(tolerance(10));
    expect(Math.abs((histogram.percentileMs(51) as number) - 1000)).toBeLessThanOrEqual(tolerance(1000));
  });

  it('an empty histogram summarises to count 0 and nulls, not zeros or NaN', () => {
    const histogram = new MetricHistogram();
    expect(histogram.percentileMs(99)).toBeNull();
    expect(histogram.summary()).toEqual({ count: 0, meanMs: null, p50Ms: null, p90Ms: null, p99Ms: null, maxMs: null });
  });

  it('keeps hour-long values (the histogram resizes) and records negative clock steps as 0', () => {
    const histogram = new MetricHistogram();
    histogram.recordAll([-3, 5_400_000]);
    expect(histogram.summary()).toMatchObject({ count: 2, maxMs: 5_400_000, p50Ms: 0 });
    expect(Math.abs((histogram.percentileMs(100) as number) - 5_400_000)).toBeLessThanOrEqual(tolerance(5_400_000));
  });

  it.each([NaN, Infinity, -Infinity])('refuses %s', (value) => {
    expect(() => new MetricHistogram().record(value)).toThrow(RangeError);
  });

  it.each([0, -1, 101])('refuses percentile %s', (p) => {
    expect(() => new MetricHistogram().percentileMs(p)).toThrow(RangeError);
  });
});

let nextId = 0;

/** A successful request unless overridden. */
function record(overrides: Partial<RequestRecord> = {}): RequestRecord {
  nextId++;
  return {
    id: 'r' + nextId,
    kind: 'short-chat',
    atMs: 0,
    sentAtMs: 0,
    scheduleLagMs: 0,
    ok: true,
    status: 200,
    error: null,
    errorDetail: null,
    replica: 'a',
    socketReadyMs: 0.2,
    headersMs: 5,
    ttftMs: 50,
    e2eMs: 500,
    tpotMs: 10,
    interTokenMs: [10, 10, 10],
    outputTokens: 4,
    contentChunks: 4,
    usageOutputTokens: 4,
    elapsedMs: 500,
    ...overrides,
  };
}

function failed(error: RequestRecord['error'], overrides: Partial<RequestRecord> = {}): RequestRecord {
  return record({ ok: false, error, errorDetail: String(error), ttftMs: null, e2eMs: null, tpotMs: null, interTokenMs: [], outputTokens: 0, ...overrides });
}

describe('buildReport', () => {
  const records: RequestRecord[] = [
    record({ replica: 'a', ttftMs: 40, e2eMs: 400, outputTokens: 100 }),
    record({ replica: 'a', ttftMs: 90, e2eMs: 900, outputTokens: 100 }),
    record({ replica: 'b', ttftMs: 150, e2eMs: 800, outputTokens: 50 }),
    record({ replica: 'b', ttftMs: 60, e2eMs: 3000, outputTokens: 50 }),
    record({ replica: null, ttftMs: 30, e2eMs: 300, outputTokens: 20 }),
    failed('http-status', { status: 503, replica: 'b' }),
    failed('http-status', { status: 500, replica: null }),
    failed('connect-error', { status: null, replica: null, socketReadyMs: null }),
    failed('timeout', { status: 200, replica: 'a', ttftMs: 70 }),
    failed('malformed-stream', { status: 200, replica: 'a' }),
  ];

  it('counts requests, throughput over the window, and errors by kind and status', () => {
    const report = buildReport(records, { windowMs: 2000 });
    expect(report.requests).toEqual({ total: 10, completed: 5, failed: 5 });
    expect(report.windowS).toBe(2);
    expect(report.throughput).toEqual({ offeredPerS: null, completedPerS: 2.5, outputTokens: 320, outputTokensPerS: 160 });
    expect(report.errors.byKind).toEqual({
      'connect-error': 1,
      timeout: 1,
      'client-timeout': 0,
      'http-status': 2,
      'malformed-stream': 1,
      'stream-error': 0,
    });
    expect(report.errors.byStatus).toEqual({ '500': 1, '503': 1 });
  });

  it('latency metrics count successful requests only; schedule lag counts every request', () => {
    const report = buildReport(records, { windowMs: 2000 });
    expect(report.metrics.ttft).toMatchObject({ count: 5, meanMs: 74, maxMs: 150 });
    expect(report.metrics.e2e).toMatchObject({ count: 5, maxMs: 3000 });
    expect(report.metrics.itl.count).toBe(15);
    expect(report.metrics.scheduleLag.count).toBe(10);
    expect(report.metrics.socketReady.count).toBe(9);
  });

  it('replica shares cover every response (errors too, unnamed as null) and sum to 1', () => {
    const report = buildReport(records, { windowMs: 2000 });
    expect(report.replicas).toEqual([
      // Every record here was sent at 0 and lasted 500 ms: all of a replica's overlap.
      { replica: 'a', requests: 4, completed: 2, share: 4 / 9, peakInFlight: 4 },
      { replica: 'b', requests: 3, completed: 2, share: 3 / 9, peakInFlight: 3 },
      { replica: null, requests: 2, completed: 1, share: 2 / 9, peakInFlight: 2 },
    ]);
    expect(report.replicas.reduce((sum, entry) => sum + entry.share, 0)).toBeCloseTo(1, 12);
  });

  it.each([
    [{ ttftMs: 100 }, 4],
    [{ e2eMs: 1000 }, 4],
    [{ ttftMs: 100, e2eMs: 1000 }, 3],
    [{ ttftMs: 30, e2eMs: 300 }, 1],
    [{ tpotMs: 5 }, 0],
    [{}, 5],
  ])('goodput with SLO %j: %i requests', (slo, count) => {
    const report = buildReport(records, { windowMs: 2000, slo });
    expect(report.goodput).toEqual({ slo, requests: count, share: count / 10, perS: count / 2 });
  });

  it("peak in flight per replica: the most of its requests open at once (touching ends do not overlap)", () => {
    const at = (sentAtMs: number, elapsedMs: number, replica: string) => record({ sentAtMs, elapsedMs, replica });
    const peaks = peakInFlight([at(0, 100, 'a'), at(50, 100, 'a'), at(100, 10, 'a'), at(120, 100, 'a'), at(0, 100, 'b'), at(100, 100, 'b'), failed('connect-error', { status: null, replica: 'b', sentAtMs: 0, elapsedMs: 1000 })]);
    // a: [0,100) [50,150) [100,110) [120,220): never more than two at once (50-100, 100-110, 120-150).
    expect(peaks.get('a')).toBe(2);
    // b: back to back, and the connect error never reached it.
    expect(peaks.get('b')).toBe(1);
    expect(peakInFlight([at(0, 10, 'c'), at(1, 10, 'c'), at(2, 10, 'c')]).get('c')).toBe(3);
  });

  it('goodput is null without an SLO', () => {
    expect(buildReport(records, { windowMs: 2000 }).goodput).toBeNull();
  });

  it('no records: zero rates, null metrics, no replicas, and JSON-safe', () => {
    const report = buildReport([], { windowMs: 0, slo: { ttftMs: 100 } });
    expect(report.requests).toEqual({ total: 0, completed: 0, failed: 0 });
    expect(report.throughput).toEqual({ offeredPerS: null, completedPerS: 0, outputTokens: 0, outputTokensPerS: 0 });
    expect(report.metrics.ttft.p99Ms).toBeNull();
    expect(report.replicas).toEqual([]);
    expect(report.goodput).toEqual({ slo: { ttftMs: 100 }, requests: 0, share: 0, perS: 0 });
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
    expect(formatReport(report)).toContain('requests: 0');
  });

  it('is a plain JSON-serialisable object', () => {
    const report = buildReport(records, {
      windowMs: 2000,
      slo: { ttftMs: 100 },
      trace: { seed: 1, ratePerS: 5, durationS: 2, mix: 'mixed', arrivals: 'poisson', model: 'm', requests: 10 },
      target: { baseUrl: 'http://127.0.0.1:1', path: null },
    });
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
  });
});

describe('formatReport', () => {
  const report = buildReport(
    [record({ replica: 'gpu-a' }), record({ replica: 'gpu-b' }), failed('client-timeout', { status: null, replica: null }), failed('http-status', { status: 429 })],
    {
      windowMs: 4000,
      slo: { ttftMs: 100, e2eMs: 1000 },
      trace: { seed: 7, ratePerS: 1, durationS: 4, mix: 'mixed', arrivals: 'uniform', model: 'm', requests: 4 },
      target: { baseUrl: 'http://127.0.0.1:8080', path: null },
    },
  );
  const text = formatReport(report);
  const lines = text.split('\n');

  it.each(METRIC_ROWS.map((row) => [row.label, row.key] as const))('has a row for %s with count and percentiles', (label, key) => {
    const line = lines.find((candidate) => candidate.startsWith(label + ' '));
    expect(line, text).toBeDefined();
    const metric = report.metrics[key];
    const cells = (line as string).slice(label.length).trim().split(/\s+/);
    expect(cells).toHaveLength(6);
    expect(cells[0]).toBe(String(metric.count));
  });

  it('has the header, the trace, throughput, goodput, errors and replica rows', () => {
    expect(text).toMatch(/metric \(ms\)\s+count\s+mean\s+p50\s+p90\s+p99\s+max/);
    expect(text).toContain('trace: mix mixed, uniform arrivals at 1/s for 4 s, seed 7');
    expect(text).toContain('requests: 4 (completed 2, failed 2)');
    expect(text).toContain('1.00 offered req/s, 0.50 completed req/s');
    expect(text).toContain('goodput (ttft <= 100 ms, e2e <= 1000 ms): 2 requests, 50.0%');
    expect(text).toContain('errors: client-timeout 1, http-status 1 (HTTP 429×1)');
    expect(text).toMatch(/gpu-a\s+1\s+1\s+33\.3%/);
    expect(text).toMatch(/gpu-b\s+1\s+1\s+33\.3%/);
  });

  it('prints every error kind it counts, and only those', () => {
    const errorLine = lines.find((line) => line.startsWith('errors: ')) as string;
    // 'timeout' is a suffix of 'client-timeout': match whole entries ("kind count").
    const printed = (kind: string) => new RegExp(`(?:: |, )${kind} \\d`).test(errorLine);
    for (const kind of ERROR_KINDS) expect(printed(kind), kind).toBe(report.errors.byKind[kind] > 0);
  });
});
