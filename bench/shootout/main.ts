// The strategy shootout (`npm run bench`): the seed's comparison (SUMMARY §9: round robin vs least
// connections vs response-time aware on 4 replicas, mixed requests), reproduced with real nginx.
//
// One seeded trace (mix `mixed`, Poisson arrivals) is replayed, unchanged, through every row:
//   nginx round robin / nginx least_conn   nginx's own balancers (the baselines a user already has)
//   round-robin ... hybrid                 llm-balancer's njs module, config from the generator
//   kong round-robin / kong least-connections
//                                          llm-balancer's Kong plugin in the real kong-js-pluginserver
//                                          behind testbed/kong-gateway/ (a streaming proxy playing Kong)
//   oracle                                 the yardstick, no gateway: a router in the emulators' own
//                                          process that reads the replicas' true state (testbed/oracle/);
//                                          every row is also reported as a share of it (oracle-shares.ts)
// Each row gets fresh emulated replicas (a child process: no prefix cache or queue carries over,
// and the replicas' event loop is not the load generator's) and a fresh gateway. Replicas: h100,
// h100, a100, a100 (two fast, two ~0.8x capacity and 1.5x step time); the balancer config gives them
// weights 1, 1, 0.8, 0.8.
//
// Load levels are fractions of the capacity measured first (calibrate(): see there). Every row
// reports e2e latency (mean, p99), TTFT (p50, p99), completed req/s, output tok/s, errors and goodput
// under an SLO, with its ratio to nginx round robin. Writes <out>/shootout.json, shootout.svg and
// shootout.md (the BENCHMARKS.md section; with the default out dir BENCHMARKS.md is updated too).
// A benchmark, not a test: nothing here asserts a speed.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startBalancer } from '../../testbed/lib/nginx-balancer';
import type { Balancer } from '../../testbed/lib/nginx-balancer';
import { STRATEGIES } from '../../shared/config/schema';
import { hashString } from '../../shared/hash';
import { parseReplicaMetrics } from '../../shared/replica-metrics';
import { startJsonChild } from '../../testbed/lib/json-child';
import { loadNginxEnv, REPO_ROOT } from '../../testbed/lib/nginx-env';
import { nativeNginxConf } from '../../testbed/lib/native-nginx.js';
import { createPrefix, freePort, startNginx } from '../../testbed/lib/nginx-process';
import { startRedis } from '../../testbed/lib/redis-process';
import type { NginxInstance } from '../../testbed/lib/nginx-process';
import { MIXES, buildReport, buildTrace, createRandom, executeTrace, traceInfo, uniformInt } from '../../testbed/loadgen/index';
import type { Report, RequestRecord, Slo, Trace } from '../../testbed/loadgen/index';
import { renderChart } from './chart';
import { renderSection, renderTable, updateBenchmarksFile } from './format';
import type { Row, ShootoutResult } from './format';
import { ORACLE_ROW } from './oracle-shares';
import { DEFAULT_OVERLAP_WEIGHT } from '../../testbed/oracle/router';
import type { SuiteDefinition, SuiteOptions } from './suite';

export type Mode = 'full' | 'quick' | 'smoke';

export const PROFILES = ['h100', 'h100', 'a100', 'a100'];
export const WEIGHTS = [1, 1, 0.8, 0.8];
/**
 * Distinct users in the trace: every request carries x-session-id user-<k>, so consistent-hash and
 * hybrid have a key to hash (the `mixed` mix has no conversations of its own). 64 users over 4
 * replicas gives the hash ~16 keys per replica to balance.
 */
const SESSIONS = 64;
/** Default seed of the trace and the emulators (`--seed`). */
export const DEFAULT_SEED = 42;
/** Default request mix (`--mix`): chat with prefill-heavy and decode-heavy requests. */
export const DEFAULT_MIX = 'mixed';

/**
 * Emulator time scale: every emulated duration × this. At 0.5 a 1000-token generation on a full h100
 * batch takes ~12 s instead of 24 s, capacity is ~30 req/s of the mixed trace (~7k streamed tokens/s),
 * which the 2 cores this runs on carry for nginx, the replicas and the load generator together;
 * faster scales turn the run into a CPU benchmark of the host (schedule lag shows it).
 */
export const TIME_SCALE: Record<Mode, number> = { full: 0.5, quick: 0.5, smoke: 0.1 };

interface ModeSettings {
  /** Seconds of the saturating calibration trace. */
  calibrationS: number;
  /** Seconds of each row's trace. */
  traceS: number;
  levels: number[];
  rows: string[];
}

export const ALL_ROWS = (['nginx round robin', 'nginx least_conn'] as string[]).concat(
  // Every core strategy in the njs module, in the schema's order (a new strategy gets a row).
  STRATEGIES,
  ['kong round-robin', 'kong least-connections', ORACLE_ROW],
);

/**
 * Several gateway nodes in front of the SAME replicas, the trace split across them (request i to
 * node i mod N, so a conversation's turns arrive at different nodes, as behind a plain L4 balancer):
 *   `<N> nginx: <strategy>`        N nginx instances with the njs module (each its own shared dict)
 *   `<N> kong: <strategy>`         N Kong nodes (each its own kong-js-pluginserver), nothing shared
 *   `<N> kong+redis: <strategy>`   the same with kong.redis: one real redis-server shared by them
 *   `<N> kong+redis (redis restart): <strategy>`
 *                                  Redis stopped at the trace's middle and started again 2 s later
 * N is 1 to 8; `1 nginx: X` is the row `X`, `1 kong: X` the row `kong X`. `2 gateways: X` (earlier
 * runs' name) is `2 nginx: X`. The multi-node suite (`--nodes`, bench/shootout/nodes.ts) runs them.
 */
