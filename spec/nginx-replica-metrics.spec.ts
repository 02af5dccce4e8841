// Replica-reported load through real nginx (2 worker processes, the generator's configuration, the
// built njs bundle) and real backends serving vLLM's /metrics text: with a strategy that reads it
// (llm), `js_periodic scrapeMetrics` feeds every replica's text to the core, the status page and
// the Prometheus text show it (the load, and the replica's own prefix-cache counters), and requests go where the replicas themselves report the least load; a replica whose
// /metrics stops answering (404, killed, hung) goes stale with one warning (not one per scrape)
// and routing goes on; other strategies never scrape. Waits are bounded polls (status page, scrape counts, error log);
// assertions are on counts, states and values, never on durations.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBackends } from './helpers/backends';
import type { Backend, Backends } from './helpers/backends';
import { createFleet, replicasOf } from './helpers/fleet';
import { drained, readStatus, request, waitFor } from './helpers/nginx-balancer';
import type { Balancer, StatusRow } from './helpers/nginx-balancer';

let backends: Backends;
const fleet = createFleet('metrics');

beforeAll(async () => {
  backends = await startBackends(4);
});
afterEach(async () => {
  const errors = await fleet.stopAll();
  for (const b of backends.list) await b.restart();
  backends.resetAll();
  expect(errors).toEqual([]);
});
afterAll(async () => {
  await backends?.close();
});

const URL_PATH = '/v1/chat/completions';

/** A vLLM /metrics text (V1 names) reporting this load, and with `prefix` its prefix-cache counters [queries, hits]. */
function vllm(running: number, waiting: number, kvUsage: number, prefix?: [number, number]): string {
  const counters = prefix === undefined ? [] : [
    '# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.',
    '# TYPE vllm:prefix_cache_queries_total counter',
    `vllm:prefix_cache_queries_total{engine="0",model_name="m"} ${prefix[0]}.0`,
    '# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.',
    '# TYPE vllm:prefix_cache_hits_total counter',
    `vllm:prefix_cache_hits_total{engine="0",model_name="m"} ${prefix[1]}.0`,
  ];
  return [
    ...counters,
    '# HELP vllm:num_requests_running Number of requests in model execution batches.',
    '# TYPE vllm:num_requests_running gauge',
    `vllm:num_requests_running{model_name="m"} ${running}`,
    '# HELP vllm:num_requests_waiting Number of requests waiting to be processed.',
    '# TYPE vllm:num_requests_waiting gauge',
    `vllm:num_requests_waiting{model_name="m"} ${waiting}`,
    '# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.',
    '# TYPE vllm:kv_cache_usage_perc gauge',
    `vllm:kv_cache_usage_perc{model_name="m"} ${kvUsage}`,
    '',
  ].join('\n');
}

type LoadRow = StatusRow & { queue: number | null; kv_cache_usage: number | null; prefix_cache_queries: number | null; prefix_cache_hits: number | null };
/** Per replica id: [queue, kv_cache_usage] as the status page shows them. */
type Loads = Record<string, [number | null, number | null]>;

async function loads(lb: Balancer): Promise<Loads> {
  const out: Loads = {};
  for (const row of (await readStatus(lb)).replicas as LoadRow[]) out[row.id] = [row.queue, row.kv_cache_usage];
  return out;
}

/** Waits until the status page shows exactly `expected` for the replicas it names. */
async function showsLoads(lb: Balancer, what: string, expected: Loads): Promise<void> {
  let last: Loads = {};
  await waitFor(what, async () => {
    last = await loads(lb);
    return Object.keys(expected).every((id) => JSON.stringify(last[id]) === JSON.stringify(expected[id]));
  }).catch((e: Error) => {
    throw new Error(`${e.message}: status shows ${JSON.stringify(last)}, wanted ${JSON.stringify(expected)}`);
  });
}

