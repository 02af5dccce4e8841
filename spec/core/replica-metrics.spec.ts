// shared/replica-metrics.ts: the Prometheus text of vLLM, SGLang, llama.cpp, TGI and the repository's emulator
// parsed into the balancer's load signals. Fixtures under spec/fixtures/metrics/ are realistic
// /metrics bodies (HELP/TYPE lines, histograms, process metrics, `_created` series); emulator.txt
// was written by testbed/emulator/metrics.ts's renderMetrics, and a case below renders it afresh so
// the fixture cannot drift from what the emulator serves.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { metricNames, parseReplicaMetrics } from '../../shared/replica-metrics';
import type { ReplicaLoad } from '../../shared/replica-metrics';
import { createHistogram, INTER_TOKEN_BUCKETS_S, renderMetrics, TTFT_BUCKETS_S } from '../../testbed/emulator/metrics';
import type { EngineStats } from '../../testbed/emulator/model';

function fixture(name: string): string {
  return readFileSync(new URL(`../fixtures/metrics/${name}`, import.meta.url), 'utf8');
}

const NONE: ReplicaLoad = { running: null, waiting: null, kvUsage: null, prefixQueries: null, prefixHits: null, server: 'unknown' };

function load(partial: Partial<ReplicaLoad>): ReplicaLoad {
  return Object.assign({}, NONE, partial);
}

/** Escapes a label value as the exposition format (and prometheus_client) does. */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

describe('parseReplicaMetrics: real /metrics bodies', () => {
  it.each<[string, ReplicaLoad]>([
    ['vllm-v1.txt', { running: 3, waiting: 1, kvUsage: 0.09174311926605505, prefixQueries: 15873, prefixHits: 9216, server: 'vllm' }],
    ['vllm-v1-dp2.txt', { running: 11, waiting: 3, kvUsage: 0.87, prefixQueries: 215000, prefixHits: 121000, server: 'vllm' }],
    ['vllm-v0.8.txt', { running: 12, waiting: 6, kvUsage: 0.7542, prefixQueries: 2488320, prefixHits: 1105920, server: 'vllm' }],
    ['sglang.txt', { running: 3, waiting: 2, kvUsage: 0.42, prefixQueries: null, prefixHits: null, server: 'sglang' }],
    ['emulator.txt', { running: 5, waiting: 2, kvUsage: 0.4375, prefixQueries: 48213, prefixHits: 30144, server: 'vllm' }],
    // Captured from the real llama-server 0.7.0 (Debian forky) with one slot busy and one request
    // deferred: 45 prompt tokens computed and 83 reused, so 128 looked up.
    ['llamacpp-0.7.txt', { running: 1, waiting: 1, kvUsage: null, prefixQueries: 128, prefixHits: 83, server: 'llamacpp' }],
    ['tgi.txt', { running: 7, waiting: 4, kvUsage: null, prefixQueries: null, prefixHits: null, server: 'tgi' }],
  ])('%s', (name, expected) => {
    expect(parseReplicaMetrics(fixture(name))).toEqual(expected);
  });

  it.each(['vllm-v1.txt', 'sglang.txt', 'emulator.txt'])('reads %s the same with CRLF line ends', (name) => {
    const text = fixture(name);
    expect(parseReplicaMetrics(text.replace(/\n/g, '\r\n'))).toEqual(parseReplicaMetrics(text));
  });

  const stats = (over: Partial<EngineStats>): EngineStats =>
    Object.assign(
      {
        running: 0, waiting: 0, kvBlocksUsed: 0, kvBlocksWaiting: 0, kvBlocksTotal: 1000, kvUsage: 0, prefixQueries: 0, prefixHits: 0,
        promptTokens: 0, generationTokens: 0, completed: 0, cancelled: 0, steps: 0, lastStepMs: 0, lastStepBatch: 0,
        lastStepPrefills: 0, slowdown: 1, stalled: false, lora: null,
      },
      over,
    );

  it.each<[string, string, EngineStats]>([
    ['idle', 'emulated/llama-8b', stats({})],
    ['busy', 'emulated/llama-8b', stats({ running: 16, waiting: 41, kvBlocksUsed: 999, kvUsage: 0.999, prefixQueries: 1234567, prefixHits: 7654 })],
    ['a model name with quotes, braces and a backslash', 'we"ird} {model} \\ ,x="1"', stats({ running: 2, waiting: 1, kvUsage: 0.125, prefixQueries: 32, prefixHits: 16 })],
  ])('reads the true values from the emulator renderMetrics output (%s)', (_what, modelName, engine) => {
    const ttftSeconds = createHistogram(TTFT_BUCKETS_S);
    const interTokenSeconds = createHistogram(INTER_TOKEN_BUCKETS_S);
    ttftSeconds.observe(0.05);
    interTokenSeconds.observe(0.012);
    const text = renderMetrics({ modelName, engine, finished: { length: 1, stop: 2 }, ttftSeconds, interTokenSeconds });
    expect(parseReplicaMetrics(text)).toEqual({
      running: engine.running,
      waiting: engine.waiting,
      kvUsage: engine.kvUsage,
      prefixQueries: engine.prefixQueries,
      prefixHits: engine.prefixHits,
      server: 'vllm',
    });
  });
});