export interface NodeRow {
  nodes: number;
  gateway: 'nginx' | 'kong' | 'kong+redis';
  strategy: string;
  redisRestart: boolean;
}
const NODE_ROW = /^([1-8]) (nginx|kong|kong\+redis)( \(redis restart\))?: (.+)$/;
const TWO_GATEWAYS = '2 gateways: ';
export const TWO_GATEWAY_ROWS = ['2 gateways: least-connections', '2 gateways: llm', '2 gateways: round-robin', '2 gateways: prefix-affinity'];

/** The parts of a node row, or null when `row` is not one (or names an unknown strategy). */
export function parseNodeRow(row: string): NodeRow | null {
  if (row.startsWith(TWO_GATEWAYS)) row = '2 nginx: ' + row.slice(TWO_GATEWAYS.length);
  const match = NODE_ROW.exec(row);
  if (match === null) return null;
  const strategy = match[4];
  const base = strategy.endsWith(LEAST_LOAD_PLACEMENT) ? strategy.slice(0, -LEAST_LOAD_PLACEMENT.length) : strategy;
  if (!(STRATEGIES as readonly string[]).includes(base)) return null;
  const gateway = match[2] as NodeRow['gateway'];
  if (match[3] !== undefined && gateway !== 'kong+redis') return null;
  return { nodes: Number(match[1]), gateway, strategy, redisRestart: match[3] !== undefined };
}

/**
 * A prefix-aware row with prefix_affinity.placement least-load (a prefix no table knows placed by
 * load, as before the rendezvous placement): `--rows "2 nginx: llm,2 nginx: llm (least-load placement)"`.
 */
const LEAST_LOAD_PLACEMENT = ' (least-load placement)';
export const PLACEMENT_ROWS = ['llm', 'prefix-affinity', '2 nginx: llm', '2 nginx: prefix-affinity'].map((row) => row + LEAST_LOAD_PLACEMENT);

/**
 * The llm strategy with other scorer weights than its defaults (queue 2, KV 2, prefix 3, tokens 1:
 * llm-d's blend plus token load), to test the defaults: `--rows "llm,llm: prefix-heavy,llm: load-heavy"`.
 */
export const LLM_VARIANTS: Record<string, { queue_weight: number; kv_weight: number; prefix_weight: number; tokens_weight: number }> = {
  'prefix-heavy': { queue_weight: 1, kv_weight: 1, prefix_weight: 6, tokens_weight: 1 },
  'load-heavy': { queue_weight: 3, kv_weight: 3, prefix_weight: 1, tokens_weight: 2 },
  'no-prefix': { queue_weight: 2, kv_weight: 2, prefix_weight: 0, tokens_weight: 1 },
  // The KV signal is only as fresh as the last scrape (the queue is corrected by this gateway's own
  // in-flight change since; KV usage cannot be): does it help or herd?
  'no-kv': { queue_weight: 2, kv_weight: 0, prefix_weight: 3, tokens_weight: 1 },
};
const LLM_VARIANT = 'llm: ';
export const LLM_VARIANT_ROWS = Object.keys(LLM_VARIANTS).map((name) => LLM_VARIANT + name);
/** A strategy other than llm with models.adapter_filter on: `--rows "least-connections + adapter filter"`. */
const ADAPTER_FILTER = ' + adapter filter';
export const ADAPTER_FILTER_ROWS = ['least-connections', 'least-tokens', 'round-robin'].map((row) => row + ADAPTER_FILTER);
export const KNOWN_ROWS = ALL_ROWS.concat(TWO_GATEWAY_ROWS, LLM_VARIANT_ROWS, PLACEMENT_ROWS, ADAPTER_FILTER_ROWS);

/**
 * The oracle with another overlap weight than its default (Dynamo's overlap_score_weight: a block to
 * prefill against a block carried): `--rows "oracle,oracle (overlap 4)"`, to find the best oracle.
 */
const ORACLE_OVERLAP_ROW = /^oracle \(overlap (\d+(?:\.\d+)?)\)$/;

/** The overlap weight of an oracle row (the router's default for `oracle`), null for any other row. */
export function oracleOverlapOf(row: string): number | null {
  if (row === ORACLE_ROW) return DEFAULT_OVERLAP_WEIGHT;
  const match = ORACLE_OVERLAP_ROW.exec(row);
  return match === null ? null : Number(match[1]);
}

/** A row the shootout can run: a known row, any node row (`4 kong+redis: llm`) or oracle row. */
/** least-tokens with another least_tokens.prefill_weight: `--rows "least-tokens,least-tokens (prefill 4)"`. */
const PREFILL_WEIGHT_ROW = /^least-tokens \(prefill (\d+(?:\.\d+)?)\)$/;

export function isKnownRow(row: string): boolean {
  return KNOWN_ROWS.includes(row) || parseNodeRow(row) !== null || oracleOverlapOf(row) !== null || PREFILL_WEIGHT_ROW.test(row);
}

const SETTINGS: Record<Mode, ModeSettings> = {
  // 20 s traces: 14 rows × 2 levels stay within ~16 minutes on 2 cores.
  full: { calibrationS: 20, traceS: 20, levels: [0.6, 0.9], rows: ALL_ROWS },
  // The high level only: it is where the strategies differ.
  quick: { calibrationS: 10, traceS: 10, levels: [0.9], rows: ['nginx round robin', 'least-connections', 'response-time', 'kong least-connections', ORACLE_ROW] },
  smoke: { calibrationS: 2, traceS: 2, levels: [0.6], rows: ['nginx round robin', 'least-connections', 'kong least-connections', '2 kong+redis: least-connections', ORACLE_ROW] },
};

