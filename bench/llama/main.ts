// `npm run bench:llama`: the strategies in front of two REAL llama-server replicas (llama.cpp,
// Debian's llama.cpp-tools via build/fetch-llama.js, the random-weight model of
// testbed/llama/tiny-model.ts BENCH_MODEL). The same seeded shared-prefix trace is replayed open
// loop through each row's gateway; the replicas are restarted before each row (empty caches, zeroed
// counters) and what the servers themselves count is read from their /metrics afterwards.
//
// The workload: K long system prompts (agents, tool lists) shared by all requests, each request
// one of them (uniformly) plus a short question of its own; streamed, a fixed number of output
// tokens (ignore_eos: the random model's end-of-text would otherwise end answers at random).
//
// Cache settings, all llama.cpp's own (a slot keeps the prompt it last ran; with --cache-ram, a
// prompt a slot moves on from is saved to host memory and restored when a request for it comes):
//   budget   --cache-ram 16 (MiB): a saved prompt of this workload (~1,950 tokens) takes ~3.8 MiB
//            with BENCH_MODEL (2 KiB of KV per token; llama-server logs each entry's size), so a
//            replica holds 4 in RAM plus what its 2 slots hold: about 5 of the 8 shared prompts.
//            The fleet's caches together hold the working set, one replica's only part of it — the
//            regime cache-aware routing is for (the emulator's fleet-prefixes), as on a GPU server
//            whose KV cache holds a few long prompts;
//   default  llama.cpp's default --cache-ram 8192 MiB: with this small model every prompt fits,
//            so after one miss per prompt per replica nearly everything hits whatever the routing;
//   slots    --cache-ram 0: only what the slots hold (one prompt each); a request whose prompt's
//            slot is busy takes another and overwrites it, so concurrency itself evicts. Not in the
//            default run.
//
// Rows: `nginx round-robin` (nginx's own upstream, what users have), the njs module's
// prefix-affinity and llm, and the Kong path's llm (the plugin in the real kong-js-pluginserver
// behind the shootout's Kong stand-in). Reported per row: the servers' prompt-cache hit rate
// (reused prompt tokens / prompt tokens looked up, from llamacpp:prompt_tokens_cached_total and
// llamacpp:prompt_tokens_total), each replica's share of the prompt tokens, TTFT p50/p99, e2e p50,
// goodput at TTFT ≤ 1 s, failures; and every row's ratio to round robin's.
//
// A 2-core machine: each replica gets one thread (one core), and nginx, the plugin server and the
// load generator share the same two cores, so absolute numbers are this machine's, and the
// comparison is what holds: every row pays the same overhead.

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseReplicaMetrics } from '../../shared/replica-metrics';
import { startKongGateway } from '../../testbed/kong-gateway/gateway';
import { BENCH_MODEL } from '../../testbed/llama/tiny-model';
import { startLlamaServer } from '../../testbed/lib/llama-process';
import type { LlamaServer } from '../../testbed/lib/llama-process';
import { nativeNginxConf } from '../../testbed/lib/native-nginx.js';
import { startBalancer } from '../../testbed/lib/nginx-balancer';
import { createPrefix, freePort, startNginx } from '../../testbed/lib/nginx-process';
import { REPO_ROOT } from '../../testbed/lib/nginx-env';
import { createRandom } from '../../testbed/loadgen/random';
import type { Random } from '../../testbed/loadgen/random';
import { runTrace } from '../../testbed/loadgen/run';
import type { Trace } from '../../testbed/loadgen/run';
import type { ChatCompletionBody } from '../../testbed/loadgen/mixes';

export const ROWS = ['nginx round-robin', 'prefix-affinity', 'llm', 'kong llm'] as const;
export type Row = (typeof ROWS)[number];
export const CACHES = ['budget', 'default', 'slots'] as const;
const DEFAULT_CACHES: CacheSetting[] = ['budget', 'default'];
const CACHE_ARGS: Record<CacheSetting, string[]> = { budget: ['--cache-ram', '16'], default: [], slots: ['--cache-ram', '0'] };
export type CacheSetting = (typeof CACHES)[number];

export interface WorkloadOptions {
  seed: number;
  ratePerS: number;
  durationS: number;
  /** K shared system prompts. */
  prefixes: number;
  /** Characters of each (~2.1 characters per token with the tiny model's vocabulary). */
  prefixChars: number;
  outputTokens: number;
}

const WORDS = [
  'the', 'of', 'and', 'to', 'in', 'is', 'that', 'for', 'it', 'as', 'with', 'on', 'be', 'at', 'by', 'this', 'are', 'or', 'from',
  'tool', 'agent', 'search', 'invoice', 'customer', 'schema', 'field', 'return', 'value', 'list', 'text', 'order', 'account',
  'policy', 'refund', 'status', 'query', 'table', 'report', 'summary', 'date', 'amount', 'currency', 'region', 'product',
];

function words(random: Random, chars: number): string {
  let text = '';
  while (text.length < chars) text += WORDS[Math.floor(random.next() * WORDS.length)] + ' ';
  return text;
}