describe('parseReplicaMetrics: several series of one metric', () => {
  it('sums running, waiting and the prefix counters over engines and takes the fullest engine for kvUsage', () => {
    const text = [
      'vllm:num_requests_running{model_name="m",engine="0"} 7',
      'vllm:num_requests_running{model_name="m",engine="1"} 4',
      'vllm:num_requests_waiting{model_name="m",engine="0"} 2',
      'vllm:num_requests_waiting{model_name="m",engine="1"} 5',
      'vllm:kv_cache_usage_perc{model_name="m",engine="0"} 0.6',
      'vllm:kv_cache_usage_perc{model_name="m",engine="1"} 0.65',
      'vllm:prefix_cache_queries_total{model_name="m",engine="0"} 100',
      'vllm:prefix_cache_queries_total{model_name="m",engine="1"} 300',
      'vllm:prefix_cache_hits_total{model_name="m",engine="0"} 40',
      'vllm:prefix_cache_hits_total{model_name="m",engine="1"} 60',
    ].join('\n');
    // kvUsage: 0.65, not 1.25 (a sum) nor 0.625 (a mean that hides the fuller engine).
    expect(parseReplicaMetrics(text)).toEqual(load({ running: 11, waiting: 7, kvUsage: 0.65, prefixQueries: 400, prefixHits: 100, server: 'vllm' }));
  });

  it('sums series that differ by model_name', () => {
    const text = 'sglang:num_running_reqs{model_name="a"} 3.0\nsglang:num_running_reqs{model_name="b"} 4.0\nsglang:token_usage{model_name="a"} 0.2\nsglang:token_usage{model_name="b"} 0.3\n';
    expect(parseReplicaMetrics(text)).toEqual(load({ running: 7, kvUsage: 0.3, server: 'sglang' }));
  });

  it('property: for any per-engine values, counts are the sums and kvUsage the clamped maximum', () => {
    const engine = fc.record({
      running: fc.nat(1000),
      waiting: fc.nat(1000),
      kv: fc.double({ min: -0.5, max: 1.5, noNaN: true }),
      queries: fc.nat(10_000_000),
      hits: fc.nat(10_000_000),
    });
    fc.assert(
      fc.property(fc.array(engine, { minLength: 1, maxLength: 8 }), fc.string(), (engines, model) => {
        const lines: string[] = [];
        const series = (name: string, pick: (e: (typeof engines)[number]) => number) => {
          for (let i = 0; i < engines.length; i++) lines.push(`${name}{model_name="${escapeLabel(model)}",engine="${i}"} ${pick(engines[i])}`);
        };
        series('vllm:num_requests_running', (e) => e.running);
        series('vllm:num_requests_waiting', (e) => e.waiting);
        series('vllm:kv_cache_usage_perc', (e) => e.kv);
        series('vllm:prefix_cache_queries_total', (e) => e.queries);
        series('vllm:prefix_cache_hits_total', (e) => e.hits);
        const sum = (pick: (e: (typeof engines)[number]) => number) => engines.reduce((s, e) => s + pick(e), 0);
        const kvMax = Math.max.apply(null, engines.map((e) => e.kv));
        expect(parseReplicaMetrics(lines.join('\n'))).toEqual({
          running: sum((e) => e.running),
          waiting: sum((e) => e.waiting),
          kvUsage: Math.min(1, Math.max(0, kvMax)),
          prefixQueries: sum((e) => e.queries),
          prefixHits: sum((e) => e.hits),
          server: 'vllm',
        });
      }),
    );
  });
});