/**
 * Goodput SLO at time scale 1 (scaled with the emulator): first token within 1 s (an h100 prefills
 * 4000 prompt tokens in ~1 s; more is queueing) and at most 50 ms per output token (a full a100 batch
 * decodes at 36 ms).
 */
const SLO_AT_SCALE_1: Required<Slo> = { ttftMs: 1000, tpotMs: 50, e2eMs: Number.POSITIVE_INFINITY };

/** Per-request deadline of the measured rows: far past any e2e below saturation. */
export const ROW_TIMEOUT_MS = 120_000;

export interface Emulators {
  addresses: string[];
  /** host:port of the oracle router beside them, null when not asked for. */
  oracle: string | null;
  stop(): Promise<void>;
}

/**
 * What the replicas serve for a mix that names models: multi-lora's 24 (multi-lora-16's 16) adapters
 * of one base model (vLLM --enable-lora, 4 GPU slots each: a replica sent every adapter thrashes),
 * multi-model's two base models on two replica sets (an h100 and an a100 each: same capacity per model).
 */
export function emulatorModelArgs(mix: string): string[] {
  if (mix.startsWith('multi-lora')) return ['--lora-adapters', 'adapter-*', '--max-loras', '4'];
  if (mix === 'multi-model') return ['--models', '1:model-a', '--models', '3:model-a', '--models', '2:model-b', '--models', '4:model-b'];
  return [];
}

/**
 * Wait after a gateway starts before a trace that names models: one models.refresh_s and one
 * replica_metrics.interval_s (1 s each in the bench: the model lists, the LoRA slots) and a margin.
 */
export const MODEL_LIST_WARMUP_MS = 1500;

/** The row that calibrates capacity: nginx's own round robin, or ours where requests must be routed by model. */
export function calibrationRow(mix: string): string {
  return routesByModelName(mix) ? 'round-robin' : 'nginx round robin';
}

/** Mixes whose requests name models (the gateway learns what the replicas serve first). */
export function namesModels(mix: string): boolean {
  return routesByModelName(mix) || mix.startsWith('multi-lora');
}

/** Mixes whose requests only some replicas can serve: nginx's own balancers cannot route them (404s). */
export function routesByModelName(mix: string): boolean {
  return mix === 'multi-model';
}

/**
 * The four replicas in a child process (`testbed/emulator/cli.ts --json`); with an `oracleOverlap`,
 * the oracle router too, in the same process (it reads the replicas' state in memory), with the
 * rows' weights and that overlap weight.
 */
export async function startEmulators(timeScale: number, seed: number, mix = DEFAULT_MIX, oracleOverlap: number | null = null): Promise<Emulators> {
  const child = await startJsonChild<{ replicas: Array<{ address: string }>; oracle?: string | null }>(
    path.join(REPO_ROOT, 'testbed', 'emulator', 'cli.ts'),
    ['--replicas', PROFILES.join(','), '--time-scale', String(timeScale), '--seed', String(seed), '--json']
      .concat(emulatorModelArgs(mix))
      .concat(oracleOverlap === null ? [] : ['--oracle', '--weights', WEIGHTS.join(','), '--oracle-overlap', String(oracleOverlap)]),
    'the emulator',
  );
  return {
    addresses: child.ready.replicas.map((replica) => replica.address),
    oracle: child.ready.oracle ?? null,
    async stop() {
      await child.stop();
    },
  };
}

/** nginx's own balancer in front of the replicas (round robin when `balancing` is null). */
function nativeConf(port: number, addresses: string[], balancing: string | null): string {
  return nativeNginxConf({
    port,
    servers: addresses,
    balancing,
    workers: 2,
    keepalive: 64,
    httpDirectives: ['client_max_body_size 4m;'],
    locationDirectives: ['proxy_read_timeout 300s;'],
  });
}

/** The llm-balancer file of a row: shared options, the replicas with their weights. */
export function balancerFile(row: string, addresses: string[]): Record<string, unknown> {
  const prefillWeight = PREFILL_WEIGHT_ROW.exec(row);
  if (prefillWeight !== null) return Object.assign(balancerFile('least-tokens', addresses), { least_tokens: { prefill_weight: Number(prefillWeight[1]) } });
  if (row.endsWith(LEAST_LOAD_PLACEMENT)) {
    return Object.assign(balancerFile(row.slice(0, -LEAST_LOAD_PLACEMENT.length), addresses), { prefix_affinity: { placement: 'least-load' } });
  }
  if (row.endsWith(ADAPTER_FILTER)) {
    const file = balancerFile(row.slice(0, -ADAPTER_FILTER.length), addresses);
    return Object.assign(file, { models: Object.assign({}, file.models, { adapter_filter: true }) });
  }
  const variant = row.startsWith(LLM_VARIANT) ? LLM_VARIANTS[row.slice(LLM_VARIANT.length)] : undefined;
  const strategy = variant === undefined ? row : 'llm';
  const file: Record<string, unknown> = {
    strategy,
    replicas: addresses.map((address, index) => ({ address, weight: WEIGHTS[index] })),
  };
  if (strategy === 'consistent-hash' || strategy === 'hybrid') file.hash_key = { source: 'header', name: 'x-session-id' };
  // Bounded load: no replica takes more than 1.25× the mean in flight (the default, stated here).
  if (strategy === 'consistent-hash') file.consistent_hash = { balance_factor: 1.25 };
  // A replica is "saturated" at the h100's batch size (vLLM's max_num_seqs), not the default 64.
  if (strategy === 'hybrid') file.hybrid = { max_concurrent: 32 };
  if (variant !== undefined) file.llm = Object.assign({}, variant);
  // A 20 s row must not spend its first 10 s before the first model-list read (multi-model); the
  // emulated replicas load adapters on demand (`adapter-*` is a resolver pattern), as vLLM with a
  // LoRA resolver does: an adapter not listed yet is not unknown.
  file.models = { refresh_s: 1, dynamic_lora: true };
  return file;
}

