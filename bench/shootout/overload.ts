// `npm run bench:overload` (issue 15): 150% of the replicas' capacity from two tenants (one
// sending 4x the other) in two priority bands, through the Kong plugin and the NGINX module, with and
// without admission. Reported per configuration: the high band's goodput, each tenant's TTFT p99
// (the quiet one's against its unloaded value), and every request's fate — answered, rejected by
// admission (429), failed — so none is lost silently. One seeded trace, replayed unchanged through all.
// The tenant and band are headers here, read by the stand-ins of the gateways' auth: Kong's
// stand-in consumer header and route match; on NGINX a map sets the priority variable and the
// consumer variable is declared verified (what an auth_request_set would do).
// A benchmark, not a test: nothing here asserts a speed.

import fs from 'node:fs';
import path from 'node:path';
import { startKongGateway } from '../../testbed/kong-gateway/gateway';
import { startBalancer } from '../../testbed/lib/nginx-balancer';
import { REPO_ROOT } from '../../testbed/lib/nginx-env';
import { buildReport, createRandom, executeTrace, traceInfo } from '../../testbed/loadgen/index';
import type { RequestRecord, Trace } from '../../testbed/loadgen/index';
import { PROFILES, ROW_TIMEOUT_MS, TIME_SCALE, WEIGHTS, calibrate, scaledSlo, startEmulators, traceWithSessions } from './main';

/** Offered load, as a multiple of the calibrated capacity; and the unloaded reference's. */
const OVERLOAD = 1.5;
const UNLOADED = 0.3;
/** The noisy tenant sends this many requests per quiet one; this share of requests is high band. */
const NOISY_PER_QUIET = 4;
const HIGH_BAND_SHARE = 0.25;
const PREMIUM_HEADER = 'x-tier';
/** admission.max_concurrency of the bounded configurations: requests in flight per unit of weight. */
const CONCURRENCY_PER_WEIGHT = [8, 4, 2];

interface Tagged {
  tenant: 'noisy' | 'quiet';
  band: 'high' | 'low';
}

/** Tags every request with its tenant and band (seeded), as headers Kong's auth and router would read. */
function tag(trace: Trace, seed: number): Record<string, Tagged> {
  const random = createRandom(seed, 'overload-tags');
  const tags: Record<string, Tagged> = {};
  for (const entry of trace.entries) {
    const tenant = random.next() < NOISY_PER_QUIET / (NOISY_PER_QUIET + 1) ? 'noisy' : 'quiet';
    const band = random.next() < HIGH_BAND_SHARE ? 'high' : 'low';
    entry.request.headers['x-consumer'] = tenant;
    if (band === 'high') entry.request.headers[PREMIUM_HEADER] = 'premium';
    tags[entry.request.id] = { tenant, band };
  }
  return tags;
}

interface GroupFigures {
  requests: number;
  goodput: number | null;
  ttftP99Ms: number | null;
  rejected: number;
  failed: number;
}

function figures(records: RequestRecord[], windowMs: number, trace: Trace, timeScale: number): GroupFigures {
  const report = buildReport(records, { windowMs, slo: scaledSlo(timeScale), trace: traceInfo(trace), target: { baseUrl: 'kong', path: null } });
  return {
    requests: records.length,
    goodput: report.goodput === null ? null : report.goodput.share,
    ttftP99Ms: report.metrics.ttft.p99Ms,
    rejected: records.filter((r) => r.status === 429).length,
    failed: records.filter((r) => !r.ok && r.status !== 429).length,
  };
}

type Gateway = 'kong' | 'nginx';

