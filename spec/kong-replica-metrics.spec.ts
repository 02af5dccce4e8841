// Replica-reported load through the Kong plugin, end to end: the built dist/kong/llm-balancer.js in
// the REAL kong-js-pluginserver, driven by the harness playing Kong (testbed/lib/kong-harness.ts).
// With strategy llm the plugin scrapes every replica's /metrics in the background
// (plugins/kong/metrics-scraper.ts) and routes by the load the replicas report; other strategies
// never scrape. Backends (spec/helpers/backends.ts) serve a settable vLLM text and count scrapes.
// Waits are on counts (scrapes seen, requests answered), never on fixed sleeps or durations.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBackends } from './helpers/backends';
import type { Backend, Backends } from './helpers/backends';
import { startFakeKongAdmin } from './helpers/kong-admin';
import type { FakeKongAdmin } from './helpers/kong-admin';
import { KongSide, kongRequest, startBuiltPlugin } from './helpers/kong-harness';
import type { BuiltPlugin, FakeRequest, KongResult, PluginServer } from './helpers/kong-harness';

/** The backends llm instances route to and scrape. */
let fleet: Backends;
/** Backends only the instance under test uses, so their scrape counts are its own. */
let others: Backends;
let server: PluginServer;
let built: BuiltPlugin;
let kong: KongSide;
let nextPluginId = 0;
/** Plugin ids started in the current test: afterEach replaces their config, which stops their scrapers. */
const started: string[] = [];
const admins: FakeKongAdmin[] = [];

beforeAll(async () => {
  fleet = await startBackends(3);
  others = await startBackends(2);
  built = await startBuiltPlugin('kong-metrics');
  server = built.server;
  kong = built.kong;
});

afterEach(async () => {
  // A scraper lives as long as its plugin state; a test's scrapers must not keep scraping (and
  // logging) into the next test.
  for (const id of started.splice(0)) await kong.startInstance('llm-balancer', { strategy: 'round-robin', replicas: [{ address: fleet.list[0].address }] }, id);
  fleet.resetAll();
  others.resetAll();
  for (const admin of admins.splice(0)) await admin.close();
});

afterAll(async () => {
  await built?.stop();
  await fleet?.close();
  await others?.close();
});

/** A new plugin instance with its own plugin id (its own balancer state and scraper). */
async function plugin(config: Record<string, unknown>): Promise<number> {
  nextPluginId++;
  const id = 'metrics-plugin-' + nextPluginId;
  started.push(id);
  return kong.startInstance('llm-balancer', config, id);
}

function replicasOf(set: Backends): Array<{ address: string; weight: number }> {
  return set.list.map((b) => ({ address: b.address, weight: 1 }));
}

/** vLLM's text for one replica (running, waiting, KV-cache usage 0..1, optionally its prefix-cache counters [queries, hits]), as vLLM labels it. */
function vllm(running: number, waiting: number, kv: number, prefix?: [number, number]): string {
  const counters = prefix === undefined ? [] : [
    '# TYPE vllm:prefix_cache_queries_total counter',
    `vllm:prefix_cache_queries_total{engine="0",model_name="m"} ${prefix[0]}.0`,
    '# TYPE vllm:prefix_cache_hits_total counter',
    `vllm:prefix_cache_hits_total{engine="0",model_name="m"} ${prefix[1]}.0`,
  ];
  return [
    ...counters,
    '# TYPE vllm:num_requests_running gauge',
    `vllm:num_requests_running{model_name="m"} ${running}`,
    '# TYPE vllm:num_requests_waiting gauge',
    `vllm:num_requests_waiting{model_name="m"} ${waiting}`,
    '# TYPE vllm:kv_cache_usage_perc gauge',
    `vllm:kv_cache_usage_perc{model_name="m"} ${kv}`,
    '',
  ].join('\n');
}

/** A small OpenAI chat request, different each time (no prefix to match), with its content-type and length. */
let question = 0;
function chatRequest(): FakeRequest {
  question++;
  const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'question ' + question }], max_tokens: 16 });
  return { body, headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } };
}

function servedBy(result: KongResult): string {
  expect(result.status, result.body).toBe(200);
  return (JSON.parse(result.body) as { backend: string }).backend;
}

async function sendChats(instance: number, n: number): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < n; i++) names.push(servedBy(await kongRequest(kong, instance, chatRequest())));
  return names;
}

async function until(what: string, done: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Waits until every backend has seen `rounds` more scrapes than now. A backend counts a scrape
 * when it answers it, before the plugin has read the answer; rounds never overlap, so one more
 * scrape after that means the previous answer has been recorded. Waiting for 2 thus means: a text
 * set before this call has been read by the plugin.
 */
async function nextScrapes(list: Backend[], rounds: number): Promise<void> {
  const before = list.map((b) => b.metricsScrapes);
  await until(rounds + ' more scrapes of ' + list.map((b) => b.name).join(','), () => list.every((b, i) => b.metricsScrapes >= before[i] + rounds));
}

function tally(names: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const n of names) counts[n] = (counts[n] ?? 0) + 1;
  return counts;
}

