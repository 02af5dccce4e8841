// bench:gateway's pure parts (bench/gateway/variants.ts, report.ts): the targets a run measures,
// the interleaved run order, wrk's output, medians, the ratios on the same nginx and engine, the
// tables and the results file. The benchmark itself runs nginx and wrk and asserts nothing.
import { describe, expect, it } from 'vitest';
import {
  GATEWAY_TARGETS,
  LLM_AWARE_TARGET,
  NATIVE_BASELINE,
  REFERENCE_BASELINE,
  VARIANTS,
  balancerFile,
  cellsOf,
  expandBundles,
  parseTargets,
  runSequence,
  selectVariants,
  skippedLines,
} from '../bench/gateway/variants';
import type { GatewayTarget, Variant } from '../bench/gateway/variants';
import { llmAwareLine, llmAwareRatios, median, parseWrk, problemLines, ratio, renderTable, renderTarget, resultsDocument, summarizeRuns, targetRows } from '../bench/gateway/report';
import type { Run, TargetRow } from '../bench/gateway/report';
import { NGINX_TARGETS } from '../testbed/lib/nginx-env';
import { loadBalancerFile } from '../plugins/nginx/generator/load';

const [TRIXIE, FORKY_NJS, FORKY_QJS] = GATEWAY_TARGETS;

describe('bench:gateway targets', () => {
  it('are the targets the real-nginx specs run on (LLMB_NGINX_TARGET)', () => {
    expect(GATEWAY_TARGETS.map((t) => t.name).sort()).toEqual(NGINX_TARGETS.slice().sort());
    for (const t of GATEWAY_TARGETS) expect(t.name).toBe(`${t.generation}/${t.engine}`);
  });

  it.each([
    [undefined, ['trixie/njs', 'forky/njs', 'forky/qjs']],
    ['', ['trixie/njs', 'forky/njs', 'forky/qjs']],
    ['forky/qjs', ['forky/qjs']],
    // The table order, whatever order they were named in; repeats once.
    ['forky/qjs,trixie/njs', ['trixie/njs', 'forky/qjs']],
    [' forky/njs , forky/njs ,', ['forky/njs']],
  ])('BENCH_TARGETS=%j runs %j', (text, names) => {
    expect(parseTargets(text).map((t) => t.name)).toEqual(names);
  });

  it('rejects an unknown target, naming the known ones', () => {
    expect(() => parseTargets('forky/qjs,bookworm/njs')).toThrow('unknown nginx target "bookworm/njs" (known: trixie/njs, forky/njs, forky/qjs)');
  });

  it('says once per reason which targets were left out', () => {
    const reason = 'nginx forky is not provisioned (node build/fetch-nginx.js --generation forky)';
    expect(
      skippedLines([
        { target: 'forky/njs', reason },
        { target: 'forky/qjs', reason },
      ]),
    ).toEqual([`bench:gateway: forky/njs, forky/qjs skipped: ${reason}`]);
    expect(skippedLines([])).toEqual([]);
  });
});

describe('bench:gateway variants', () => {
  it('hold both baselines, least-connections and the strategies of issue 14', () => {
    const names = VARIANTS.map((v) => v.name);
    expect(new Set(names).size).toBe(names.length);
    for (const name of [NATIVE_BASELINE, REFERENCE_BASELINE, LLM_AWARE_TARGET.of, ...LLM_AWARE_TARGET.rows]) expect(names).toContain(name);
    expect(VARIANTS.find((v) => v.name === NATIVE_BASELINE)?.kind).toBe('native');
    expect(VARIANTS.find((v) => v.name === REFERENCE_BASELINE)?.kind).toBe('reference');
  });

  it.each(GATEWAY_TARGETS.map((t) => [t.name, t] as const))('every llm-balancer variant is a valid balancer file on %s', (_name, target) => {
    for (const v of VARIANTS) {
      if (v.kind !== 'llm-balancer') continue;
      const loaded = loadBalancerFile(balancerFile(v.balancer, ['127.0.0.1:9001', '127.0.0.1:9002'], '127.0.0.1:8080', 2, target.engine));
      expect(loaded.ok, v.name).toBe(true);
      if (!loaded.ok) continue;
      expect(loaded.nginx.js_engine).toBe(target.engine);
      expect(loaded.config.replicas.map((r) => r.address)).toEqual(['127.0.0.1:9001', '127.0.0.1:9002']);
      expect(loaded.config.retries).toBe(1);
      expect(loaded.config.strategy).toBe(v.name.replace(/^njs /, '').replace(/ js_set path$/, ''));
    }
  });

  it('BENCH_VARIANTS keeps the rows named and always both baselines, in table order', () => {
    expect(selectVariants(VARIANTS, 'tokens,round').map((v) => v.name)).toEqual([NATIVE_BASELINE, REFERENCE_BASELINE, 'njs round-robin', 'njs least-tokens']);
    expect(selectVariants(VARIANTS, undefined)).toEqual(VARIANTS);
    expect(selectVariants(VARIANTS, ' , ')).toEqual(VARIANTS);
  });

  it('BENCH_NJS_PATHS runs each llm-balancer row once per bundle, next to each other', () => {
    const some = selectVariants(VARIANTS, 'round-robin');
    const expanded = expandBundles(some, 'old=/tmp/a,new=/tmp/b');
    expect(expanded.map((v) => v.name)).toEqual([NATIVE_BASELINE, REFERENCE_BASELINE, 'njs round-robin [old]', 'njs round-robin [new]']);
    expect(expanded.filter((v) => v.kind === 'llm-balancer').map((v) => (v as Extract<Variant, { kind: 'llm-balancer' }>).jsPath)).toEqual(['/tmp/a', '/tmp/b']);
    expect(expandBundles(some, undefined)).toEqual(some);
    expect(() => expandBundles(some, 'old')).toThrow('BENCH_NJS_PATHS takes label=DIR pairs, got "old"');
  });
});