async function runThrough(trace: Trace, admission: Record<string, unknown> | null, timeScale: number, seed: number, gatewayKind: Gateway): Promise<{ records: RequestRecord[]; windowMs: number; errors: string[] }> {
  const emulators = await startEmulators(timeScale, seed, trace.mix);
  try {
    const config: Record<string, unknown> = {
      strategy: 'least-connections',
      replicas: emulators.addresses.map((address, i) => ({ address, weight: WEIGHTS[i] })),
    };
    if (admission !== null) config.admission = admission;
    if (gatewayKind === 'nginx') return await runThroughNginx(trace, config);
    const gateway = await startKongGateway({
      config,
      routes: [{ header: { name: PREMIUM_HEADER, value: 'premium' }, name: 'premium' }],
      consumerHeader: 'x-consumer',
      // Every waiting access phase holds its RPC connection, as each Kong request holds its own.
      connections: 512,
    });
    try {
      const result = await executeTrace(trace, { baseUrl: gateway.url, timeoutMs: ROW_TIMEOUT_MS });
      return { records: result.records, windowMs: result.windowMs, errors: gateway.errors() };
    } finally {
      await gateway.stop();
    }
  } finally {
    await emulators.stop();
  }
}

/** The same through real nginx: the band from a map of the tier header, the tenant from the consumer header. */
async function runThroughNginx(trace: Trace, config: Record<string, unknown>): Promise<{ records: RequestRecord[]; windowMs: number; errors: string[] }> {
  const admits = config.admission !== undefined;
  const admission = config.admission as Record<string, unknown> | undefined;
  const file: Record<string, unknown> = {
    ...config,
    // Kong's route_priorities is Kong's; here the map below plays the auth layer that sets the band.
    admission: admits ? { ...admission, route_priorities: [] } : undefined,
    nginx: { consumer_variable: 'http_x_consumer', consumer_variable_verified: true, ...(admits ? { priority_variable: 'llm_priority' } : {}) },
  };
  const balancer = await startBalancer(file, 'overload', {
    httpDirectives: ['  map $http_' + PREMIUM_HEADER.replace(/-/g, '_') + ' $llm_priority { premium 1; default 0; }'],
  });
  try {
    const result = await executeTrace(trace, { baseUrl: `http://127.0.0.1:${balancer.port}`, timeoutMs: ROW_TIMEOUT_MS });
    return { records: result.records, windowMs: result.windowMs, errors: balancer.moduleErrors() };
  } finally {
    await balancer.stop();
  }
}