describe('parseReplicaMetrics: which name wins', () => {
  it.each<[string, string, Partial<ReplicaLoad>]>([
    [
      'the current KV name over the deprecated one, whichever comes first',
      'vllm:gpu_cache_usage_perc{engine="0"} 0.9\nvllm:kv_cache_usage_perc{engine="0"} 0.3',
      { kvUsage: 0.3 },
    ],
    [
      'the current prefix counters over the deprecated ones (not their sum)',
      'vllm:prefix_cache_queries_total 100\nvllm:gpu_prefix_cache_queries_total 100\nvllm:gpu_prefix_cache_hits_total 50\nvllm:prefix_cache_hits_total 50',
      { prefixQueries: 100, prefixHits: 50 },
    ],
    [
      'the deprecated KV name when the current one has no usable series',
      'vllm:kv_cache_usage_perc{engine="0"} NaN\nvllm:gpu_cache_usage_perc{engine="0"} 0.9',
      { kvUsage: 0.9 },
    ],
    [
      'vLLM over SGLang in a text with both, without blending the families',
      'sglang:num_running_reqs 9\nsglang:num_queue_reqs 8\nsglang:token_usage 0.7\nvllm:num_requests_running 1',
      { running: 1 },
    ],
  ])('%s', (_what, text, expected) => {
    expect(parseReplicaMetrics(text)).toEqual(load(Object.assign({ server: 'vllm' }, expected)));
  });

  const everyName: [string, string, string][] = [];
  const fields = Object.keys(metricNames()) as (keyof ReturnType<typeof metricNames>)[];
  for (let f = 0; f < fields.length; f++) {
    const names = metricNames()[fields[f]];
    for (let n = 0; n < names.length; n++) everyName.push([names[n], fields[f], names[n].startsWith('tgi_') ? 'tgi' : names[n].slice(0, names[n].indexOf(':'))]);
  }

  it.each(everyName)('reads %s alone into %s, server %s', (name, field, server) => {
    // llama.cpp's prefix counters only mean something together (looked up = computed + cached).
    const alone = server === 'llamacpp' && (field === 'prefixQueries' || field === 'prefixHits') ? {} : { [field]: 0.5 };
    expect(parseReplicaMetrics(`${name}{model_name="m"} 0.5\n`)).toEqual(load(Object.assign({ server: server as ReplicaLoad['server'] }, alone)));
  });

  it('llama.cpp: tokens looked up are the computed plus the reused ones; the reused ones are the hits', () => {
    expect(parseReplicaMetrics('llamacpp:prompt_tokens_total 300\nllamacpp:prompt_tokens_cached_total 700\nllamacpp:requests_processing 2\n')).toEqual(
      load({ server: 'llamacpp', running: 2, prefixQueries: 1000, prefixHits: 700 }),
    );
  });

  it('llama.cpp without the reused-token counter (older builds) tells no hit rate, not a 0% one', () => {
    expect(parseReplicaMetrics('llamacpp:prompt_tokens_total 300\nllamacpp:kv_cache_usage_ratio 0.25\n')).toEqual(load({ server: 'llamacpp', kvUsage: 0.25 }));
  });

  it('precedence of families: vLLM, SGLang, llama.cpp, TGI', () => {
    expect(parseReplicaMetrics('tgi_queue_size 3\nllamacpp:requests_deferred 5\n')).toEqual(load({ server: 'llamacpp', waiting: 5 }));
    expect(parseReplicaMetrics('tgi_queue_size 3\nsglang:num_queue_reqs 5\n')).toEqual(load({ server: 'sglang', waiting: 5 }));
  });

  it('lists exactly the documented names, in order of preference', () => {
    expect(metricNames()).toEqual({
      running: ['vllm:num_requests_running', 'sglang:num_running_reqs', 'llamacpp:requests_processing', 'tgi_batch_current_size'],
      waiting: ['vllm:num_requests_waiting', 'sglang:num_queue_reqs', 'llamacpp:requests_deferred', 'tgi_queue_size'],
      kvUsage: ['vllm:kv_cache_usage_perc', 'vllm:gpu_cache_usage_perc', 'sglang:token_usage', 'llamacpp:kv_cache_usage_ratio'],
      prefixQueries: ['vllm:prefix_cache_queries_total', 'vllm:gpu_prefix_cache_queries_total', 'llamacpp:prompt_tokens_total'],
      prefixHits: ['vllm:prefix_cache_hits_total', 'vllm:gpu_prefix_cache_hits_total', 'llamacpp:prompt_tokens_cached_total'],
    });
  });

  it.each([
    ['a `_total`-less counter name', 'vllm:prefix_cache_queries 100'],
    ['a `_created` series', 'vllm:prefix_cache_queries_created{engine="0"} 1.7530125e+09'],
    ['a longer name sharing the prefix', 'vllm:num_requests_running_max 4'],
    ['a name without its family prefix', 'num_requests_running 4'],
    ['a histogram bucket of another family', 'vllm:e2e_request_latency_seconds_bucket{le="0.3",engine="0"} 12.0'],
  ])('ignores %s', (_what, line) => {
    expect(parseReplicaMetrics(line)).toEqual(NONE);
  });
});

