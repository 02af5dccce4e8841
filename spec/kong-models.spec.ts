// Model routing through the REAL kong-js-pluginserver (issue 13), behind the Kong stand-in
// (testbed/kong-gateway/) on live local backends: models.declared or discovery (the replicas'
// /v1/models) says who serves what; an unknown model is OpenAI's 404 from the plugin
// (kong.response.exit), an alias or the default is written into the body the replica gets
// (kong.service.request.set_raw_body), GET /v1/models is answered from the lists, and llm scores
// LoRA-adapter affinity. The scenarios are shared with the NGINX spec (helpers/model-scenarios.ts).
import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KONG_OUTFILE } from '../build/build.js';
import { startKongGateway } from '../testbed/kong-gateway/gateway';
import type { KongGateway } from '../testbed/kong-gateway/gateway';
import { startBackends } from './helpers/backends';
import type { Backends } from './helpers/backends';
import {
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
import { request, waitFor } from './helpers/nginx-balancer';

let backends: Backends;
const gateways: KongGateway[] = [];

beforeAll(async () => {
  if (!fs.existsSync(KONG_OUTFILE)) throw new Error(`${KONG_OUTFILE} is missing: run \`node build/build.js\` (npm test's pretest does)`);
  backends = await startBackends(3);
});
afterEach(async () => {
  for (const g of gateways.splice(0)) await g.stop();
  backends.resetAll();
});
afterAll(async () => {
  await backends?.close();
});

async function gateway(config: Record<string, unknown>): Promise<KongGateway> {
  const g = await startKongGateway({ config: { replicas: backends.list.map((b) => ({ address: b.address })), ...config } });
  gateways.push(g);
  return g;
}

/** The declared scenario: Kong names replicas (Admin API targets too) by host:port. */
function declared(): Promise<KongGateway> {
  return gateway({ strategy: 'least-connections', models: declaredModels(backends, (b) => b.address) });
}

function sendThrough(g: KongGateway): Send {
  return async (body) => {
    const reply = await request(g.url + '/v1/chat/completions', { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    return { status: reply.status, headers: reply.headers, json: JSON.parse(reply.body) as Record<string, unknown> };
  };
}

describe('model routing through the Kong plugin', () => {
  it('sends each model only to the replicas that serve it', async () => {
    const g = await declared();
    await expectRoutedByModel(backends, sendThrough(g));
    expect(g.errors()).toEqual([]);
  });

  it("answers an unknown model itself: OpenAI's 404 model_not_found, and no replica sees the request", async () => {
    await expectModelNotFound(backends, sendThrough(await declared()));
  });

  it('writes the served name into the body for an alias and for a body without a model; other bodies pass unchanged', async () => {
    const g = await declared();
    await expectModelRewrites(backends, sendThrough(g), (text) => request(g.url + '/v1/chat/completions', { body: text, headers: { 'content-type': 'application/json' } }));
  });

  it("discovery (on by default): learns each replica's /v1/models and routes by it; a replica that lists nothing may serve any model", async () => {
    listDiscoveryModels(backends);
    const g = await gateway({ strategy: 'least-connections', models: { refresh_s: 1 } });
    // The first round runs at start; a request arriving before it routes on what is known (nothing).
    await waitFor('every replica read once', () => backends.list.every((b) => b.modelReads >= 1));
    await expectDiscoveryRouting(backends, sendThrough(g), () => request(g.url + '/v1/models'));
    expect(g.errors()).toEqual([]);
  });

  it('discovery off: nothing is read, nothing is routed by model', async () => {
    for (const b of backends.list) b.behave({ models: ['only-this'] });
    const g = await gateway({ strategy: 'round-robin', models: { discovery: false } });
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(String((await sendThrough(g)(chat('anything'))).json.backend));
    expect(seen.size).toBe(3);
    expect(backends.list.every((b) => b.modelReads === 0)).toBe(true);
    // Nothing known: GET /v1/models goes to a replica, which answers for itself.
    expect(JSON.parse((await request(g.url + '/v1/models')).body).backend).toBeDefined();
  });

  it("llm places a LoRA adapter where vLLM's /metrics says it runs (vllm:lora_requests_info) or a free slot, then keeps it where it sent it", async () => {
    prepareLoraBackends(backends);
    const g = await gateway({ strategy: 'llm', models: { refresh_s: 1 }, replica_metrics: { interval_s: 0.2 } });
    await expectLoraPlacement(backends, sendThrough(g));
  });

  it("a replica's LoRA slots go stale with its /metrics (replica_metrics.stale_after_s): the adapter is no longer held to it", async () => {
    prepareLoraBackends(backends);
    const [b1] = backends.list;
    const g = await gateway({ strategy: 'least-connections', models: { refresh_s: 1, adapter_filter: true }, replica_metrics: { interval_s: 0.2, stale_after_s: 0.5 } });
    const send = sendThrough(g);
    await waitFor('sql-lora held to b1 while its slots are fresh', async () => {
      for (let i = 0; i < 6; i++) if ((await send(chat('sql-lora'))).json.backend !== b1.name) return false;
      return true;
    });
    // b1 stops answering /metrics (404): its slots, then unknown, no longer say sql-lora runs there;
    // b3's free slot is as good, and once sent there sql-lora counts as loaded on b3.
    b1.behave({ metricsText: null });
    await waitFor('sql-lora sent elsewhere once b1 went stale', async () => {
      for (let i = 0; i < 6; i++) if ((await send(chat('sql-lora'))).json.backend !== b1.name) return true;
      return false;
    });
  });

  it('models.adapter_filter gives least-connections the same placement', async () => {
    prepareLoraBackends(backends);
    const g = await gateway({ strategy: 'least-connections', models: { refresh_s: 1, adapter_filter: true }, replica_metrics: { interval_s: 0.2 } });
    await expectLoraPlacement(backends, sendThrough(g));
  });
});