interface Gateway {
  /** One base URL per gateway node (the trace is split between them). */
  urls: string[];
  /** Stops it; resolves with the errors its balancer reported (njs errors, plugin errors). */
  stop(): Promise<string[]>;
  /** Called at the trace's middle (the redis-restart rows); resolves with what it did. */
  midRun?: () => Promise<string>;
}

/** The pause between stopping and starting Redis in the redis-restart rows. */
const REDIS_OUTAGE_MS = 2000;

/** Starts every node (in parallel); if one fails, stops the others. */
async function startNodes(count: number, start: () => Promise<Gateway>): Promise<Gateway[]> {
  const settled = await Promise.allSettled(Array.from({ length: count }, () => start()));
  const started = settled.filter((s): s is PromiseFulfilledResult<Gateway> => s.status === 'fulfilled').map((s) => s.value);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed !== undefined) {
    for (const node of started) await node.stop();
    throw failed.reason;
  }
  return started;
}

/** N gateway nodes of a node row; kong+redis ones share a redis-server started here. */
async function startNodeRow(parsed: NodeRow, addresses: string[]): Promise<Gateway> {
  if (parsed.gateway === 'nginx') {
    const nodes = await startNodes(parsed.nodes, () => startGateway(parsed.strategy, addresses));
    return { urls: nodes.flatMap((node) => node.urls), stop: async () => (await Promise.all(nodes.map((node) => node.stop()))).flat() };
  }
  if (parsed.gateway === 'kong') {
    const nodes = await startNodes(parsed.nodes, () => startGateway('kong ' + parsed.strategy, addresses));
    return { urls: nodes.flatMap((node) => node.urls), stop: async () => (await Promise.all(nodes.map((node) => node.stop()))).flat() };
  }
  const redis = await startRedis();
  let nodes: Gateway[];
  try {
    nodes = await startNodes(parsed.nodes, () => startKong(parsed.strategy, addresses, { redis: { url: redis.url } }));
  } catch (error) {
    await redis.stop();
    throw error;
  }
  const gateway: Gateway = {
    urls: nodes.flatMap((node) => node.urls),
    async stop() {
      const errors = (await Promise.all(nodes.map((node) => node.stop()))).flat();
      await redis.stop();
      return errors;
    },
  };
  if (parsed.redisRestart) {
    gateway.midRun = async () => {
      await redis.stop();
      await new Promise((resolve) => setTimeout(resolve, REDIS_OUTAGE_MS));
      await redis.start();
      return `redis-server stopped at the trace's middle, started again ${REDIS_OUTAGE_MS} ms later (empty)`;
    };
  }
  return gateway;
}

/** The Kong plugin in the real kong-js-pluginserver behind testbed/kong-gateway/, its own process. */
async function startKong(strategy: string, addresses: string[], kong?: Record<string, unknown>): Promise<Gateway> {
  const config = balancerFile(strategy, addresses);
  if (kong !== undefined) config.kong = kong;
  const child = await startJsonChild<{ url: string }>(
    path.join(REPO_ROOT, 'testbed', 'kong-gateway', 'cli.ts'),
    ['--config', JSON.stringify(config), '--json'],
    `the Kong gateway (${strategy})`,
  );
  return {
    urls: [child.ready.url],
    async stop() {
      const lines = await child.stop();
      const summary = lines.find((line): line is { errors: string[] } => typeof line === 'object' && line !== null && Array.isArray((line as { errors?: unknown }).errors));
      return summary === undefined ? ['the Kong gateway printed no summary when stopped'] : summary.errors;
    },
  };
}

/** A row name names its gateway: `nginx <balancing>`, `kong <strategy>`, a node row, or an njs strategy. */
async function startGateway(row: string, addresses: string[]): Promise<Gateway> {
  const parsed = parseNodeRow(row);
  if (parsed !== null) return startNodeRow(parsed, addresses);
  if (row.startsWith('nginx ')) {
    const port = await freePort();
    const prefix = createPrefix('shootout-native');
    let nginx: NginxInstance;
    try {
      nginx = await startNginx({ conf: nativeConf(port, addresses, row === 'nginx least_conn' ? 'least_conn' : null), port, prefix });
    } catch (error) {
      prefix.remove();
      throw error;
    }
    return {
      urls: [`http://127.0.0.1:${port}`],
      async stop() {
        await nginx.stop();
        prefix.remove();
        return [];
      },
    };
  }
  if (row.startsWith('kong ')) return startKong(row.slice('kong '.length), addresses);
  const balancer: Balancer = await startBalancer(balancerFile(row, addresses), `shootout-${row}`);
  return {
    urls: [`http://127.0.0.1:${balancer.port}`],
    async stop() {
      const errors = balancer.moduleErrors();
      await balancer.stop();
      return errors;
    },
  };
}

/** The oracle row's "gateway": the router the emulator process started beside its replicas (stopped with them). */
function oracleGateway(emulators: Emulators): Gateway {
  if (emulators.oracle === null) throw new Error('the emulator started no oracle router');
  return { urls: [`http://${emulators.oracle}`], stop: async () => [] };
}

