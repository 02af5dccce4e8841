// The Kong path in front of REAL llama-server replicas (llama.cpp, the tiny random-weight model):
// the shootout's Kong stand-in (testbed/kong-gateway: the proxy half of Kong) calling the REAL
// kong-js-pluginserver running dist/kong/llm-balancer.js. Completions and streams, discovery from
// the servers' /v1/models, `llm` on their real /metrics, the plugin server's own active health
// checks on /health, and a replica killed mid-run. Waits are bounded polls; assertions are on
// answers, counts and states, never on durations.
import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KONG_OUTFILE } from '../build/build.js';
import { startKongGateway } from '../testbed/kong-gateway/gateway';
import type { KongGateway } from '../testbed/kong-gateway/gateway';
import type { LlamaServer } from '../testbed/lib/llama-process';
import { address, chatBody, JSON_HEADERS, killMidRun, modelsKnown, occupy, SHARED_SYSTEM_PROMPT, sseData, startLlamaFleet, sumOf } from './helpers/llama-fleet';
import { request, stream, waitFor } from './helpers/nginx-balancer';

let a: LlamaServer;
let b: LlamaServer;
let c: LlamaServer;
let servers: LlamaServer[] = [];
const gateways: KongGateway[] = [];

beforeAll(async () => {
  if (!fs.existsSync(KONG_OUTFILE)) throw new Error(`${KONG_OUTFILE} is missing: run \`node build/build.js\` (npm test's pretest does)`);
  ({ a, b, c, all: servers } = await startLlamaFleet());
});
afterEach(async () => {
  const errors: string[] = [];
  for (const g of gateways.splice(0)) {
    errors.push(...g.errors());
    await g.stop();
  }
  for (const s of servers) await s.start().catch(() => undefined);
  expect(errors).toEqual([]);
});
afterAll(async () => {
  for (const s of servers) await s.stop();
});

const STATUS_PATH = '/llm-balancer/status';

async function gateway(extra: Record<string, unknown> = {}): Promise<KongGateway> {
  const g = await startKongGateway({
    config: Object.assign(
      {
        strategy: 'llm',
        replicas: [a, b, c].map((s) => ({ address: address(s) })),
        replica_metrics: { interval_s: 0.2 },
        models: { refresh_s: 1 },
        active_health: { enabled: true, interval_s: 1, timeout_s: 0.5, unhealthy_threshold: 1, healthy_threshold: 1 },
        kong: { status_path: STATUS_PATH },
      },
      extra,
    ),
  });
  gateways.push(g);
  return g;
}

interface KongRow {
  address: string;
  state: string;
  picks: number;
  failures: number;
  queue: number | null;
  prefix_cache_queries: number | null;
  prefix_cache_hits: number | null;
}

async function rows(g: KongGateway): Promise<Record<string, KongRow>> {
  const doc = JSON.parse((await request(g.url + STATUS_PATH)).body) as { replicas: KongRow[] };
  const out: Record<string, KongRow> = {};
  for (const row of doc.replicas) out[row.address] = row;
  return out;
}

const chat = (g: KongGateway, body: string) => request(g.url + '/v1/chat/completions', { body, headers: JSON_HEADERS, timeoutMs: 30_000 });