describe('parseReplicaMetrics: the exposition format', () => {
  it.each<[string, string, number | null]>([
    ['a value after labels', 'vllm:num_requests_running{engine="0"} 4', 4],
    ['a value without labels', 'vllm:num_requests_running 4', 4],
    ['empty labels', 'vllm:num_requests_running{} 4', 4],
    ['a trailing comma in the labels', 'vllm:num_requests_running{engine="0",} 4', 4],
    ['a millisecond timestamp after the value', 'vllm:num_requests_running{engine="0"} 4 1712345678901', 4],
    ['a timestamp after a label-less value', 'vllm:num_requests_running 4 1712345678901', 4],
    ['tabs and extra blanks', '  vllm:num_requests_running\t{engine="0"}\t 4 \t', 4],
    ['no blank between labels and value', 'vllm:num_requests_running{engine="0"}4', 4],
    ['Python float text', 'vllm:num_requests_running 4.0', 4],
    ['scientific notation', 'vllm:num_requests_running 1.5e+03', 1500],
    ['capital E and no sign', 'vllm:num_requests_running 2E1', 20],
    ['a leading dot', 'vllm:num_requests_running .5', 0.5],
    ['a plus sign', 'vllm:num_requests_running +3', 3],
    ['negative zero', 'vllm:num_requests_running -0.0', 0],
    ['`} ` inside a label value', 'vllm:num_requests_running{model_name="a} 99",engine="0"} 4', 4],
    ['an escaped quote then `} `', 'vllm:num_requests_running{model_name="say \\"} 99\\" ok",engine="0"} 4', 4],
    ['an escaped backslash before the closing quote', 'vllm:num_requests_running{model_name="C:\\\\",engine="0"} 4', 4],
    ['commas, `=` and `{` inside a label value', 'vllm:num_requests_running{model_name="a,b=c{d",engine="0"} 4', 4],
    ['an escaped newline inside a label value', 'vllm:num_requests_running{model_name="two\\nlines"} 4', 4],
    ['NaN', 'vllm:num_requests_running NaN', null],
    ['+Inf', 'vllm:num_requests_running +Inf', null],
    ['-Inf', 'vllm:num_requests_running -Inf', null],
    ['a negative count', 'vllm:num_requests_running -2', null],
    ['a word', 'vllm:num_requests_running four', null],
    ['a hex literal', 'vllm:num_requests_running 0x10', null],
    ['a number with a unit', 'vllm:num_requests_running 4req', null],
  ])('%s', (_what, line, running) => {
    expect(parseReplicaMetrics(line + '\n').running).toBe(running);
  });

  it('ignores NaN and infinite series but keeps the others of the same metric', () => {
    const text = [
      'vllm:num_requests_running{engine="0"} NaN',
      'vllm:num_requests_running{engine="1"} 3',
      'vllm:num_requests_running{engine="2"} +Inf',
      'vllm:kv_cache_usage_perc{engine="0"} +Inf',
      'vllm:kv_cache_usage_perc{engine="1"} 0.25',
      'vllm:kv_cache_usage_perc{engine="2"} NaN',
    ].join('\n');
    expect(parseReplicaMetrics(text)).toEqual(load({ running: 3, kvUsage: 0.25, server: 'vllm' }));
  });

  it('reports the server but null values when its only series are NaN', () => {
    expect(parseReplicaMetrics('sglang:token_usage NaN\n')).toEqual(load({ server: 'sglang' }));
  });

  it.each<[string, number]>([
    ['above 1', 1.3],
    ['below 0', -0.2],
  ])('clamps kvUsage %s', (_what, value) => {
    expect(parseReplicaMetrics(`vllm:kv_cache_usage_perc ${value}`).kvUsage).toBe(Math.min(1, Math.max(0, value)));
  });

  it('skips a line whose label block never closes and reads the next one', () => {
    const text = 'vllm:num_requests_running{model_name="a} 7\nvllm:num_requests_waiting{model_name="b"} 2\n';
    expect(parseReplicaMetrics(text)).toEqual(load({ waiting: 2, server: 'vllm' }));
  });

  it('leaves the metrics a text lacks null', () => {
    const text = '# HELP vllm:num_requests_running Number of requests in model execution batches.\n# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine="0"} 2.0\n';
    expect(parseReplicaMetrics(text)).toEqual(load({ running: 2, server: 'vllm' }));
  });

  it('reads nothing from comment lines that carry metric names and numbers', () => {
    expect(parseReplicaMetrics('# vllm:num_requests_running 5\n  # HELP sglang:token_usage 0.5\n')).toEqual(NONE);
  });

  it.each<[string, unknown]>([
    ['empty text', ''],
    ['blank lines', '\n\n \r\n\t\n'],
    ['only HELP and TYPE lines', '# HELP vllm:num_requests_running x\n# TYPE vllm:num_requests_running gauge\n'],
    ['an HTML error page', '<html><body><h1>502 Bad Gateway</h1></body></html>'],
    ['JSON', '{"running": 3, "waiting": 1}'],
    ['another exporter', 'node_load1 0.42\nprocess_cpu_seconds_total 12.5\n'],
    ['a name with no value', 'vllm:num_requests_running\nsglang:num_queue_reqs{model_name="m"}\n'],
    ['an unterminated label block', 'vllm:num_requests_running{model_name="m" 3'],
    ['Object.prototype names', 'constructor 1\n__proto__ 2\ntoString{a="b"} 3\nhasOwnProperty 4\n'],
    ['undefined (an adapter passing a failed fetch through)', undefined],
    ['null', null],
    ['a number', 42],
  ])('gives all nulls and server unknown for %s', (_what, text) => {
    expect(parseReplicaMetrics(text as string)).toEqual(NONE);
  });
});