describe('strategy llm on the load the replicas report', () => {
  it('sends every request to the replica whose /metrics show the least load, and follows when that changes', async () => {
    const [b0, b1, b2] = fleet.list;
    b0.behave({ metricsText: vllm(20, 5, 0.7) });
    b1.behave({ metricsText: vllm(2, 0, 0.1) });
    b2.behave({ metricsText: vllm(10, 2, 0.4) });
    const id = await plugin({ strategy: 'llm', replicas: replicasOf(fleet), replica_metrics: { interval_s: 0.1 } });
    await until('a scrape of each backend', () => fleet.list.every((b) => b.metricsScrapes > 0));
    await nextScrapes(fleet.list, 1);
    expect(tally(await sendChats(id, 6))).toEqual({ b1: 6 });

    b1.behave({ metricsText: vllm(24, 8, 0.8) });
    b2.behave({ metricsText: vllm(1, 0, 0.05) });
    await nextScrapes(fleet.list, 2);
    expect(tally(await sendChats(id, 6))).toEqual({ b2: 6 });
    // Nothing failed, so nothing was logged for these replicas.
    for (const b of fleet.list) expect(server.stderr()).not.toContain(b.address + '/metrics');
  });

  it('a replica without /metrics (404) is still routed to, and logged once while its scrapes keep failing', async () => {
    const [b0, b1] = others.list;
    b1.behave({ metricsText: vllm(3, 0, 0.2) });
    const id = await plugin({ strategy: 'llm', replicas: replicasOf(others), replica_metrics: { interval_s: 0.1 } });
    await until('a scrape of each backend', () => others.list.every((b) => b.metricsScrapes > 0));
    await nextScrapes(others.list, 3);
    // b0's queue is unknown: its in-flight count (0 between sequential requests) stands in, so it
    // beats b1's reported 3, and requests reach it.
    const names = await sendChats(id, 6);
    expect(names).toContain('b0');
    expect(b0.requests).toBeGreaterThan(0);
    const failures = server.stderr().split('\n').filter((line) => line.includes('scraping http://' + b0.address + '/metrics failed'));
    expect(failures).toHaveLength(1);
    expect(failures[0]).toContain('HTTP 404');
    expect(server.stderr()).not.toContain('scraping http://' + b1.address);
  });
});

describe('kong.status_path', () => {
  it("shows each replica's scraped queue, KV usage and prefix-cache counters, and the requests placed without an OpenAI body", async () => {
    const [b0, b1] = others.list;
    b0.behave({ metricsText: vllm(6, 2, 0.5, [4096, 3072]) });
    b1.behave({ metricsText: vllm(1, 0, 0.25) });
    const id = await plugin({ strategy: 'llm', replicas: replicasOf(others), replica_metrics: { interval_s: 0.1, stale_after_s: 0.5 }, kong: { status_path: '/llm-balancer/status' } });
    await nextScrapes(others.list, 2);
    servedBy(await kongRequest(kong, id, {}));
    type Row = { address: string; queue: number | null; kv_cache_usage: number | null; prefix_cache_queries: number | null; prefix_cache_hits: number | null };
    const readRows = async (): Promise<{ doc: { strategy: string; requests_without_llm_body: number }; byAddress: Record<string, Row> }> => {
      const status = await kongRequest(kong, id, { path: '/llm-balancer/status' });
      expect(status.status, status.body).toBe(200);
      const doc = JSON.parse(status.body) as { strategy: string; requests_without_llm_body: number; replicas: Row[] };
      return { doc, byAddress: Object.fromEntries(doc.replicas.map((r) => [r.address, r])) };
    };
    const prefixSamples = async (): Promise<string[]> => {
      const prometheus = await kongRequest(kong, id, { path: '/llm-balancer/status', query: { format: 'prometheus' } });
      const lines = prometheus.body.split('\n');
      expect(lines).toContain('# TYPE llm_balancer_replica_prefix_cache_queries_total counter');
      expect(lines).toContain('# TYPE llm_balancer_replica_prefix_cache_hits_total counter');
      return lines.filter((line) => line.startsWith('llm_balancer_replica_prefix_cache_'));
    };
    const { doc, byAddress } = await readRows();
    expect(doc.strategy).toBe('llm');
    expect(doc.requests_without_llm_body).toBe(1);
    expect(byAddress[b0.address]).toMatchObject({ queue: 8, kv_cache_usage: 0.5, prefix_cache_queries: 4096, prefix_cache_hits: 3072 });
    // b1 reports no prefix-cache counters: null, and no Prometheus sample.
    expect(byAddress[b1.address]).toMatchObject({ kv_cache_usage: 0.25, prefix_cache_queries: null, prefix_cache_hits: null });
    // The status request itself never reached a replica.
    expect(b0.requests + b1.requests).toBe(1);
    const prometheus = await kongRequest(kong, id, { path: '/llm-balancer/status', query: { format: 'prometheus' } });
    const label = `{replica="${b0.address}",address="${b0.address}"}`;
    expect(prometheus.body).toContain(`llm_balancer_replica_kv_cache_usage${label} 0.5`);
    expect(await prefixSamples()).toEqual([`llm_balancer_replica_prefix_cache_queries_total${label} 4096`, `llm_balancer_replica_prefix_cache_hits_total${label} 3072`]);

    // b0's /metrics stops answering: past stale_after_s its counters are null and leave Prometheus, with its load.
    b0.behave({ metricsText: null });
    // A bounded poll of the status page (until() takes a synchronous check).
    const deadline = Date.now() + 10_000;
    let stale = (await readRows()).byAddress[b0.address];
    while (stale.kv_cache_usage !== null && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      stale = (await readRows()).byAddress[b0.address];
    }
    expect(stale).toMatchObject({ queue: null, kv_cache_usage: null, prefix_cache_queries: null, prefix_cache_hits: null });
    expect(await prefixSamples()).toEqual([]);
  });
});