/** The trace with a user (x-session-id) on every request; seeded, so every row gets the same. */
export function traceWithSessions(options: { seed: number; ratePerS: number; durationS: number; mix?: string }): Trace {
  const trace = buildTrace({ seed: options.seed, ratePerS: options.ratePerS, durationS: options.durationS, mix: options.mix ?? DEFAULT_MIX, arrivals: 'poisson' });
  const random = createRandom(options.seed, 'sessions');
  for (const entry of trace.entries) {
    if (entry.request.headers['x-session-id'] === undefined) entry.request.headers['x-session-id'] = `user-${uniformInt(random, 0, SESSIONS - 1)}`;
  }
  return trace;
}

export function scaledSlo(timeScale: number): Slo {
  return { ttftMs: SLO_AT_SCALE_1.ttftMs * timeScale, tpotMs: SLO_AT_SCALE_1.tpotMs * timeScale };
}

/**
 * Replays the trace against one gateway, or splits it between several (request i to gateway
 * i mod n, all started together, each at its own schedule time) and merges the records in trace order.
 */
export async function executeSplit(trace: Trace, urls: string[], timeoutMs: number): Promise<{ records: RequestRecord[]; windowMs: number }> {
  if (urls.length === 1) return executeTrace(trace, { baseUrl: urls[0], timeoutMs });
  const parts = urls.map((_, part) => Object.assign({}, trace, { entries: trace.entries.filter((_, index) => index % urls.length === part) }));
  const results = await Promise.all(parts.map((part, i) => executeTrace(part, { baseUrl: urls[i], timeoutMs })));
  const records: RequestRecord[] = [];
  for (let index = 0; index < trace.entries.length; index++) records.push(results[index % urls.length].records[Math.floor(index / urls.length)]);
  return { records, windowMs: Math.max(...results.map((result) => result.windowMs)) };
}

/** Prefix-cache hits over the run, read from the replicas' own /metrics (tokens, vLLM's counters). */
export interface CacheStats {
  queriedTokens: number;
  hitTokens: number;
  /** hitTokens / queriedTokens, null when nothing was queried. */
  hitRate: number | null;
  /** LoRA adapter loads over the run (the emulator's llm_emulator_lora_adapter_loads_total); 0 without adapters. */
  adapterLoads?: number;
}

async function cacheStats(addresses: string[]): Promise<CacheStats | null> {
  let queried = 0;
  let hits = 0;
  let loads = 0;
  for (const address of addresses) {
    try {
      const text = await (await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
      const load = parseReplicaMetrics(text);
      if (load.prefixQueries === null || load.prefixHits === null) return null;
      queried += load.prefixQueries;
      hits += load.prefixHits;
      const adapterLoads = /^llm_emulator_lora_adapter_loads_total(?:\{[^}]*\})? (\S+)/m.exec(text);
      if (adapterLoads !== null) loads += Number(adapterLoads[1]);
    } catch {
      return null;
    }
  }
  return { queriedTokens: queried, hitTokens: hits, hitRate: queried > 0 ? hits / queried : null, adapterLoads: loads };
}

export async function withStack<T>(
  row: string,
  timeScale: number,
  seed: number,
  body: (gateway: Gateway) => Promise<T>,
  mix = DEFAULT_MIX,
): Promise<T & { moduleErrors: string[]; cache: CacheStats | null }> {
  const oracleOverlap = oracleOverlapOf(row);
  const emulators = await startEmulators(timeScale, seed, mix, oracleOverlap);
  try {
    const gateway = oracleOverlap !== null ? oracleGateway(emulators) : await startGateway(row, emulators.addresses);
    let result: T;
    try {
      result = await body(gateway);
    } catch (error) {
      await gateway.stop();
      throw error;
    }
    const moduleErrors = await gateway.stop();
    // Fresh replicas per row: their counters are this row's alone.
    const cache = await cacheStats(emulators.addresses);
    return Object.assign(result as object, { moduleErrors, cache }) as T & { moduleErrors: string[]; cache: CacheStats | null };
  } finally {
    await emulators.stop();
  }
}

export interface Calibration {
  method: string;
  row: string;
  offeredPerS: number;
  durationS: number;
  steadyWindowS: [number, number];
  completedInWindow: number;
  capacityPerS: number;
  attempts: Array<{ offeredPerS: number; capacityPerS: number }>;
}

/** Completions that END in [fromMs, toMs] of the run, per second: the service rate under saturation. */
function steadyCompletionRate(records: RequestRecord[], fromMs: number, toMs: number): number {
  let count = 0;
  for (const record of records) {
    if (!record.ok || record.e2eMs === null) continue;
    const end = record.sentAtMs + record.e2eMs;
    if (end >= fromMs && end <= toMs) count++;
  }
  return count / ((toMs - fromMs) / 1000);
}

/**
 * Capacity: offer more than the replicas can serve (through nginx round robin), and count the
 * completions that end in the last two thirds of the trace: once every replica's batch is full the
 * completion rate is the aggregate service rate. The first third fills the batches and is not
 * counted; requests still queued at the end time out (short deadline) so the run stays short, and
 * they are not counted either. If the rate found is close to the rate offered, the offer did not
 * saturate: it is doubled and the run repeated (at most twice).
 */
