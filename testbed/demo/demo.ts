// `npm start`: the main job on an embedded default. Real nginx with the njs module (the project's
// own generator renders the config), four emulated heterogeneous LLM replicas, a gentle open-loop
// stream of demo traffic, and a live view per replica refreshing in place. Everything it starts
// it stops: on Ctrl-C, at --duration, or when starting fails half-way.

import net from 'node:net';
import { startBalancer } from '../lib/nginx-balancer';
import type { Balancer } from '../lib/nginx-balancer';
import { loadNginxEnv } from '../lib/nginx-env';
import { startEmulatedReplicas } from '../emulator/index';
import type { EmulatedReplicas } from '../emulator/index';
import { MetricHistogram, createClient, createRandom, createRequestGenerator, exponential } from '../loadgen/index';
import type { LoadClient } from '../loadgen/index';
import type { DemoOptions } from './options';
import { renderView } from './view';
import type { GatewayRow, ReplicaTruth, TrafficLine } from './view';

// Relative capacity per card, as the balancer's weights (an A100 runs an 8B model at ~0.8 of an
// H100's throughput in the emulator's profiles; an L4 at well under half).
const PROFILE_WEIGHTS: Record<string, number> = { h100: 1, a100: 0.8, l4: 0.3 };
const DEMO_MIX = 'mixed';
// A long generation at real card timings takes ~15 s; 120 s leaves room for queueing.
const REQUEST_TIMEOUT_MS = 120_000;
const REFRESH_MS = 1000;
// Without a terminal (CI, a pipe) the view is printed as plain snapshots, less often.
const PLAIN_REFRESH_MS = 5000;
const PREFERRED_PORT = 8080;

export interface DemoIo {
  /** Where the view goes (process.stdout). */
  write(text: string): void;
  /** Redraw in place (a terminal) or print snapshots (a pipe). */
  interactive: boolean;
}

export interface DemoHandle {
  gatewayUrl: string;
  /** Resolves when the demo has stopped (duration reached or stop() called) and everything is closed. */
  done: Promise<DemoSummary>;
  stop(): void;
}