/** Per replica id: [prefix_cache_queries, prefix_cache_hits] as the status page shows them. */
async function prefixCounters(lb: Balancer): Promise<Record<string, [number | null, number | null]>> {
  const out: Record<string, [number | null, number | null]> = {};
  for (const row of (await readStatus(lb)).replicas as LoadRow[]) out[row.id] = [row.prefix_cache_queries, row.prefix_cache_hits];
  return out;
}

/** The prefix-cache samples of GET /llm-balancer/metrics, as `family{labels} value` lines. */
async function prefixSamples(lb: Balancer): Promise<string[]> {
  const reply = await request(lb.nginx.url('/llm-balancer/metrics'));
  expect(reply.status).toBe(200);
  const lines = reply.body.split('\n');
  for (const family of ['llm_balancer_replica_prefix_cache_queries_total', 'llm_balancer_replica_prefix_cache_hits_total']) expect(lines).toContain(`# TYPE ${family} counter`);
  return lines.filter((line) => line.startsWith('llm_balancer_replica_prefix_cache_'));
}

/** `n` sequential chat completions (each prompt different, so no prefix is shared); the backend of each. */
async function chat(lb: Balancer, n: number, tag: string): Promise<string[]> {
  const served: string[] = [];
  for (let i = 0; i < n; i++) {
    const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: `${tag} question ${i}?` }], max_tokens: 16 });
    const reply = await request(lb.nginx.url(URL_PATH), { body, headers: { 'content-type': 'application/json' } });
    expect(reply.status, reply.body).toBe(200);
    served.push((JSON.parse(reply.body) as { backend: string }).backend);
    // The attempt ends in the log phase, just after the answer: start the next one from 0 in flight.
    await drained(lb);
  }
  return served;
}

function tally(names: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const n of names) counts[n] = (counts[n] ?? 0) + 1;
  return counts;
}

/** Error-log lines of the scraper about replica `id` at `level` ('warn': it stopped answering, 'info': it answers again). */
function scrapeLines(lb: Balancer, level: 'warn' | 'info', id: string): string[] {
  return lb.nginx
    .stderr()
    .split('\n')
    .filter((line) => line.includes(`[${level}]`) && line.includes('llm-balancer: replica metrics: replica ' + id + ' ('));
}

const scrapes = (list: Backend[]) => list.map((b) => b.metricsScrapes);