export async function calibrate(mode: Mode, timeScale: number, run: RunChoices, log: (line: string) => void): Promise<Calibration> {
  const durationS = SETTINGS[mode].calibrationS;
  // A first guess of capacity from the profiles (~16 req/s of `mixed` at scale 1), offered 1.5x.
  let offered = Math.round((1.5 * 16) / timeScale);
  const attempts: Calibration['attempts'] = [];
  const from = (durationS * 1000) / 3;
  const to = durationS * 1000;
  let capacity = 0;
  let completedInWindow = 0;
  for (let attempt = 0; attempt < 3; attempt++) {
    const trace = traceWithSessions({ seed: run.seed + 1000, ratePerS: offered, durationS, mix: run.mix });
    // nginx's own round robin cannot route by model: a mix that needs it calibrates through ours.
    const result = await withStack(
      calibrationRow(run.mix),
      timeScale,
      run.seed,
      async (gateway) => {
        // The model lists are read at start (Kong) or within models.refresh_s (NGINX): give them that.
        if (namesModels(run.mix)) await new Promise((resolve) => setTimeout(resolve, MODEL_LIST_WARMUP_MS));
        return executeSplit(trace, gateway.urls, durationS * 1000 + 2000);
      },
      run.mix,
    );
    capacity = steadyCompletionRate(result.records, from, to);
    completedInWindow = Math.round((capacity * (to - from)) / 1000);
    attempts.push({ offeredPerS: offered, capacityPerS: capacity });
    log(`  calibration: offered ${offered} req/s for ${durationS} s -> ${capacity.toFixed(1)} completed req/s in the steady window`);
    if (capacity < 0.85 * offered) break;
    offered *= 2;
  }
  return {
    method:
      'saturating open-loop trace through nginx round robin; capacity = completions ending in the last 2/3 of the trace per second (the first third fills the batches); offer doubled if not saturated',
    row: calibrationRow(run.mix),
    offeredPerS: attempts[attempts.length - 1].offeredPerS,
    durationS,
    steadyWindowS: [from / 1000, to / 1000],
    completedInWindow,
    capacityPerS: capacity,
    attempts,
  };
}

/** What a run may change from its mode's defaults (`--seed`, `--mix`, `--rows`). */
export interface RunChoices {
  seed: number;
  mix: string;
  rows: string[];
  /** Seconds of each row's trace (default: the mode's). */
  traceS: number;
  /** Fractions of capacity offered (default: the mode's). */
  levels: number[];
}

export interface ShootoutOptions {
  mode: Mode;
  /** Default: DEFAULT_SEED, DEFAULT_MIX, the mode's rows. */
  choices?: Partial<RunChoices>;
  outDir: string;
  /** Write BENCHMARKS.md at the repository root too. */
  updateBenchmarks: boolean;
  log?: (line: string) => void;
}

export async function runShootout(options: ShootoutOptions): Promise<ShootoutResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const mode = options.mode;
  const settings = SETTINGS[mode];
  const timeScale = TIME_SCALE[mode];
  const run: RunChoices = {
    seed: options.choices?.seed ?? DEFAULT_SEED,
    mix: options.choices?.mix ?? DEFAULT_MIX,
    rows: options.choices?.rows ?? settings.rows,
    traceS: options.choices?.traceS ?? settings.traceS,
    levels: options.choices?.levels ?? settings.levels,
  };
  const env = loadNginxEnv();
  const started = Date.now();
  log(
    `strategy shootout (${mode}): replicas ${PROFILES.join(', ')}, mix ${run.mix}, seed ${run.seed}, emulator timeScale ${timeScale}, ` +
      `nginx ${env.nginxVersion} + njs ${env.njsVersion}, ${os.cpus().length} cores`,
  );
  const calibration = await calibrate(mode, timeScale, run, log);
  const slo = scaledSlo(timeScale);
  const levels: ShootoutResult['levels'] = [];
  for (const level of run.levels) {
    const ratePerS = Math.max(1, Math.round(calibration.capacityPerS * level * 10) / 10);
    const trace = traceWithSessions({ seed: run.seed, ratePerS, durationS: run.traceS, mix: run.mix });
    log(`\nload ${Math.round(level * 100)}% of capacity: ${ratePerS} req/s offered, ${trace.entries.length} requests over ${run.traceS} s`);
    const rows: Row[] = [];
    for (const name of run.rows) {
      const outcome = await withStack(name, timeScale, run.seed, async (gateway) => {
        if (namesModels(run.mix)) await new Promise((resolve) => setTimeout(resolve, MODEL_LIST_WARMUP_MS));
        const notes: string[] = [];
        const midRun = gateway.midRun;
        const during =
          midRun === undefined
            ? Promise.resolve()
            : new Promise((resolve) => setTimeout(resolve, (run.traceS * 1000) / 2)).then(midRun).then(
                (note) => void notes.push(note),
                (error: unknown) => void notes.push(`mid-run step failed: ${error instanceof Error ? error.message : String(error)}`),
              );
        const result = await executeSplit(trace, gateway.urls, ROW_TIMEOUT_MS);
        await during;
        return { notes, report: buildReport(result.records, { windowMs: result.windowMs, slo, trace: traceInfo(trace), target: { baseUrl: gateway.urls.join(' + '), path: null } }) };
      }, run.mix);
      const report: Report = outcome.report;
      const row: Row = { strategy: name, report, moduleErrors: outcome.moduleErrors.slice(0, 5), cache: outcome.cache };
      if (outcome.notes.length > 0) row.notes = outcome.notes;
      rows.push(row);
      log(
        `  ${name.padEnd(22)} mean ${fmt(report.metrics.e2e.meanMs)} ms  p99 ${fmt(report.metrics.e2e.p99Ms)} ms  ` +
          `completed ${report.requests.completed}/${report.requests.total}  lag p99 ${fmt(report.metrics.scheduleLag.p99Ms)} ms`,
      );
    }
    levels.push({ level, ratePerS, requests: trace.entries.length, rows });
  }
  const result: ShootoutResult = {
    date: new Date().toISOString(),
    mode,
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', nginx: env.nginxVersion, njs: env.njsVersion, node: process.version },
    settings: {
      replicas: PROFILES,
      weights: WEIGHTS,
      timeScale,
      seed: run.seed,
      mix: run.mix,
      arrivals: 'poisson',
      sessions: SESSIONS,
      traceS: run.traceS,
      levels: run.levels,
      rows: run.rows,
      slo,
      rowTimeoutMs: ROW_TIMEOUT_MS,
      reference: 'nginx round robin',
    },
    calibration,
    levels,
    elapsedS: 0,
  };
  result.elapsedS = Math.round((Date.now() - started) / 1000);
  for (const level of levels) log('\n' + renderTable(result, level).join('\n'));

  fs.mkdirSync(options.outDir, { recursive: true });
  const section = renderSection(result);
  fs.writeFileSync(path.join(options.outDir, 'shootout.json'), JSON.stringify(result, null, 2) + '\n');
  fs.writeFileSync(path.join(options.outDir, 'shootout.svg'), renderChart(result));
  fs.writeFileSync(path.join(options.outDir, 'shootout.md'), section);
  log(`\nwrote ${['shootout.json', 'shootout.svg', 'shootout.md'].map((name) => path.relative(REPO_ROOT, path.join(options.outDir, name))).join(', ')} in ${result.elapsedS} s`);
  if (options.updateBenchmarks) {
    updateBenchmarksFile(path.join(REPO_ROOT, 'BENCHMARKS.md'), section);
    log('updated BENCHMARKS.md');
  }
  return result;
}