export async function runOverload(options: { seed: number; traceS: number; outDir: string; gateways?: Gateway[]; log?: (line: string) => void }): Promise<void> {
  const log = options.log ?? ((line: string) => console.log(line));
  const timeScale = TIME_SCALE.full;
  const mix = 'mixed';
  const calibration = await calibrate('full', timeScale, { seed: options.seed, mix, rows: [], traceS: options.traceS, levels: [] }, log);
  const capacity = calibration.capacityPerS;
  // max_wait_s: what a client waits before the 429 (scaled with the emulator like the SLO).
  const admission = { enabled: true, max_wait_s: 20 * timeScale, route_priorities: [{ route: 'premium', priority: 1 }] };
  // The same with the in-flight bound too: the emulated replicas batch up to 256 requests and their
  // waiting queues stay short while time to first token grows, so /metrics alone may never say full.

  const gateways = options.gateways ?? (['kong', 'nginx'] as Gateway[]);
  // The quiet tenant's unloaded TTFT p99, through each gateway (its own overhead included).
  const unloadedTrace = traceWithSessions({ seed: options.seed, ratePerS: Math.round(capacity * UNLOADED * 10) / 10, durationS: options.traceS, mix });
  const unloadedTags = tag(unloadedTrace, options.seed);
  const quietUnloadedBy: Partial<Record<Gateway, GroupFigures>> = {};
  for (const gatewayKind of gateways) {
    const unloaded = await runThrough(unloadedTrace, null, timeScale, options.seed, gatewayKind);
    quietUnloadedBy[gatewayKind] = figures(unloaded.records.filter((r) => unloadedTags[r.id].tenant === 'quiet'), unloaded.windowMs, unloadedTrace, timeScale);
    log(`unloaded through ${gatewayKind} (${UNLOADED * 100}% of ${capacity.toFixed(1)} req/s): quiet tenant TTFT p99 ${quietUnloadedBy[gatewayKind]?.ttftP99Ms?.toFixed(0)} ms`);
  }

  const trace = traceWithSessions({ seed: options.seed, ratePerS: Math.round(capacity * OVERLOAD * 10) / 10, durationS: options.traceS, mix });
  const tags = tag(trace, options.seed);
  const rows: Array<Record<string, unknown>> = [];
  const configurations: Array<[string, Record<string, unknown> | null, Gateway]> = [];
  for (const gatewayKind of gateways) {
    const on = gatewayKind === 'kong' ? 'Kong' : 'NGINX';
    configurations.push([on + ', without admission', null, gatewayKind]);
    configurations.push([on + ', admission by /metrics (defaults)', admission, gatewayKind]);
    for (const bound of CONCURRENCY_PER_WEIGHT) {
      configurations.push([on + ', admission by /metrics or ' + bound + ' in flight per weight', { ...admission, saturation: 'both', max_concurrency: bound }, gatewayKind]);
    }
  }
  for (const [name, config, gatewayKind] of configurations) {
    const run = await runThrough(trace, config, timeScale, options.seed, gatewayKind);
    const quietUnloaded = quietUnloadedBy[gatewayKind] as GroupFigures;
    const pick = (test: (t: Tagged) => boolean) => figures(run.records.filter((r) => test(tags[r.id])), run.windowMs, trace, timeScale);
    const all = pick(() => true);
    const high = pick((t) => t.band === 'high');
    const low = pick((t) => t.band === 'low');
    const quiet = pick((t) => t.tenant === 'quiet');
    const noisy = pick((t) => t.tenant === 'noisy');
    const answered = run.records.filter((r) => r.status !== null).length;
    rows.push({ name, gateway: gatewayKind, quietUnloadedMs: quietUnloaded.ttftP99Ms, all, high, low, quiet, noisy, answered, lost: run.records.length - answered, gatewayErrors: run.errors.slice(0, 5) });
    log(
      `${name}: high band goodput ${pct(high.goodput)}, low ${pct(low.goodput)}; quiet TTFT p99 ${ms(quiet.ttftP99Ms)} ` +
        `(${ratio(quiet.ttftP99Ms, quietUnloaded.ttftP99Ms)} unloaded), noisy ${ms(noisy.ttftP99Ms)}; 429 ${all.rejected}, failed ${all.failed}, no answer ${run.records.length - answered} of ${run.records.length}`,
    );
  }
  const lines = [
    '| configuration | high band goodput | low band goodput | quiet tenant TTFT p99 (vs unloaded) | noisy tenant TTFT p99 | rejected 429 (high / low) | failed | no answer |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const row of rows) {
    const r = row as { name: string; quietUnloadedMs: number | null; all: GroupFigures; high: GroupFigures; low: GroupFigures; quiet: GroupFigures; noisy: GroupFigures; lost: number };
    lines.push(
      `| ${r.name} | ${pct(r.high.goodput)} | ${pct(r.low.goodput)} | ${ms(r.quiet.ttftP99Ms)} (${ratio(r.quiet.ttftP99Ms, r.quietUnloadedMs)}) | ${ms(r.noisy.ttftP99Ms)} | ${r.all.rejected} (${r.high.rejected} / ${r.low.rejected}) | ${r.all.failed} | ${r.lost} |`,
    );
  }
  const table = lines.join('\n') + '\n';
  fs.mkdirSync(options.outDir, { recursive: true });
  fs.writeFileSync(
    path.join(options.outDir, 'overload.json'),
    JSON.stringify({ date: new Date().toISOString(), replicas: PROFILES, seed: options.seed, traceS: options.traceS, timeScale, capacityPerS: capacity, overload: OVERLOAD, noisyPerQuiet: NOISY_PER_QUIET, highBandShare: HIGH_BAND_SHARE, configurations, quietUnloaded: quietUnloadedBy, rows }, null, 2) + '\n',
  );
  fs.writeFileSync(path.join(options.outDir, 'overload.md'), table);
  log('\n' + table);
  log(`wrote ${path.relative(REPO_ROOT, path.join(options.outDir, 'overload.json'))}`);
}

function pct(value: number | null): string {
  return value === null ? '-' : (value * 100).toFixed(0) + '%';
}
function ms(value: number | null): string {
  return value === null ? '-' : value.toFixed(0) + ' ms';
}
function ratio(value: number | null, reference: number | null): string {
  return value === null || reference === null || reference <= 0 ? '-' : (value / reference).toFixed(2) + 'x';
}