describe('the replicas scraped are the current ones', () => {
  it("follows the Kong upstream's targets: a target added through the Admin API is scraped and routed to by its load", async () => {
    const [b0, b1] = others.list;
    b0.behave({ metricsText: vllm(6, 1, 0.5) });
    b1.behave({ metricsText: vllm(1, 0, 0.1) });
    const admin = await startFakeKongAdmin('llm-metrics', [{ target: b0.address, weight: 100, health: 'HEALTHY' }]);
    admins.push(admin);
    const kongOptions = { upstream: admin.upstream, admin_url: admin.url, refresh_interval_s: 0.1, admin_timeout_s: 1 };
    const id = await plugin({ strategy: 'llm', replica_metrics: { interval_s: 0.1 }, kong: kongOptions });
    await nextScrapes([b0], 2);
    expect(b1.metricsScrapes).toBe(0);
    expect(tally(await sendChats(id, 3))).toEqual({ b0: 3 });

    admin.targets = [...admin.targets, { target: b1.address, weight: 100, health: 'HEALTHY' }];
    await admin.nextReads(2);
    await nextScrapes([b0, b1], 2);
    expect(tally(await sendChats(id, 6))).toEqual({ b1: 6 });
  });
});

describe('only strategies that read replica load scrape', () => {
  it('least-connections never scrapes, while an llm instance beside it scrapes its own replicas', async () => {
    for (const b of others.list) b.behave({ metricsText: vllm(1, 0, 0.1) });
    const lc = await plugin({ strategy: 'least-connections', replicas: replicasOf(others), replica_metrics: { interval_s: 0.1 } });
    // The clock: an llm instance on the fleet, at the same interval.
    await plugin({ strategy: 'llm', replicas: replicasOf(fleet), replica_metrics: { interval_s: 0.1 } });
    const clock = nextScrapes(fleet.list, 4);
    let sent = 0;
    let clockDone = false;
    void clock.then(() => (clockDone = true));
    while (!clockDone) {
      servedBy(await kongRequest(kong, lc, {}));
      sent++;
    }
    await clock;
    expect(sent).toBeGreaterThan(0);
    expect(others.list.reduce((s, b) => s + b.requests, 0)).toBe(sent);
    expect(others.list.map((b) => b.metricsScrapes)).toEqual([0, 0]);
  });

  it('a changed config replaces the state: an llm instance turned least-connections stops scraping', async () => {
    for (const b of others.list) b.behave({ metricsText: vllm(1, 0, 0.1) });
    const replicas = replicasOf(others);
    nextPluginId++;
    const pluginId = 'metrics-plugin-' + nextPluginId;
    started.push(pluginId);
    await kong.startInstance('llm-balancer', { strategy: 'llm', replicas, replica_metrics: { interval_s: 0.1 } }, pluginId);
    await nextScrapes(others.list, 2);
    await plugin({ strategy: 'llm', replicas: replicasOf(fleet), replica_metrics: { interval_s: 0.1 } });
    await kong.startInstance('llm-balancer', { strategy: 'least-connections', replicas, replica_metrics: { interval_s: 0.1 } }, pluginId);
    const atChange = others.list.map((b) => b.metricsScrapes);
    await nextScrapes(fleet.list, 5);
    // A round in flight at the change may still land one scrape per replica.
    others.list.forEach((b, i) => expect(b.metricsScrapes).toBeLessThanOrEqual(atChange[i] + 1));
  });
});