describe('parseReplicaMetrics: properties', () => {
  function wellFormed(result: ReplicaLoad): void {
    expect(Object.keys(result).sort()).toEqual(['kvUsage', 'prefixHits', 'prefixQueries', 'running', 'server', 'waiting']);
    expect(['vllm', 'sglang', 'llamacpp', 'tgi', 'unknown']).toContain(result.server);
    const counts = [result.running, result.waiting, result.prefixQueries, result.prefixHits];
    for (let i = 0; i < counts.length; i++) {
      const c = counts[i];
      if (c !== null) expect(Number.isFinite(c) && c >= 0).toBe(true);
    }
    if (result.kvUsage !== null) expect(result.kvUsage >= 0 && result.kvUsage <= 1).toBe(true);
    if (result.server === 'unknown') expect(result).toEqual(NONE);
  }

  it('never throws on random text, and always returns a well-formed load', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 400 }), (text) => {
        wellFormed(parseReplicaMetrics(text));
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on random soups of exposition tokens, and always returns a well-formed load', () => {
    const allNames: string[] = [];
    const fields = Object.keys(metricNames()) as (keyof ReturnType<typeof metricNames>)[];
    for (let f = 0; f < fields.length; f++) allNames.push(...metricNames()[fields[f]]);
    const token = fc.oneof(
      fc.constantFrom(...allNames),
      fc.constantFrom('{', '}', '"', '\\', '\\"', ' ', '\t', '\n', '\r\n', ',', '=', '#', 'engine=', 'le="+Inf"'),
      fc.constantFrom('NaN', '+Inf', '-Inf', '1e3', '-1', '0.5', '2', '.', 'e', '1712345678901'),
      fc.string({ maxLength: 6 }),
    );
    fc.assert(
      fc.property(fc.array(token, { maxLength: 60 }), (tokens) => {
        wellFormed(parseReplicaMetrics(tokens.join('')));
      }),
      { numRuns: 1000 },
    );
  });

  it('reads the value whatever the (escaped) label values hold', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ maxLength: 20 }), fc.nat(100000), (model, other, value) => {
        const text = `vllm:num_requests_waiting{model_name="${escapeLabel(model)}",note="${escapeLabel(other)}",engine="0"} ${value}\n`;
        expect(parseReplicaMetrics(text)).toEqual(load({ waiting: value, server: 'vllm' }));
      }),
    );
  });

  it('gives the same load whatever the order of the lines', () => {
    const lines = fixture('vllm-v1-dp2.txt').split('\n');
    const expected = parseReplicaMetrics(lines.join('\n'));
    fc.assert(
      fc.property(fc.shuffledSubarray(lines, { minLength: lines.length, maxLength: lines.length }), (shuffled) => {
        expect(parseReplicaMetrics(shuffled.join('\n'))).toEqual(expected);
      }),
    );
  });
});
