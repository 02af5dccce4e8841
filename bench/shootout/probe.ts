// Does a strategy's signal track the replicas' true load? A diagnostic beside the shootout:
//   node --import tsx bench/shootout/probe.ts [--rows response-time,least-connections] [--rate 15.8]
//     [--duration 24] [--seed 42] [--mix mixed]
// For each njs row it replays the shootout's trace (same replicas, weights, time scale) through
// real nginx and, every SAMPLE_MS, reads the balancer's status (in flight, latency EWMA per
// replica) and every replica's /metrics (vLLM's num_requests_running + num_requests_waiting: the
// truth the gateway cannot see). Per sample it ranks the four replicas by each signal and by the
// truth ((running + waiting) / weight, the replica's own queue), and reports over the run:
//   rho     mean Spearman rank correlation, signal vs queue (1: same order; 0: unrelated)
//   agree   share of samples where the replica the signal ranks cheapest has the shortest queue
//   rho KV  the same against vllm:kv_cache_usage_perc (tokens held: long prompts and generations weigh more)
// With ONE gateway in front, in-flight equals the replicas' queues by construction; the question
// is how far the other signals are from it.
// Signals: in-flight/weight (least-connections' cost), the latency EWMA alone, and response-time's
// cost EWMA × (in-flight + 1) / weight. Samples where every replica is equally loaded are skipped.
// Writes bench/results/runs/probe-<mix>-seed<N>.json. A diagnostic, not a test.

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startBalancer } from '../../testbed/lib/nginx-balancer';
import { REPO_ROOT } from '../../testbed/lib/nginx-env';
import { executeTrace } from '../../testbed/loadgen/index';
import { DEFAULT_MIX, DEFAULT_SEED, PROFILES, TIME_SCALE, WEIGHTS, balancerFile, startEmulators, traceWithSessions } from './main';

const SAMPLE_MS = 500;
/** 90% of the capacity the last full shootout calibrated (17.6 req/s of `mixed` at time scale 0.5). */
const DEFAULT_RATE = 15.8;

interface StatusReplica {
  address: string;
  in_flight: number;
  latency_ewma_ms: number | null;
}

interface Sample {
  atMs: number;
  /** (running + waiting) / weight per replica: the replica's own queue. */
  truth: number[];
  /** vllm:kv_cache_usage_perc per replica: the tokens it holds (long prompts and generations weigh more). */
  kvUsage?: number[];
  inFlight: number[];
  ewmaMs: Array<number | null>;
}

export type SignalName = 'in-flight/weight' | 'latency EWMA' | 'EWMA x (in-flight+1)/weight';

/** Average ranks (1-based), ties sharing the mean of their positions. */
export function ranks(values: number[]): number[] {
  const order = values.map((value, index) => ({ value, index })).sort((a, b) => a.value - b.value);
  const out = new Array<number>(values.length).fill(0);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1].value === order[i].value) j++;
    for (let k = i; k <= j; k++) out[order[k].index] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return out;
}

/** Spearman's rho (Pearson on average ranks); null when either side has no spread. */
export function spearman(a: number[], b: number[]): number | null {
  const ra = ranks(a);
  const rb = ranks(b);
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  const ma = mean(ra);
  const mb = mean(rb);
  let num = 0;
  let da = 0;
  let db = 0;
  for (let i = 0; i < ra.length; i++) {
    num += (ra[i] - ma) * (rb[i] - mb);
    da += (ra[i] - ma) ** 2;
    db += (rb[i] - mb) ** 2;
  }
  return da === 0 || db === 0 ? null : num / Math.sqrt(da * db);
}

function signal(sample: Sample, name: SignalName): number[] | null {
  if (name === 'in-flight/weight') return sample.inFlight.map((n, i) => n / WEIGHTS[i]);
  if (sample.ewmaMs.some((value) => value === null)) return null;
  const ewma = sample.ewmaMs as number[];
  if (name === 'latency EWMA') return ewma;
  return ewma.map((e, i) => (e * (sample.inFlight[i] + 1)) / WEIGHTS[i]);
}

export interface SignalScore {
  signal: SignalName;
  rho: number | null;
  /** Mean rho against KV-cache usage instead of the queue (null without KV samples). */
  rhoKv: number | null;
  agree: number | null;
  samples: number;
}

export function score(samples: Sample[], name: SignalName): SignalScore {
  let rhoSum = 0;
  let rhoCount = 0;
  let kvSum = 0;
  let kvCount = 0;
  let agreeCount = 0;
  let agreeTotal = 0;
  for (const sample of samples) {
    const values = signal(sample, name);
    if (values === null) continue;
    const rhoKv = sample.kvUsage === undefined ? null : spearman(values, sample.kvUsage);
    if (rhoKv !== null) {
      kvSum += rhoKv;
      kvCount++;
    }
    const rho = spearman(values, sample.truth);
    if (rho === null) continue;
    rhoSum += rho;
    rhoCount++;
    const cheapest = values.indexOf(Math.min(...values));
    agreeTotal++;
    if (sample.truth[cheapest] === Math.min(...sample.truth)) agreeCount++;
  }
  return { signal: name, rho: rhoCount > 0 ? rhoSum / rhoCount : null, rhoKv: kvCount > 0 ? kvSum / kvCount : null, agree: agreeTotal > 0 ? agreeCount / agreeTotal : null, samples: rhoCount };
}