/** The seeded trace: Poisson arrivals, each request one of K system prompts plus its own question. */
export function sharedPrefixTrace(options: WorkloadOptions): Trace {
  const random = createRandom(options.seed, 'llama-bench');
  const systems: string[] = [];
  for (let k = 0; k < options.prefixes; k++) systems.push(`You are agent ${k}. ` + words(random, options.prefixChars));
  const entries: Trace['entries'] = [];
  let at = 0;
  for (let i = 0; ; i++) {
    at += (-Math.log(1 - random.next()) / options.ratePerS) * 1000;
    if (at >= options.durationS * 1000) break;
    const k = Math.floor(random.next() * options.prefixes);
    const question = `Question ${i}: ${words(random, 60)}?`;
    entries.push({
      atMs: at,
      request: {
        id: `q${i}`,
        kind: 'shared-prefix',
        path: '/v1/chat/completions',
        headers: {},
        body: {
          model: 'random-llama',
          messages: [
            { role: 'system', content: systems[k] },
            { role: 'user', content: question },
          ],
          max_tokens: options.outputTokens,
          stream: true,
          stream_options: { include_usage: true },
          // llama.cpp: generate exactly max_tokens whatever the random model samples.
          ignore_eos: true,
        } as ChatCompletionBody,
        promptTokens: Math.ceil((systems[k].length + question.length) / 4),
        outputTokens: options.outputTokens,
        sessionId: null,
        prefixIndex: k,
      },
    });
  }
  return { seed: options.seed, ratePerS: options.ratePerS, durationS: options.durationS, mix: 'llama-shared-prefix', arrivals: 'poisson', model: 'random-llama', api: 'chat', entries };
}

interface Gateway {
  url: string;
  stop(): Promise<string[]>;
}

async function startGateway(row: Row, replicas: LlamaServer[]): Promise<Gateway> {
  const addresses = replicas.map((r) => `127.0.0.1:${r.port}`);
  if (row === 'nginx round-robin') {
    const port = await freePort();
    const prefix = createPrefix('bench-llama-native');
    const conf = nativeNginxConf({ port, servers: addresses, balancing: null, workers: 2, keepalive: 64, httpDirectives: ['client_max_body_size 4m;'], locationDirectives: ['proxy_read_timeout 300s;'] });
    const nginx = await startNginx({ conf, port, prefix });
    return {
      url: `http://127.0.0.1:${port}`,
      async stop() {
        await nginx.stop();
        prefix.remove();
        return [];
      },
    };
  }
  const strategy = row === 'kong llm' ? 'llm' : row;
  // Replica ids are their addresses on both gateways (the Kong plugin's are): a new prefix's
  // rendezvous owner is hashed from the ids, so every row of a run places the 8 prompts alike.
  const config = { strategy, replicas: addresses.map((address) => ({ id: address, address })), replica_metrics: { interval_s: 0.25 } };
  if (row === 'kong llm') {
    const kong = await startKongGateway({ config });
    return {
      url: kong.url,
      async stop() {
        const errors = kong.errors();
        await kong.stop();
        return errors;
      },
    };
  }
  const balancer = await startBalancer(config, `bench-llama-${strategy}`);
  return {
    url: `http://127.0.0.1:${balancer.port}`,
    async stop() {
      const errors = balancer.moduleErrors();
      await balancer.stop();
      return errors;
    },
  };
}

interface ServerCounts {
  computed: number;
  cached: number;
}

async function countsOf(server: LlamaServer): Promise<ServerCounts> {
  const text = await (await fetch(server.url + '/metrics')).text();
  const load = parseReplicaMetrics(text);
  const hits = load.prefixHits ?? 0;
  return { computed: (load.prefixQueries ?? 0) - hits, cached: hits };
}

export interface RowResult {
  cache: CacheSetting;
  row: Row;
  requests: number;
  completed: number;
  failed: number;
  hitRate: number;
  /** Each replica's share of the prompt tokens looked up. */
  tokenShares: number[];
  ttftP50Ms: number;
  ttftP99Ms: number;
  e2eP50Ms: number;
  goodputShare: number;
  gatewayErrors: string[];
}

const SLO_TTFT_MS = 1000;