describe('bench:gateway run order', () => {
  const variants = [
    { name: 'a', kind: 'native' as const },
    { name: 'b', kind: 'reference' as const },
    { name: 'c', kind: 'llm-balancer' as const },
  ];

  it('runs native rows once per nginx, the others once per target', () => {
    expect(cellsOf(variants[0], GATEWAY_TARGETS)).toEqual(['trixie', 'forky']);
    expect(cellsOf(variants[1], GATEWAY_TARGETS)).toEqual(['trixie/njs', 'forky/njs', 'forky/qjs']);
    expect(cellsOf(variants[0], [FORKY_NJS, FORKY_QJS])).toEqual(['forky']);
  });

  it('interleaves: each variant on every target before the next, each round one variant and one target later', () => {
    const jobs = runSequence(variants, [TRIXIE, FORKY_QJS], 2).map((j) => `${j.round}:${j.variant}@${j.on}`);
    expect(jobs).toEqual([
      '0:a@trixie', '0:a@forky',
      '0:b@trixie/njs', '0:b@forky/qjs',
      '0:c@trixie/njs', '0:c@forky/qjs',
      '1:b@forky/qjs', '1:b@trixie/njs',
      '1:c@forky/qjs', '1:c@trixie/njs',
      '1:a@forky', '1:a@trixie',
    ]);
  });

  it('runs every (variant, place) exactly once per round', () => {
    const targets = GATEWAY_TARGETS.slice();
    const jobs = runSequence(VARIANTS, targets, 5);
    const perRound = VARIANTS.reduce((n, v) => n + cellsOf(v, targets).length, 0);
    expect(jobs.length).toBe(5 * perRound);
    const counts = new Map<string, number>();
    for (const j of jobs) counts.set(`${j.variant}@${j.on}`, (counts.get(`${j.variant}@${j.on}`) ?? 0) + 1);
    expect([...counts.values()].every((n) => n === 5)).toBe(true);
    expect(counts.size).toBe(perRound);
    // No variant opens every round.
    const openers = new Set([0, 1, 2, 3, 4].map((round) => jobs.find((j) => j.round === round)?.variant));
    expect(openers.size).toBe(5);
  });
});

const WRK_OUTPUT = `Running 2s test @ http://127.0.0.1:40000/v1/chat/completions
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms    2.10ms  40.00ms   95.00%
    Req/Sec    27.10k     1.20k   29.00k    80.00%
  Latency Distribution
     50%  930.00us
     75%    1.10ms
     90%    1.50ms
     99%    3.88ms
  54108 requests in 2.00s, 12.34MB read
  Socket errors: connect 0, read 0, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:  27054.12
Transfer/sec:      6.17MB
`;

describe('bench:gateway wrk output', () => {
  it('reads req/s, requests, p50 and p99 in ms, non-2xx and socket errors', () => {
    const r = parseWrk(WRK_OUTPUT);
    expect(r.requestsPerSecond).toBe(27054.12);
    expect(r.requests).toBe(54108);
    expect(r.p50Ms).toBeCloseTo(0.93, 10);
    expect(r.p99Ms).toBe(3.88);
    expect(r.non2xx).toBe(7);
    expect(r.socketErrors).toBe('Socket errors: connect 0, read 0, write 0, timeout 2');
  });

  it('NaN for what wrk did not print, 0 non-2xx and no socket errors when it says nothing of them', () => {
    const r = parseWrk('something else');
    expect([r.requestsPerSecond, r.requests, r.p50Ms, r.p99Ms].every(Number.isNaN)).toBe(true);
    expect(r.non2xx).toBe(0);
    expect(r.socketErrors).toBeNull();
    expect(parseWrk('     99%    1.50s\n').p99Ms).toBe(1500);
  });
});