function gauge(text: string, name: string): number {
  const match = new RegExp(`^${name.replace(/[:]/g, '\\:')}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  if (match === null) throw new Error(`no ${name} in the replica's /metrics`);
  return Number(match[1]);
}

async function probeRow(row: string, options: { rate: number; durationS: number; seed: number; mix: string }): Promise<{ row: string; samples: Sample[]; completed: number; total: number }> {
  const timeScale = TIME_SCALE.full;
  const emulators = await startEmulators(timeScale, options.seed);
  try {
    const balancer = await startBalancer(balancerFile(row, emulators.addresses), `probe-${row}`);
    try {
      const trace = traceWithSessions({ seed: options.seed, ratePerS: options.rate, durationS: options.durationS, mix: options.mix });
      const samples: Sample[] = [];
      let running = true;
      const started = performance.now();
      const sampler = (async () => {
        while (running) {
          const [status, ...metrics] = await Promise.all([
            fetch(balancer.nginx.url('/llm-balancer/status')).then((r) => r.json() as Promise<{ replicas: StatusReplica[] }>),
            ...emulators.addresses.map((address) => fetch(`http://${address}/metrics`).then((r) => r.text())),
          ]);
          const byAddress = new Map(status.replicas.map((replica) => [replica.address, replica]));
          const rows = emulators.addresses.map((address) => byAddress.get(address) as StatusReplica);
          samples.push({
            atMs: performance.now() - started,
            truth: metrics.map((text, i) => (gauge(text, 'vllm:num_requests_running') + gauge(text, 'vllm:num_requests_waiting')) / WEIGHTS[i]),
            kvUsage: metrics.map((text) => gauge(text, 'vllm:kv_cache_usage_perc')),
            inFlight: rows.map((replica) => replica.in_flight),
            ewmaMs: rows.map((replica) => replica.latency_ewma_ms),
          });
          await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
        }
      })();
      const result = await executeTrace(trace, { baseUrl: `http://127.0.0.1:${balancer.port}`, timeoutMs: 120_000 });
      running = false;
      await sampler;
      return { row, samples, completed: result.records.filter((record) => record.ok).length, total: result.records.length };
    } finally {
      await balancer.stop();
    }
  } finally {
    await emulators.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rows: { type: 'string', default: 'response-time,least-connections' },
      rate: { type: 'string' },
      duration: { type: 'string', default: '24' },
      seed: { type: 'string' },
      mix: { type: 'string' },
    },
  });
  const options = {
    rate: values.rate === undefined ? DEFAULT_RATE : Number(values.rate),
    durationS: Number(values.duration),
    seed: values.seed === undefined ? DEFAULT_SEED : Number(values.seed),
    mix: values.mix ?? DEFAULT_MIX,
  };
  if (!(options.rate > 0) || !(options.durationS > 0) || !Number.isInteger(options.seed)) throw new Error('--rate and --duration must be > 0, --seed a whole number');
  const rows = values.rows.split(',').map((row) => row.trim()).filter((row) => row !== '');
  console.log(`signal probe: replicas ${PROFILES.join(', ')}, mix ${options.mix}, ${options.rate} req/s for ${options.durationS} s, seed ${options.seed}, sample every ${SAMPLE_MS} ms`);
  const results = [];
  for (const row of rows) {
    const probed = await probeRow(row, options);
    const scores = (['in-flight/weight', 'latency EWMA', 'EWMA x (in-flight+1)/weight'] as SignalName[]).map((name) => score(probed.samples, name));
    results.push({ row, completed: probed.completed, total: probed.total, scores, samples: probed.samples });
    console.log(`\n${row}: ${probed.completed}/${probed.total} completed, ${probed.samples.length} samples`);
    console.log('| signal | rho vs queue | cheapest has the shortest queue | rho vs KV usage | samples |');
    console.log('|---|--:|--:|--:|--:|');
    const fixed = (value: number | null) => (value === null ? '-' : value.toFixed(2));
    for (const s of scores) console.log(`| ${s.signal} | ${fixed(s.rho)} | ${s.agree === null ? '-' : (s.agree * 100).toFixed(0) + '%'} | ${fixed(s.rhoKv)} | ${s.samples} |`);
  }
  const out = path.join(REPO_ROOT, 'bench', 'results', 'runs', `probe-${options.mix}-seed${options.seed}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), options, rows: results }, null, 2) + '\n');
  console.log(`\nwrote ${path.relative(REPO_ROOT, out)}`);
}

// Run only as a script (the spec imports the maths).
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(import.meta.filename ?? '')) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : error);
    process.exit(1);
  });
}