function fmt(value: number | null): string {
  return value === null ? '-' : value.toFixed(0);
}

const USAGE = `usage: npm run bench -- [--quick | --smoke | --nodes [--resume] | --models [--resume] | --capacity [--smoke] | --overload] [--seed N] [--mix NAME] [--rows LIST] [--trace-s N] [--out DIR]
  --overload     150% of capacity, two tenants 4:1, two bands, through Kong and NGINX with and without admission (~10 min)
  --capacity     capacity at the SLO (npm run bench:capacity): per row, the highest rate with goodput >= 90%,
                 mixes mixed and fleet-prefixes, 2 seeds, ratios to nginx round robin and the oracle (~80 min; --smoke: seconds)
  --quick        the 90% level only, 10 s traces, 5 rows (~2 min)
  --smoke        a seconds-long run of the whole pipeline (CI)
  --nodes        the multi-node suite (~27 min): 1, 2, 4 nginx / Kong / Kong+Redis nodes, mixes
                 fleet-prefixes and mixed, seeds 42 and 43 (--seed/--mix/--trace-s narrow it); writes
                 bench/results/nodes/ and the BENCHMARKS.md section
  --models       the model suite (~27 min): mixes multi-lora, multi-lora-16 and multi-model, round robin,
                 least-connections (with and without models.adapter_filter), least-tokens, llm on nginx
                 and Kong, seeds 42 and 43; writes bench/results/models/ and the BENCHMARKS.md section
  --resume       with --nodes or --models: keep the runs already written in the out dir
  --seed N       trace and emulator seed (default ${DEFAULT_SEED}); repeat runs with other seeds for confidence
  --mix NAME     request mix (default ${DEFAULT_MIX}): ${Object.keys(MIXES).join(', ')}
  --rows LIST    comma-separated rows to run, in order: ${KNOWN_ROWS.join(', ')},
                 or node rows "<N> nginx|kong|kong+redis: <strategy>", "<N> kong+redis (redis restart): <strategy>";
                 ${ORACLE_ROW}: the yardstick, no gateway hop (a router in the emulator process reading the
                 replicas' true state; ignores model names); with it every row is also shown as a share of it;
                 "oracle (overlap W)": the oracle weighing a block to prefill W times a block carried"
  --trace-s N    seconds of each row's trace (default: full 20, quick 10, smoke 2); longer warms the caches
  --out DIR      where shootout.json/.svg/.md go (default: bench/results for a full run with the
                 defaults, which also updates BENCHMARKS.md; else bench/results/runs/<mode>-<mix>-seed<N>)`;

/** The run choices from the flags; throws a one-line error naming the flag. */
export function parseChoices(values: { seed?: string; mix?: string; rows?: string; 'trace-s'?: string }): Partial<RunChoices> {
  const choices: Partial<RunChoices> = {};
  if (values.seed !== undefined) {
    const seed = Number(values.seed);
    if (values.seed.trim() === '' || !Number.isInteger(seed) || seed < 0) throw new Error(`--seed must be a whole number >= 0, got '${values.seed}'`);
    choices.seed = seed;
  }
  if (values.mix !== undefined) {
    if (!Object.prototype.hasOwnProperty.call(MIXES, values.mix)) throw new Error(`--mix: unknown mix '${values.mix}' (known: ${Object.keys(MIXES).join(', ')})`);
    choices.mix = values.mix;
  }
  if (values.rows !== undefined) {
    const rows = values.rows.split(',').map((row) => row.trim()).filter((row) => row !== '');
    const unknown = rows.filter((row) => !isKnownRow(row));
    if (unknown.length > 0) throw new Error(`--rows: unknown row${unknown.length > 1 ? 's' : ''} ${unknown.map((row) => `'${row}'`).join(', ')} (known: ${KNOWN_ROWS.join(', ')}, and node rows like '4 kong+redis: llm')`);
    if (rows.length === 0) throw new Error('--rows: name at least one row');
    choices.rows = rows;
  }
  if (values['trace-s'] !== undefined) {
    const seconds = Number(values['trace-s']);
    if (values['trace-s'].trim() === '' || !Number.isInteger(seconds) || seconds < 1 || seconds > 600) {
      throw new Error(`--trace-s must be a whole number of seconds from 1 to 600, got '${values['trace-s']}'`);
    }
    choices.traceS = seconds;
  }
  return choices;
}