describe('the Kong path in front of real llama-server replicas', () => {
  it('answers and streams completions; discovery sends each model only to the replicas that serve it; an unknown model gets an OpenAI 404', async () => {
    const g = await gateway();
    await modelsKnown(g.url);

    const reply = await chat(g, chatBody('random-llama', 'Hello through Kong'));
    expect(reply.status, reply.body).toBe(200);
    expect(JSON.parse(reply.body)).toMatchObject({ object: 'chat.completion', model: 'random-llama' });

    const s = stream(g.url + '/v1/chat/completions', { body: chatBody('random-llama', 'Stream through Kong', { stream: true }), headers: JSON_HEADERS });
    const events = sseData(await s.done);
    expect(s.status()).toBe(200);
    expect(events[events.length - 1]).toBe('[DONE]');
    expect(events.length).toBeGreaterThanOrEqual(3);

    const before = (await rows(g))[address(c)].picks;
    for (let i = 0; i < 4; i++) {
      const other = await chat(g, chatBody('other-llama', `other ${i}`));
      expect(other.status, other.body).toBe(200);
      expect((JSON.parse(other.body) as { model: string }).model).toBe('other-llama');
    }
    expect((await rows(g))[address(c)].picks - before).toBe(4);

    const unknown = await chat(g, chatBody('no-such-model', 'hi'));
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.body)).toMatchObject({ error: { code: 'model_not_found', type: 'invalid_request_error' } });
  });

  it("llm reads the replicas' real /metrics: a replica kept busy by traffic Kong never saw gets nothing until it frees up", async () => {
    const g = await gateway();
    await modelsKnown(g.url);
    const busy = await occupy(a);
    try {
      await waitFor("the status page shows a's scraped queue", async () => (await rows(g))[address(a)].queue === 3, 10_000);
      const before = await rows(g);
      for (let i = 0; i < 6; i++) {
        const reply = await chat(g, chatBody('random-llama', `while a is busy ${i}`));
        expect(reply.status, reply.body).toBe(200);
      }
      const after = await rows(g);
      expect(after[address(a)].picks - before[address(a)].picks).toBe(0);
      expect(after[address(b)].picks - before[address(b)].picks).toBe(6);
    } finally {
      for (const s of busy) s.abort();
    }
    await waitFor('the status page shows a idle', async () => (await rows(g))[address(a)].queue === 0, 10_000);

    // The replicas' own prefix-cache counters (llama.cpp's cached prompt tokens) reach the status
    // page: requests sharing a long system prompt find it in a slot's cache.
    const hitsBefore = sumOf(Object.values(await rows(g)).map((row) => row.prefix_cache_hits));
    let promptTokens = 0;
    for (let i = 0; i < 3; i++) {
      const reply = await chat(g, chatBody('random-llama', `shared prompt ${i}?`, { system: SHARED_SYSTEM_PROMPT, maxTokens: 2 }));
      expect(reply.status, reply.body).toBe(200);
      promptTokens = (JSON.parse(reply.body) as { usage: { prompt_tokens: number } }).usage.prompt_tokens;
    }
    await waitFor('the status page shows the shared prompt\'s cached tokens as prefix-cache hits', async () => sumOf(Object.values(await rows(g)).map((row) => row.prefix_cache_hits)) - hitsBefore > promptTokens / 2, 10_000);
    for (const row of Object.values(await rows(g))) if (row.prefix_cache_hits !== null) expect(row.prefix_cache_queries).toBeGreaterThanOrEqual(row.prefix_cache_hits);
  });

  it('a replica killed mid-run: Kong passes on only the attempts it had on it, the plugin keeps later requests away, and it is back once it restarts', async () => {
    const g = await gateway({ strategy: 'least-connections' });
    await modelsKnown(g.url);
    const statuses = await killMidRun(a, async (i) => (await chat(g, chatBody('random-llama', `run ${i}`, { maxTokens: 200, long: true }))).status);
    // Kong cannot move a failed attempt to another target (a JS plugin has no balancer phase): the
    // requests a had when it died, and those sent to it before the plugin saw it fail, get Kong's
    // 502. Everything else is answered.
    const failed = statuses.filter((s) => s !== 200);
    expect(statuses).toHaveLength(16);
    expect(failed.every((s) => s === 502)).toBe(true);
    expect(failed.length).toBeLessThanOrEqual(4 + 2);

    await waitFor('a marked down', async () => ['unhealthy', 'ejected'].includes((await rows(g))[address(a)].state), 10_000);
    const down = await rows(g);
    for (let i = 0; i < 4; i++) {
      const reply = await chat(g, chatBody('random-llama', `after the kill ${i}`));
      expect(reply.status, reply.body).toBe(200);
    }
    expect((await rows(g))[address(a)].picks).toBe(down[address(a)].picks);

    await a.start();
    await waitFor('a healthy again', async () => (await rows(g))[address(a)].state === 'healthy', 15_000);
  });
});