export interface DemoSummary {
  sent: number;
  completed: number;
  errors: number;
  /** Errors by kind ('timeout', 'HTTP 502', ...). */
  errorKinds: Record<string, number>;
  /** Picks per replica id, from the gateway's status at the end. */
  picks: Record<string, number>;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function replicaNames(profiles: string[]): string[] {
  const seen: Record<string, number> = {};
  return profiles.map((profile) => {
    seen[profile] = (seen[profile] ?? 0) + 1;
    return `${profile}-${String.fromCharCode(96 + seen[profile])}`;
  });
}

/** The balancer file for the demo: the chosen strategy over the emulated replicas, health on. */
export function demoBalancerFile(options: DemoOptions, replicas: Array<{ name: string; address: string; profile: string }>): Record<string, unknown> {
  const file: Record<string, unknown> = {
    strategy: options.strategy,
    retries: 1,
    replicas: replicas.map((r) => ({ id: r.name, address: r.address, weight: PROFILE_WEIGHTS[r.profile] ?? 1 })),
    active_health: { enabled: true, path: '/health', interval_s: 2, timeout_s: 1 },
    nginx: { worker_processes: 2 },
  };
  if (options.strategy === 'consistent-hash' || options.strategy === 'hybrid') file.hash_key = { source: 'header', name: 'x-session-id' };
  return file;
}

async function readStatus(balancer: Balancer): Promise<GatewayRow[]> {
  const response = await fetch(balancer.nginx.url('/llm-balancer/status'), { signal: AbortSignal.timeout(2000) });
  if (!response.ok) throw new Error(`the status endpoint answered ${response.status}`);
  return ((await response.json()) as { replicas: GatewayRow[] }).replicas;
}

export async function startDemo(options: DemoOptions, io: DemoIo): Promise<DemoHandle> {
  const env = loadNginxEnv();
  const port = options.port >= 0 ? options.port : (await portIsFree(PREFERRED_PORT)) ? PREFERRED_PORT : 0;
  const names = replicaNames(options.replicas);
  let emulators: EmulatedReplicas | null = null;
  let balancer: Balancer | null = null;
  try {
    emulators = await startEmulatedReplicas(
      options.replicas.map((profile, i) => ({ name: names[i], profile })),
      { timeScale: options.timeScale, seed: options.seed },
    );
    const described = emulators.replicas.map((r) => ({ name: r.name, address: r.address, profile: r.profile.name }));
    balancer = await startBalancer(demoBalancerFile(options, described), 'demo', port > 0 ? { port } : {});
  } catch (error) {
    if (balancer) await balancer.stop();
    if (emulators) await emulators.close();
    throw error;
  }
  const runningEmulators = emulators;
  const runningBalancer = balancer;
  const gatewayUrl = runningBalancer.nginx.url('').replace(/\/$/, '');

  // Open-loop demo traffic: Poisson arrivals, never waiting for answers.
  const traffic: TrafficLine = { ratePerS: options.ratePerS, mix: DEMO_MIX, sent: 0, completed: 0, errors: 0, p50Ms: null, p99Ms: null };
  const latency = new MetricHistogram();
  const client: LoadClient | null = options.ratePerS > 0 ? createClient({ baseUrl: gatewayUrl, timeoutMs: REQUEST_TIMEOUT_MS }) : null;
  const next = createRequestGenerator({ seed: options.seed, mix: DEMO_MIX, model: 'demo' });
  const gaps = createRandom(options.seed, 'demo-arrivals');
  const pending = new Set<Promise<void>>();
  const errorKinds: Record<string, number> = {};
  let stopping = false;
  let arrivalTimer: NodeJS.Timeout | null = null;
  const scheduleArrival = () => {
    if (stopping || client === null) return;
    arrivalTimer = setTimeout(() => {
      const request = next();
      traffic.sent++;
      const sent = client.send(request).then((result) => {
        if (result.ok) {
          traffic.completed++;
          if (result.e2eMs !== null) latency.record(result.e2eMs);
        } else if (!stopping) {
          traffic.errors++;
          const kind = result.error === 'http-status' ? 'HTTP ' + result.status : String(result.error);
          errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
        }
      });
      pending.add(sent);
      void sent.finally(() => pending.delete(sent));
      scheduleArrival();
    }, exponential(gaps, 1000 / options.ratePerS));
  };
  scheduleArrival();

  // The live view.
  const started = Date.now();
  let previousPicks: Record<string, number> = {};
  let lastRows: GatewayRow[] = [];
  let firstDraw = true;
  const draw = async () => {
    let rows: GatewayRow[];
    try {
      rows = await readStatus(runningBalancer);
    } catch (error) {
      io.write(`status unavailable: ${error instanceof Error ? error.message : String(error)}\n`);
      return;
    }
    lastRows = rows;
    const truth: Record<string, ReplicaTruth> = {};
    for (const r of runningEmulators.replicas) {
      const s = r.stats();
      truth[r.address] = { profile: r.profile.name, running: s.running, waiting: s.waiting, kvUsage: s.kvUsage };
    }
    const summary = latency.summary();
    traffic.p50Ms = summary.p50Ms;
    traffic.p99Ms = summary.p99Ms;
    const text = renderView({
      title: `llm-balancer demo: nginx ${env.nginxVersion} + njs ${env.njsVersion}, ${rows.length} emulated replicas (time scale ${options.timeScale})`,
      gatewayUrl,
      strategy: options.strategy,
      rows,
      truth,
      previousPicks,
      traffic,
      uptimeS: (Date.now() - started) / 1000,
    });
    previousPicks = {};
    for (const row of rows) previousPicks[row.id] = row.picks;
    // A terminal: clear once, then move the cursor home and redraw over the old view.
    if (io.interactive) io.write((firstDraw ? '\x1b[2J' : '') + '\x1b[H' + text.split('\n').map((l) => l + '\x1b[K').join('\n') + '\n\x1b[J');
    else io.write(text + '\n\n');
    firstDraw = false;
  };
  if (!io.interactive) {
    io.write(`gateway ${gatewayUrl}/v1/chat/completions (strategy ${options.strategy}); try:\n` +
      `  curl -s ${gatewayUrl}/v1/chat/completions -H 'content-type: application/json' -d '{"model":"demo","messages":[{"role":"user","content":"Hello"}]}'\n\n`);
  }
  const viewTimer = setInterval(() => void draw(), io.interactive ? REFRESH_MS : PLAIN_REFRESH_MS);
  void draw();

  let resolveStop: () => void = () => undefined;
  const stopRequested = new Promise<void>((resolve) => {
    resolveStop = resolve;
  });
  const durationTimer = options.durationS > 0 ? setTimeout(() => resolveStop(), options.durationS * 1000) : null;

  const done = (async (): Promise<DemoSummary> => {
    await stopRequested;
    stopping = true;
    if (durationTimer) clearTimeout(durationTimer);
    if (arrivalTimer) clearTimeout(arrivalTimer);
    clearInterval(viewTimer);
    await draw();
    const picks: Record<string, number> = {};
    for (const row of lastRows) picks[row.id] = row.picks;
    // Stop order: the gateway first (in-flight demo requests end with it), then the replicas.
    await runningBalancer.stop();
    await Promise.all(Array.from(pending));
    client?.close();
    await runningEmulators.close();
    return { sent: traffic.sent, completed: traffic.completed, errors: traffic.errors, errorKinds, picks };
  })();

  return { gatewayUrl, done, stop: () => resolveStop() };
}