describe('replica-reported load (strategy llm)', () => {
  it('requests go to the replica whose /metrics reports the lightest load, before this nginx sent anything, and follow a change', async () => {
    const [b0, b1, b2] = backends.list;
    b0.behave({ metricsText: vllm(6, 4, 0.7, [4096, 3072]) });
    b1.behave({ metricsText: vllm(0, 0, 0.05) });
    b2.behave({ metricsText: vllm(4, 2, 0.5, [512, 0]) });
    const lb = await fleet.start({ strategy: 'llm', retries: 1, replicas: replicasOf([b0, b1, b2]), replica_metrics: { interval_s: 0.2 } });
    await showsLoads(lb, 'every replica scraped', { b0: [10, 0.7], b1: [0, 0.05], b2: [6, 0.5] });
    // The replicas' own prefix-cache counters, as scraped; b1 reports none.
    expect(await prefixCounters(lb)).toEqual({ b0: [4096, 3072], b1: [null, null], b2: [512, 0] });
    const label = (b: Backend) => `{replica="${b.name}",address="${b.address}"}`;
    expect(await prefixSamples(lb)).toEqual([
      `llm_balancer_replica_prefix_cache_queries_total${label(b0)} 4096`,
      `llm_balancer_replica_prefix_cache_queries_total${label(b2)} 512`,
      `llm_balancer_replica_prefix_cache_hits_total${label(b0)} 3072`,
      `llm_balancer_replica_prefix_cache_hits_total${label(b2)} 0`,
    ]);
    // What the status shows came from the replicas: this nginx has not sent them a single request.
    expect(backends.counts().slice(0, 3)).toEqual([0, 0, 0]);
    expect((await readStatus(lb)).replicas.map((r) => r.picks)).toEqual([0, 0, 0]);

    expect(tally(await chat(lb, 8, 'first'))).toEqual({ b1: 8 });

    // b1 fills up and b2 empties: after the next scrape, traffic follows.
    b1.behave({ metricsText: vllm(9, 5, 0.9) });
    b2.behave({ metricsText: vllm(0, 0, 0.1, [2560, 1536]) });
    await showsLoads(lb, 'the new loads scraped', { b0: [10, 0.7], b1: [14, 0.9], b2: [0, 0.1] });
    expect(await prefixCounters(lb)).toEqual({ b0: [4096, 3072], b1: [null, null], b2: [2560, 1536] });
    expect(tally(await chat(lb, 8, 'second'))).toEqual({ b2: 8 });
    // Scrapes are GET /metrics, never counted as requests.
    expect(backends.counts().slice(0, 3)).toEqual([0, 8, 8]);
    expect(scrapes([b0, b1, b2]).every((n) => n >= 2)).toBe(true);
  });

  it('a replica whose /metrics stops answering (404, killed) goes stale, routing goes on, and the log says so once per replica', async () => {
    const [b0, b1, b2] = backends.list;
    for (const b of [b0, b1, b2]) b.behave({ metricsText: vllm(2, 1, 0.3, [1000, 250]) });
    const lb = await fleet.start(
      { strategy: 'llm', retries: 1, replicas: replicasOf([b0, b1, b2]), replica_metrics: { interval_s: 0.2, stale_after_s: 0.5 } },
      // info: the warnings and the "answers again" lines reach the error log.
      { errorLogLevel: 'info' },
    );
    await showsLoads(lb, 'every replica scraped', { b0: [3, 0.3], b1: [3, 0.3], b2: [3, 0.3] });
    expect(scrapeLines(lb, 'warn', 'b0')).toEqual([]);

    b0.behave({ metricsText: null });
    await b2.kill();
    await showsLoads(lb, 'b0 and b2 stale', { b0: [null, null], b1: [3, 0.3], b2: [null, null] });
    // Their prefix-cache counters go stale with the load: null, and no sample (not a 0 that would read as a reset).
    expect(await prefixCounters(lb)).toEqual({ b0: [null, null], b1: [1000, 250], b2: [null, null] });
    expect(await prefixSamples(lb)).toEqual([
      `llm_balancer_replica_prefix_cache_queries_total{replica="b1",address="${b1.address}"} 1000`,
      `llm_balancer_replica_prefix_cache_hits_total{replica="b1",address="${b1.address}"} 250`,
    ]);
    // Many scrapes after the change: still one warning each, not one per scrape.
    const seen = b0.metricsScrapes;
    await waitFor('five more scrapes of b0', () => b0.metricsScrapes >= seen + 5);
    const b0Warnings = scrapeLines(lb, 'warn', 'b0');
    expect(b0Warnings).toHaveLength(1);
    expect(b0Warnings[0]).toContain(`GET http://${b0.address}/metrics answered HTTP 404`);
    const b2Warnings = scrapeLines(lb, 'warn', 'b2');
    expect(b2Warnings).toHaveLength(1);
    expect(b2Warnings[0]).toContain(`GET http://${b2.address}/metrics could not be read`);
    expect(scrapeLines(lb, 'warn', 'b1')).toEqual([]);

    // Routing goes on: without fresh metrics b0 and b2 count their in-flight requests (none),
    // lighter than b1's reported 3; b2 is dead, so a pick of it fails over to b0.
    expect(tally(await chat(lb, 6, 'stale'))).toEqual({ b0: 6 });
    expect(backends.list[1].requests).toBe(0);

    // Both answer again: one info line each, and the values are back.
    b0.behave({ metricsText: vllm(1, 0, 0.2) });
    await b2.restart();
    await showsLoads(lb, 'b0 and b2 scraped again', { b0: [1, 0.2], b1: [3, 0.3], b2: [3, 0.3] });
    await waitFor('the recoveries logged', () => scrapeLines(lb, 'info', 'b0').length === 1 && scrapeLines(lb, 'info', 'b2').length === 1);
    const again = b0.metricsScrapes;
    await waitFor('five more scrapes of b0', () => b0.metricsScrapes >= again + 5);
    expect(scrapeLines(lb, 'info', 'b0')).toHaveLength(1);
    expect(scrapeLines(lb, 'info', 'b2')).toHaveLength(1);
    expect(scrapeLines(lb, 'info', 'b1')).toEqual([]);
    expect(scrapeLines(lb, 'warn', 'b0')).toHaveLength(1);
    expect(scrapeLines(lb, 'warn', 'b2')).toHaveLength(1);
  });

  it('a replica whose /metrics hangs is given up on below the beat: one warning, no scrape run killed, the others keep their values', async () => {
    const [b0, b1, b2] = backends.list;
    b0.behave({ metricsText: vllm(1, 1, 0.1), metricsHangs: true });
    b1.behave({ metricsText: vllm(2, 0, 0.2) });
    b2.behave({ metricsText: vllm(3, 0, 0.3) });
    // timeout_s far above the 0.2 s beat: njs kills a periodic run still going at the next beat
    // (a pending fetch keeps it going), so the scrape gives up at 150 ms instead.
    const lb = await fleet.start(
      { strategy: 'llm', replicas: replicasOf([b0, b1, b2]), replica_metrics: { interval_s: 0.2, timeout_s: 5 } },
      { errorLogLevel: 'warn' },
    );
    await showsLoads(lb, 'b1 and b2 scraped', { b0: [null, null], b1: [2, 0.2], b2: [3, 0.3] });
    const seen = b0.metricsScrapes;
    await waitFor('five more scrapes of the hung b0', () => b0.metricsScrapes >= seen + 5);
    const warnings = scrapeLines(lb, 'warn', 'b0');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`GET http://${b0.address}/metrics gave no answer within 150 ms`);
    expect(lb.nginx.stderr()).not.toContain('is already running');
    expect(scrapeLines(lb, 'warn', 'b1').concat(scrapeLines(lb, 'warn', 'b2'))).toEqual([]);
    expect(await loads(lb)).toEqual({ b0: [null, null], b1: [2, 0.2], b2: [3, 0.3] });
  });
});