function ok(variant: string, on: string, round: number, rps: number, cpu: number, extra: Partial<Run> = {}): Run {
  return { variant, on, round, error: null, requestsPerSecond: rps, requests: rps * 2, p50Ms: 1, p99Ms: 3, non2xx: 0, socketErrors: null, cpuUsPerRequest: cpu, errorLog: null, ...extra } as Run;
}

describe('bench:gateway medians and ratios', () => {
  it('median of odd and even counts; NaN of none', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it.each([
    [2, 4, 0.5],
    [2, 0, null],
    [2, null, null],
    [NaN, 4, null],
    [2, Infinity, null],
  ])('ratio(%s, %s) = %s', (value, reference, expected) => {
    expect(ratio(value, reference)).toBe(expected);
  });

  it('summarizes each (variant, place) over its rounds: medians, the median run by CPU, failures apart', () => {
    const s = summarizeRuns([
      ok('x', 'forky/qjs', 0, 100, 30, { non2xx: 1 }),
      ok('x', 'forky/qjs', 1, 300, 10, { non2xx: 2 }),
      ok('x', 'forky/qjs', 2, 200, 20, { non2xx: 3, errorLog: '[error] js exception' }),
      { variant: 'x', on: 'forky/qjs', round: 3, error: 'nginx did not start' },
      ok('x', 'trixie/njs', 0, 50, 40),
    ]);
    const x = s.get('x\u0000forky/qjs')!;
    expect(x).toMatchObject({ requestsPerSecond: 200, cpuUsPerRequest: 20, runs: 3, failedRuns: 1, error: 'nginx did not start', non2xx: 3, errorLog: '[error] js exception' });
    expect(s.get('x\u0000trixie/njs')).toMatchObject({ requestsPerSecond: 50, runs: 1, failedRuns: 0, error: null });
  });

  it('ratios on the same nginx (native, shared by its engines) and the same engine (the reference)', () => {
    const runs: Run[] = [
      ok(NATIVE_BASELINE, 'trixie', 0, 40000, 20),
      ok(NATIVE_BASELINE, 'forky', 0, 50000, 16),
      ok(REFERENCE_BASELINE, 'trixie/njs', 0, 30000, 30),
      ok(REFERENCE_BASELINE, 'forky/qjs', 0, 35000, 25),
      ok('njs least-connections', 'trixie/njs', 0, 10000, 90),
      ok('njs least-connections', 'forky/qjs', 0, 12500, 100),
    ];
    const summaries = summarizeRuns(runs);
    const variants = VARIANTS.filter((v) => [NATIVE_BASELINE, REFERENCE_BASELINE, 'njs least-connections'].includes(v.name));
    const qjs = targetRows(FORKY_QJS, variants, summaries);
    expect(qjs.map((r) => [r.variant, r.on])).toEqual([
      [NATIVE_BASELINE, 'forky'],
      [REFERENCE_BASELINE, 'forky/qjs'],
      ['njs least-connections', 'forky/qjs'],
    ]);
    const lc = qjs[2];
    expect(lc.vsNativeLeastConn).toBe(0.25);
    expect(lc.cpuVsNative).toBe(6.25);
    expect(lc.cpuVsReference).toBe(4);
    expect(qjs[0].cpuVsReference).toBe(16 / 25);
    const trixie = targetRows(TRIXIE, variants, summaries);
    expect(trixie[2]).toMatchObject({ vsNativeLeastConn: 0.25, cpuVsNative: 4.5, cpuVsReference: 3 });
    // forky/njs never ran its own rows: only the shared native row, with no reference to divide by.
    const njs = targetRows(FORKY_NJS, variants, summaries);
    expect(njs.map((r) => r.variant)).toEqual([NATIVE_BASELINE]);
    expect(njs[0].cpuVsReference).toBeNull();
  });
});

function row(variant: string, cpu: number, extra: Partial<TargetRow> = {}): TargetRow {
  return {
    variant,
    on: 'forky/qjs',
    requestsPerSecond: 10000,
    requests: 20000,
    p50Ms: 1.234,
    p99Ms: 5.678,
    non2xx: 0,
    socketErrors: null,
    cpuUsPerRequest: cpu,
    runs: 1,
    failedRuns: 0,
    error: null,
    errorLog: null,
    vsNativeLeastConn: 0.3456,
    cpuVsNative: 5.5,
    cpuVsReference: 3.25,
    ...extra,
  };
}

describe('bench:gateway issue 14 check', () => {
  it('each LLM-aware row against least-connections, within or over 1.3x', () => {
    const rows = [row('njs least-connections', 100), row('njs consistent-hash', 125), row('njs least-tokens', 131), row('njs round-robin', 90)];
    expect(llmAwareRatios(rows)).toEqual([
      { variant: 'njs consistent-hash', cpuVsLeastConnections: 1.25, within: true },
      { variant: 'njs least-tokens', cpuVsLeastConnections: 1.31, within: false },
    ]);
    expect(llmAwareLine(rows)).toBe('CPU per request vs njs least-connections (issue 14: within 1.3x): consistent-hash 1.25x (within), least-tokens 1.31x (over)');
  });

  it('says nothing without least-connections or without the rows', () => {
    expect(llmAwareLine([row('njs consistent-hash', 125)])).toBeNull();
    expect(llmAwareLine([row('njs least-connections', 100)])).toBeNull();
    expect(llmAwareRatios([row('njs prefix-affinity', 125)])).toEqual([{ variant: 'njs prefix-affinity', cpuVsLeastConnections: null, within: null }]);
  });
});

describe('bench:gateway tables and results file', () => {
  it('renders a Markdown table with aligned columns, dashes for missing ratios, "failed" for a row that never ran', () => {
    const table = renderTable([
      row(NATIVE_BASELINE, 16, { vsNativeLeastConn: 1, cpuVsNative: 1, cpuVsReference: null }),
      row('njs least-tokens', 0, { runs: 0, failedRuns: 1, error: 'nginx did not start: [emerg] x', requestsPerSecond: NaN, cpuUsPerRequest: NaN }),
    ]);
    const lines = table.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^\| variant +\| req\/s +\| vs native least_conn \| p50 ms \| p99 ms \| nginx CPU µs\/req \| CPU vs native \| CPU vs hand-written LC \| non-2xx \|$/);
    expect(new Set(lines.map((l) => l.length)).size).toBe(1);
    expect(lines[2].split('|').map((c) => c.trim())).toEqual(['', NATIVE_BASELINE, '10000', '1.00', '1.23', '5.68', '16.0', '1.00x', '—', '0', '']);
    expect(lines[3].split('|').map((c) => c.trim())).toEqual(['', 'njs least-tokens', 'failed', '—', '—', '—', '—', '—', '—', '—', '']);
  });

  it('lists what did not work: failed runs, non-2xx answers, module errors', () => {
    expect(
      problemLines([
        row('a', 1, { runs: 2, failedRuns: 1, error: 'nginx did not start' }),
        row('b', 1, { non2xx: 5, requests: 100 }),
        row('c', 1, { errorLog: '[error] 1#1: js exception: x' }),
        row('d', 1),
      ]),
    ).toEqual(['a: 1 of 3 runs failed: nginx did not start', 'b: 5 non-2xx answers of 100', 'c: nginx logged: [error] 1#1: js exception: x']);
  });

  it("renders a target's section: heading with versions and engine, table, the issue 14 line, problems", () => {
    const text = renderTarget({
      target: 'forky/qjs',
      generation: 'forky',
      engine: 'qjs',
      nginx: '1.30.6',
      njs: '1.0.2',
      rows: [row('njs least-connections', 100), row('njs prefix-affinity', 120, { non2xx: 3 })],
    });
    expect(text.split('\n')[0]).toBe('### forky/qjs: nginx 1.30.6 + njs 1.0.2, js_engine qjs (native rows: the same runs for every engine of this nginx)');
    expect(text).toContain('prefix-affinity 1.20x (within)');
    expect(text).toContain('- njs prefix-affinity: 3 non-2xx answers of 20000');
  });

  it('writes schema 2: one entry per target with its rows and the issue 14 ratios, the skipped targets; NaN as null in JSON', () => {
    const target: GatewayTarget = FORKY_QJS;
    const doc = resultsDocument({
      date: '2026-12-03T00:00:00.000Z',
      machine: { cpus: 2 },
      settings: { durationS: 2, connections: 32, workers: 2, rounds: 1, request: 'GET /v1/chat/completions (no body)', wrk: 'trixie (debian-trixie)' },
      targets: [{ target: target.name, generation: target.generation, engine: target.engine, nginx: '1.30.6', njs: '1.0.2', rows: [row('njs least-connections', 100), row('njs least-tokens', 0, { runs: 0, cpuUsPerRequest: NaN })] }],
      skipped: [{ target: 'trixie/njs', reason: 'not asked' }],
    });
    const parsed = JSON.parse(JSON.stringify(doc));
    expect(parsed.schema).toBe(2);
    expect(parsed.targets[0].target).toBe('forky/qjs');
    expect(parsed.targets[0].rows[1].cpuUsPerRequest).toBeNull();
    expect(parsed.targets[0].llmAware).toEqual([{ variant: 'njs least-tokens', cpuVsLeastConnections: null, within: null }]);
    expect(parsed.skipped).toEqual([{ target: 'trixie/njs', reason: 'not asked' }]);
  });
});
