// Real nginx (the generator's configuration, the built njs bundle) in front of REAL llama-server
// replicas (llama.cpp, the tiny random-weight model): completions and streams through the gateway,
// model discovery from the servers' own /v1/models, the `llm` strategy reading their real
// /metrics, active health checks on their /health, and a replica killed in the middle of a run.
// Runs on both nginx targets (trixie/njs and forky/QuickJS). Waits are bounded polls; assertions
// are on answers, counts and states, never on durations.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LlamaServer } from '../testbed/lib/llama-process';
import { createFleet } from './helpers/fleet';
import { address, chatBody, JSON_HEADERS, killMidRun, loadOf, modelsKnown, occupy, SHARED_SYSTEM_PROMPT, sseData, startLlamaFleet, sumOf } from './helpers/llama-fleet';
import { readStatus, request, stream, waitFor } from './helpers/nginx-balancer';
import type { Balancer, StatusRow } from './helpers/nginx-balancer';

let a: LlamaServer;
let b: LlamaServer;
let c: LlamaServer;
let servers: LlamaServer[] = [];
const fleet = createFleet('llama');

beforeAll(async () => {
  ({ a, b, c, all: servers } = await startLlamaFleet());
});
afterEach(async () => {
  const errors = await fleet.stopAll();
  for (const s of servers) await s.start().catch(() => undefined);
  expect(errors).toEqual([]);
});
afterAll(async () => {
  for (const s of servers) await s.stop();
});

const replicas = () => [
  { id: 'a', address: address(a) },
  { id: 'b', address: address(b) },
  { id: 'c', address: address(c) },
];

function config(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return Object.assign(
    {
      strategy: 'llm',
      replicas: replicas(),
      replica_metrics: { interval_s: 0.2 },
      models: { refresh_s: 1 },
      active_health: { enabled: true, interval_s: 1, timeout_s: 0.5, unhealthy_threshold: 1, healthy_threshold: 1 },
    },
    extra,
  );
}

type LlamaRow = StatusRow & { queue: number | null; prefix_cache_queries: number | null; prefix_cache_hits: number | null };

async function rows(lb: Balancer): Promise<Record<string, LlamaRow>> {
  const out: Record<string, LlamaRow> = {};
  for (const row of (await readStatus(lb)).replicas as LlamaRow[]) out[row.id] = row;
  return out;
}