export async function main(argv: string[]): Promise<void> {
  let values;
  let choices: Partial<RunChoices>;
  try {
    values = parseArgs({
      args: argv,
      options: {
        quick: { type: 'boolean' },
        smoke: { type: 'boolean' },
        nodes: { type: 'boolean' },
        models: { type: 'boolean' },
        capacity: { type: 'boolean' },
        overload: { type: 'boolean' },
        resume: { type: 'boolean' },
        seed: { type: 'string' },
        mix: { type: 'string' },
        rows: { type: 'string' },
        'trace-s': { type: 'string' },
        out: { type: 'string' },
        help: { type: 'boolean' },
      },
    }).values;
    choices = parseChoices(values);
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (values.overload) {
    const { runOverload } = await import('./overload');
    await runOverload({
      seed: choices.seed ?? DEFAULT_SEED,
      traceS: choices.traceS ?? 20,
      outDir: values.out !== undefined ? path.resolve(values.out) : path.join(REPO_ROOT, 'bench', 'results', 'overload'),
    });
    return;
  }
  if (values.capacity) {
    if (values.quick || values.nodes || values.models || values.resume) {
      console.error(`--capacity runs its own search: leave out --quick, --nodes, --models and --resume\n\n${USAGE}`);
      process.exitCode = 2;
      return;
    }
    const { runCapacity, CAPACITY_DEFAULTS } = await import('./capacity');
    const smoke = values.smoke === true;
    const defaults = smoke ? CAPACITY_DEFAULTS.smoke : CAPACITY_DEFAULTS.full;
    const narrowed = smoke || Object.keys(choices).length > 0;
    await runCapacity({
      mode: smoke ? 'smoke' : 'full',
      mixes: choices.mix !== undefined ? [choices.mix] : defaults.mixes,
      seeds: choices.seed !== undefined ? [choices.seed] : defaults.seeds,
      rows: choices.rows ?? defaults.rows,
      traceS: choices.traceS ?? defaults.traceS,
      steps: defaults.steps,
      outDir: values.out !== undefined ? path.resolve(values.out) : path.join(REPO_ROOT, 'bench', 'results', narrowed ? 'runs' : '', narrowed ? 'capacity-' + (smoke ? 'smoke' : 'custom') : 'capacity'),
    });
    return;
  }
  if (values.models || values.nodes) {
    const flag = values.models ? '--models' : '--nodes';
    if (values.quick || values.smoke || (values.models && values.nodes) || choices.rows !== undefined) {
      console.error(`${flag} runs its own rows in full mode: leave out --quick, --smoke, --rows and the other suite\n\n${USAGE}`);
      process.exitCode = 2;
      return;
    }
    // Imported here: the suites import this module.
    const chosen: { suite: Pick<SuiteDefinition<unknown>, 'name' | 'rows' | 'seeds' | 'traceS'>; run: (options: SuiteOptions) => Promise<unknown> } = values.models
      ? await import('./models').then((m) => ({ suite: m.MODELS_SUITE, run: m.runModelSuite }))
      : await import('./nodes').then((m) => ({ suite: m.NODES_SUITE, run: m.runNodeSuite }));
    const suite = chosen.suite;
    if (choices.mix !== undefined && suite.rows[choices.mix] === undefined) {
      console.error(`${flag} --mix: the suite has no rows for '${choices.mix}' (its mixes: ${Object.keys(suite.rows).join(', ')})`);
      process.exitCode = 2;
      return;
    }
    const narrowed = choices.mix !== undefined || choices.seed !== undefined || choices.traceS !== undefined;
    await chosen.run({
      mixes: choices.mix !== undefined ? [choices.mix] : Object.keys(suite.rows),
      seeds: choices.seed !== undefined ? [choices.seed] : suite.seeds,
      traceS: choices.traceS ?? suite.traceS,
      outDir: values.out !== undefined ? path.resolve(values.out) : path.join(REPO_ROOT, 'bench', 'results', narrowed ? 'runs' : '', suite.name),
      resume: values.resume === true,
      updateBenchmarks: values.out === undefined && !narrowed,
    });
    return;
  }
  if (values.resume) {
    console.error(`--resume goes with --nodes or --models\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const mode: Mode = values.smoke ? 'smoke' : values.quick ? 'quick' : 'full';
  // Only a full run with the defaults is "the" result (bench/results, BENCHMARKS.md); others go beside it.
  const custom = mode !== 'full' || Object.keys(choices).length > 0;
  // Rows by count and a hash of their names: two runs of different rows never share a directory.
  const rowsLabel = choices.rows ? `-${choices.rows.length}rows-${hashString(choices.rows.join(',')).toString(16).padStart(8, '0').slice(0, 6)}` : '';
  const label = `${mode}-${choices.mix ?? DEFAULT_MIX}-seed${choices.seed ?? DEFAULT_SEED}${choices.traceS !== undefined ? `-${choices.traceS}s` : ''}${rowsLabel}`;
  const outDir =
    values.out !== undefined ? path.resolve(values.out) : custom ? path.join(REPO_ROOT, 'bench', 'results', 'runs', label) : path.join(REPO_ROOT, 'bench', 'results');
  // BENCHMARKS.md shows the committed results: only a default run writing to the default place updates it.
  await runShootout({ mode, outDir, choices, updateBenchmarks: values.out === undefined && !custom });
}
