// Model routing through real nginx + njs (issue 13): models.declared says which replica serves
// which model, discovery reads it from the replicas' /v1/models; the body's model (through
// models.aliases and models.default) picks among them, an unknown model is OpenAI's 404 from the
// gateway itself, an alias or the default is written into the body the replica gets
// (proxy_set_body, on every attempt), GET /v1/models is answered from the lists, and llm scores
// LoRA-adapter affinity. The scenarios are shared with the Kong spec (helpers/model-scenarios.ts).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBackends } from './helpers/backends';
import type { Backends } from './helpers/backends';
import { createFleet, replicasOf } from './helpers/fleet';
import {
  LLAMA,
  QWEN,
  chat,
  declaredModels,
  expectDiscoveryRouting,
  expectLoraPlacement,
  expectModelNotFound,
  expectModelRewrites,
  expectRoutedByModel,
  listDiscoveryModels,
  prepareLoraBackends,
} from './helpers/model-scenarios';
import type { Send } from './helpers/model-scenarios';
import { request } from './helpers/nginx-balancer';
import type { Balancer } from './helpers/nginx-balancer';

let backends: Backends;
const fleet = createFleet('models');

beforeAll(async () => {
  backends = await startBackends(3);
});
afterEach(async () => {
  expect(await fleet.stopAll()).toEqual([]);
  backends.resetAll();
});
afterAll(async () => {
  await backends?.close();
});

/** The declared scenario: nginx names replicas by id (replicasOf: the backend's name). */
function start(): Promise<Balancer> {
  return fleet.start({ strategy: 'least-connections', retries: 1, replicas: replicasOf(backends.list), models: declaredModels(backends, (b) => b.name) });
}

function sendThrough(lb: Balancer): Send {
  return async (body) => {
    const reply = await request(lb.nginx.url('/v1/chat/completions'), { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    return { status: reply.status, headers: reply.headers, json: JSON.parse(reply.body) as Record<string, unknown> };
  };
}

describe('model routing through nginx', () => {
  it('sends each model only to the replicas that serve it, and answers GET /v1/models from the declared lists and aliases', async () => {
    const lb = await start();
    const list = await request(lb.nginx.url('/v1/models'));
    expect((JSON.parse(list.body) as { data: Array<{ id: string; parent: string | null }> }).data.map((m) => [m.id, m.parent])).toEqual([
      [LLAMA, null],
      ['sql-lora', null],
      [QWEN, null],
      ['gpt-4o', QWEN],
    ]);
    await expectRoutedByModel(backends, sendThrough(lb));
  });

  it("answers an unknown model itself: OpenAI's 404 model_not_found, and no replica sees the request", async () => {
    await expectModelNotFound(backends, sendThrough(await start()));
  });

  it('writes the served name into the body for an alias and for a body without a model; other bodies pass unchanged', async () => {
    const lb = await start();
    await expectModelRewrites(backends, sendThrough(lb), (text) => request(lb.nginx.url('/v1/chat/completions'), { body: text, headers: { 'content-type': 'application/json' } }));
  });

  it("failover stays within the model's replicas and sends the rewritten body again", async () => {
    const lb = await start();
    const [b1, b2, b3] = backends.list;
    b1.behave({ status: 503 });
    b2.behave({ status: 503 });
    const reply = await sendThrough(lb)(chat());
    // Both llama replicas answered 503 (the second attempt's answer passes through); qwen's was never tried.
    expect(reply.status).toBe(503);
    expect(b3.requests).toBe(0);
    expect(b1.requests + b2.requests).toBe(2);
    for (const b of [b1, b2]) expect(JSON.parse(b.bodies[b.bodies.length - 1]).model).toBe(LLAMA);
  });

  it('without models configured any model goes anywhere, unknown ones included (the replica answers for itself)', async () => {
    const send = sendThrough(await fleet.start({ strategy: 'round-robin', replicas: replicasOf(backends.list) }));
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(String((await send(chat('mistral-large'))).json.backend));
    expect(seen.size).toBe(3);
  });

  it("discovery: where the body is read (here least-tokens), learns each replica's /v1/models and routes by it", async () => {
    listDiscoveryModels(backends);
    const lb = await fleet.start({ strategy: 'least-tokens', replicas: replicasOf(backends.list), models: { refresh_s: 1 } });
    await expectDiscoveryRouting(backends, sendThrough(lb), () => request(lb.nginx.url('/v1/models')));
  });

  it('discovery does not make nginx read bodies: on the js_set path (a body-blind strategy, one read bound) nothing is read or routed', async () => {
    listDiscoveryModels(backends);
    // stream_idle_s equal to response_s: streams need no proxy location of their own, so nothing reads the body.
    const lb = await fleet.start({ strategy: 'round-robin', replicas: replicasOf(backends.list), timeouts: { response_s: 300, stream_idle_s: 300 }, models: { refresh_s: 1 } });
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(String((await sendThrough(lb)(chat(QWEN))).json.backend));
    expect(seen.size).toBe(3);
    expect(backends.list.every((b) => b.modelReads === 0)).toBe(true);
  });

  it("llm places a LoRA adapter where vLLM's /metrics says it runs (vllm:lora_requests_info) or a free slot, then keeps it where it sent it", async () => {
    prepareLoraBackends(backends);
    const lb = await fleet.start({ strategy: 'llm', replicas: replicasOf(backends.list), models: { refresh_s: 1 }, replica_metrics: { interval_s: 0.2 } });
    await expectLoraPlacement(backends, sendThrough(lb));
  });

  it('models.adapter_filter gives least-connections the same placement', async () => {
    prepareLoraBackends(backends);
    const lb = await fleet.start({ strategy: 'least-connections', replicas: replicasOf(backends.list), models: { refresh_s: 1, adapter_filter: true }, replica_metrics: { interval_s: 0.2 } });
    await expectLoraPlacement(backends, sendThrough(lb));
  });
});