async function runRow(cache: CacheSetting, row: Row, trace: Trace, replicas: LlamaServer[]): Promise<RowResult> {
  // Fresh replicas: empty prompt caches, counters from zero.
  for (const r of replicas) await r.stop();
  await Promise.all(replicas.map((r) => r.start()));
  const gateway = await startGateway(row, replicas);
  let report: Awaited<ReturnType<typeof runTrace>>;
  let counts: ServerCounts[];
  let gatewayErrors: string[];
  try {
    // A scrape round for the strategies that read /metrics, before the first request.
    await new Promise((resolve) => setTimeout(resolve, 600));
    report = await runTrace(trace, { baseUrl: gateway.url, timeoutMs: 120_000, slo: { ttftMs: SLO_TTFT_MS } });
    counts = await Promise.all(replicas.map(countsOf));
  } finally {
    // Stopped before the result is built, so the result carries what the gateway logged.
    gatewayErrors = await gateway.stop();
    if (gatewayErrors.length > 0) console.error(`${row}: gateway errors:\n  ${gatewayErrors.join('\n  ')}`);
  }
  const looked = counts.map((c) => c.computed + c.cached);
  const total = looked.reduce((a, b) => a + b, 0);
  return {
    cache,
    row,
    requests: report.requests.total,
    completed: report.requests.completed,
    failed: report.requests.failed,
    hitRate: total > 0 ? counts.reduce((a, c) => a + c.cached, 0) / total : 0,
    tokenShares: looked.map((t) => (total > 0 ? t / total : 0)),
    ttftP50Ms: report.metrics.ttft.p50Ms ?? NaN,
    ttftP99Ms: report.metrics.ttft.p99Ms ?? NaN,
    e2eP50Ms: report.metrics.e2e.p50Ms ?? NaN,
    goodputShare: report.goodput?.share ?? 0,
    gatewayErrors,
  };
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const ms = (x: number) => `${Math.round(x)} ms`;
const ratio = (x: number, base: number) => (base > 0 ? `${(x / base).toFixed(2)}x` : 'n/a');

export function formatTable(results: RowResult[]): string {
  const lines: string[] = [];
  for (const cache of CACHES) {
    const rows = results.filter((r) => r.cache === cache);
    if (rows.length === 0) continue;
    const base = rows.find((r) => r.row === 'nginx round-robin') ?? rows[0];
    lines.push(`\ncache: ${cache}`);
    lines.push('| row | hit rate | replica token shares | TTFT p50 | TTFT p99 | e2e p50 | goodput (TTFT ≤ 1 s) | failed | round robin\'s TTFT p50 ÷ this row\'s |');
    lines.push('|---|---|---|---|---|---|---|---|---|');
    for (const r of rows) {
      lines.push(
        `| ${r.row} | ${pct(r.hitRate)} | ${r.tokenShares.map(pct).join(' / ')} | ${ms(r.ttftP50Ms)} | ${ms(r.ttftP99Ms)} | ${ms(r.e2eP50Ms)} | ${pct(r.goodputShare)} | ${r.failed}/${r.requests} | ${ratio(base.ttftP50Ms, r.ttftP50Ms)} |`,
      );
    }
  }
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: 'boolean', default: false },
      seed: { type: 'string', default: '42' },
      rate: { type: 'string', default: '2' },
      duration: { type: 'string', default: '60' },
      cache: { type: 'string', multiple: true },
      row: { type: 'string', multiple: true },
      out: { type: 'string' },
    },
  });
  const quick = values.quick === true;
  const workload: WorkloadOptions = {
    seed: Number(values.seed),
    ratePerS: Number(values.rate),
    durationS: quick ? 10 : Number(values.duration),
    prefixes: 8,
    prefixChars: 3200,
    outputTokens: 16,
  };
  const caches = (values.cache ?? DEFAULT_CACHES) as CacheSetting[];
  const rows = (values.row ?? ROWS.slice()) as Row[];
  for (const c of caches) if (!CACHES.includes(c)) throw new Error(`unknown --cache ${c} (known: ${CACHES.join(', ')})`);
  for (const r of rows) if (!ROWS.includes(r)) throw new Error(`unknown --row ${r} (known: ${ROWS.join(', ')})`);
  const trace = sharedPrefixTrace(workload);
  console.log(`bench:llama — ${trace.entries.length} requests, ${workload.prefixes} shared prompts of ${workload.prefixChars} characters, ${workload.outputTokens} output tokens, ${workload.ratePerS}/s for ${workload.durationS} s (seed ${workload.seed}); 2 replicas × 2 slots, 1 thread each`);
  const results: RowResult[] = [];
  for (const cache of caches) {
    const extraArgs = CACHE_ARGS[cache];
    const replicas = await Promise.all([0, 1].map(() => startLlamaServer({ model: BENCH_MODEL, slots: 2, threads: 1, contextTokens: 2 * 4096, alias: 'random-llama', extraArgs })));
    try {
      for (const row of rows) {
        const started = Date.now();
        const result = await runRow(cache, row, trace, replicas);
        results.push(result);
        console.log(`${cache} / ${row}: hit ${pct(result.hitRate)}, TTFT p50 ${ms(result.ttftP50Ms)} p99 ${ms(result.ttftP99Ms)}, goodput ${pct(result.goodputShare)}, failed ${result.failed} (${Math.round((Date.now() - started) / 1000)} s)`);
      }
    } finally {
      for (const r of replicas) await r.stop();
    }
  }
  const table = formatTable(results);
  console.log(table);
  const out = values.out ?? path.join(REPO_ROOT, 'bench', 'results', 'llama.json');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ workload, model: BENCH_MODEL, results }, null, 2) + '\n');
  console.log(`\nwrote ${path.relative(REPO_ROOT, out)}`);
}