describe('strategies that do not read replica load', () => {
  it('least-connections never scrapes: no GET /metrics reaches its replicas', async () => {
    const [b0, b1, b2, clock] = backends.list;
    for (const b of backends.list) b.behave({ metricsText: vllm(1, 0, 0.1) });
    const lc = await fleet.start({ strategy: 'least-connections', replicas: replicasOf([b0, b1, b2]), replica_metrics: { interval_s: 0.2 } });
    // A clock made of scrapes: an llm balancer in front of `clock` alone scrapes it every 0.2 s,
    // the interval the least-connections config asks for too.
    await fleet.start({ strategy: 'llm', replicas: replicasOf([clock]), replica_metrics: { interval_s: 0.2 } });
    for (let i = 0; i < 6; i++) expect((await request(lc.nginx.url(URL_PATH), { body: '{}' })).status).toBe(200);
    await waitFor('ten scrapes of the clock replica', () => clock.metricsScrapes >= 10);
    expect(scrapes([b0, b1, b2])).toEqual([0, 0, 0]);
    // (Sequential requests all find 0 in flight: least-connections breaks the ties at random.)
    expect(backends.counts()[0] + backends.counts()[1] + backends.counts()[2]).toBe(6);
    expect(clock.requests).toBe(0);
    expect(await loads(lc)).toEqual({ b0: [null, null], b1: [null, null], b2: [null, null] });
  });
});