describe('nginx in front of real llama-server replicas', () => {
  it('answers and streams completions; discovery sends each model only to the replicas that serve it; an unknown model gets an OpenAI 404', async () => {
    const lb = await fleet.start(config());
    await modelsKnown(`http://127.0.0.1:${lb.port}`);

    const reply = await request(lb.nginx.url('/v1/chat/completions'), { body: chatBody('random-llama', 'Hello through nginx'), headers: JSON_HEADERS });
    expect(reply.status, reply.body).toBe(200);
    const answer = JSON.parse(reply.body) as { object: string; model: string; usage: { completion_tokens: number } };
    expect(answer).toMatchObject({ object: 'chat.completion', model: 'random-llama' });
    expect(answer.usage.completion_tokens).toBeGreaterThan(0);

    const s = stream(lb.nginx.url('/v1/chat/completions'), { body: chatBody('random-llama', 'Stream through nginx', { stream: true }), headers: JSON_HEADERS });
    const events = sseData(await s.done);
    expect(s.status()).toBe(200);
    expect(events[events.length - 1]).toBe('[DONE]');
    expect(events.length).toBeGreaterThanOrEqual(3);

    const before = (await rows(lb)).c.picks;
    for (let i = 0; i < 4; i++) {
      const other = await request(lb.nginx.url('/v1/chat/completions'), { body: chatBody('other-llama', `other ${i}`), headers: JSON_HEADERS });
      expect(other.status, other.body).toBe(200);
      expect((JSON.parse(other.body) as { model: string }).model).toBe('other-llama');
    }
    expect((await rows(lb)).c.picks - before).toBe(4);

    const unknown = await request(lb.nginx.url('/v1/chat/completions'), { body: chatBody('no-such-model', 'hi'), headers: JSON_HEADERS });
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.body)).toMatchObject({ error: { code: 'model_not_found', type: 'invalid_request_error' } });
  });

  it('llm reads the replicas\' real /metrics: a replica kept busy by traffic this nginx never saw gets nothing until it frees up', async () => {
    const lb = await fleet.start(config());
    await modelsKnown(`http://127.0.0.1:${lb.port}`);
    const busy = await occupy(a);
    try {
      await waitFor('the status page shows a\'s scraped queue', async () => (await rows(lb)).a.queue === 3, 10_000);
      const picksBefore = await rows(lb);
      for (let i = 0; i < 6; i++) {
        const reply = await request(lb.nginx.url('/v1/chat/completions'), { body: chatBody('random-llama', `while a is busy ${i}`), headers: JSON_HEADERS });
        expect(reply.status, reply.body).toBe(200);
      }
      const picksAfter = await rows(lb);
      expect(picksAfter.a.picks - picksBefore.a.picks).toBe(0);
      expect(picksAfter.b.picks - picksBefore.b.picks).toBe(6);
    } finally {
      for (const s of busy) s.abort();
    }
    await waitFor('a idle again in its /metrics', async () => (await loadOf(a)).running === 0, 10_000);
    await waitFor('the status page shows a idle', async () => (await rows(lb)).a.queue === 0, 10_000);

    // The replicas' own prefix-cache counters (llama.cpp's cached prompt tokens) reach the status
    // page: requests sharing a long system prompt find it in a slot's cache.
    const hitsBefore = sumOf(Object.values(await rows(lb)).map((row) => row.prefix_cache_hits));
    let promptTokens = 0;
    for (let i = 0; i < 3; i++) {
      const reply = await request(lb.nginx.url('/v1/chat/completions'), { body: chatBody('random-llama', `shared prompt ${i}?`, { system: SHARED_SYSTEM_PROMPT, maxTokens: 2 }), headers: JSON_HEADERS });
      expect(reply.status, reply.body).toBe(200);
      promptTokens = (JSON.parse(reply.body) as { usage: { prompt_tokens: number } }).usage.prompt_tokens;
    }
    await waitFor('the status page shows the shared prompt\'s cached tokens as prefix-cache hits', async () => sumOf(Object.values(await rows(lb)).map((row) => row.prefix_cache_hits)) - hitsBefore > promptTokens / 2, 10_000);
    for (const row of Object.values(await rows(lb))) if (row.prefix_cache_hits !== null) expect(row.prefix_cache_queries).toBeGreaterThanOrEqual(row.prefix_cache_hits);
  });

  it('a replica killed mid-run: every request is still answered (failover), its probes mark it down, and it is back once it restarts', async () => {
    const lb = await fleet.start(config({ strategy: 'least-connections' }));
    await modelsKnown(`http://127.0.0.1:${lb.port}`);
    // Four clients sending long-ish answers one after the other; a is killed once a few are done.
    const statuses = await killMidRun(a, async (i) => {
      const reply = await request(lb.nginx.url('/v1/chat/completions'), { body: chatBody('random-llama', `run ${i}`, { maxTokens: 200, long: true }), headers: JSON_HEADERS, timeoutMs: 30_000 });
      return reply.status;
    });
    expect(statuses).toEqual(new Array(16).fill(200));

    await waitFor('a marked down', async () => ['unhealthy', 'ejected'].includes((await rows(lb)).a.state), 10_000);
    const down = await rows(lb);
    // Attempts did fail on a (cut mid-answer or refused) and were answered by b all the same.
    expect(down.a.failures).toBeGreaterThan(0);
    for (let i = 0; i < 4; i++) {
      const reply = await request(lb.nginx.url('/v1/chat/completions'), { body: chatBody('random-llama', `after the kill ${i}`), headers: JSON_HEADERS });
      expect(reply.status, reply.body).toBe(200);
    }
    expect((await rows(lb)).a.picks).toBe(down.a.picks);

    await a.start();
    await waitFor('a healthy again', async () => (await rows(lb)).a.state === 'healthy', 15_000);
  });
});
