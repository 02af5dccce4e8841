// Model routing through the REAL kong-js-pluginserver (issue 13), behind the Kong stand-in
// (testbed/kong-gateway/) on live local backends: models.declared picks among the replicas serving
// the body's model, an unknown model is OpenAI's 404 from the plugin (kong.response.exit), and an
// alias or the default is written into the body the replica gets (kong.service.request.set_raw_body).
import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KONG_OUTFILE } from '../build/build.js';
import { startKongGateway } from '../testbed/kong-gateway/gateway';
import type { KongGateway } from '../testbed/kong-gateway/gateway';
import { startBackends } from './helpers/backends';
import { view } from './helpers/core';
import { hashString } from '../shared/hash';
import { rendezvousOwner } from '../shared/strategies/consistent-hash';
import type { Backends } from './helpers/backends';
import { request, waitFor } from './helpers/nginx-balancer';

let backends: Backends;
const gateways: KongGateway[] = [];
const LLAMA = 'meta-llama/Llama-3.1-8B-Instruct';
const QWEN = 'Qwen/Qwen2.5-7B-Instruct';

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

async function gateway(): Promise<KongGateway> {
  const [b1, b2, b3] = backends.list;
  const g = await startKongGateway({
    config: {
      strategy: 'least-connections',
      replicas: backends.list.map((b) => ({ address: b.address })),
      models: {
        // Kong names replicas by host:port (Admin API targets too).
        declared: [
          { replica: b1.address, models: [LLAMA] },
          { replica: b2.address, models: [LLAMA, 'sql-lora'] },
          { replica: b3.address, models: [QWEN] },
        ],
        aliases: [{ name: 'gpt-4o', model: QWEN }],
        default: LLAMA,
      },
    },
  });
  gateways.push(g);
  return g;
}

async function send(g: KongGateway, body: Record<string, unknown>) {
  const reply = await request(g.url + '/v1/chat/completions', { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: reply.status, headers: reply.headers, json: JSON.parse(reply.body) as Record<string, unknown> };
}

const chat = (model?: string) => ({ ...(model === undefined ? {} : { model }), max_tokens: 5, messages: [{ role: 'user', content: 'hello' }] });

describe('model routing through the Kong plugin', () => {
  it('sends each model only to the replicas that serve it', async () => {
    const g = await gateway();
    const [b1, b2, b3] = backends.list;
    const seen: Record<string, Set<string>> = { [LLAMA]: new Set(), [QWEN]: new Set(), 'sql-lora': new Set() };
    for (let i = 0; i < 6; i++) {
      for (const model of Object.keys(seen)) {
        const reply = await send(g, chat(model));
        expect(reply.status).toBe(200);
        seen[model].add(String(reply.json.backend));
      }
    }
    expect([...seen[LLAMA]].sort()).toEqual([b1.name, b2.name].sort());
    expect([...seen[QWEN]]).toEqual([b3.name]);
    expect([...seen['sql-lora']]).toEqual([b2.name]);
    expect(g.errors()).toEqual([]);
  });

  it("answers an unknown model itself: OpenAI's 404 model_not_found, and no replica sees the request", async () => {
    const g = await gateway();
    const before = backends.list.map((b) => b.requests);
    const reply = await send(g, chat('mistral-large'));
    expect(reply.status).toBe(404);
    expect(String(reply.headers['content-type'])).toContain('application/json');
    expect(reply.json).toEqual({ error: { message: 'llm-balancer: The model `mistral-large` does not exist.', type: 'invalid_request_error', code: 'model_not_found', param: null } });
    expect(backends.list.map((b) => b.requests)).toEqual(before);
  });

  it('writes the served name into the body for an alias and for a body without a model; other bodies pass unchanged', async () => {
    const g = await gateway();
    const [, , b3] = backends.list;
    expect((await send(g, { ...chat('gpt-4o'), temperature: 0.25 })).json.backend).toBe(b3.name);
    expect(JSON.parse(b3.bodies[b3.bodies.length - 1])).toEqual({ ...chat(QWEN), temperature: 0.25 });
    const reply = await send(g, chat());
    const served = backends.list.find((b) => b.name === reply.json.backend)!;
    expect(JSON.parse(served.bodies[served.bodies.length - 1]).model).toBe(LLAMA);
    const text = JSON.stringify(chat(QWEN)).replace(':', ' : ');
    await request(g.url + '/v1/chat/completions', { body: text, headers: { 'content-type': 'application/json' } });
    expect(b3.bodies[b3.bodies.length - 1]).toBe(text);
  });

  it('discovery (on by default): learns each replica\'s /v1/models and routes by it; a replica that lists nothing may serve any model', async () => {
    const [b1, b2, b3] = backends.list;
    b1.behave({ models: [LLAMA] });
    b2.behave({ models: [LLAMA, 'sql-lora'] });
    b3.behave({ models: [QWEN] });
    const g = await startKongGateway({ config: { strategy: 'least-connections', replicas: backends.list.map((b) => ({ address: b.address })), models: { refresh_s: 1 } } });
    gateways.push(g);
    // The first round runs at start; a request arriving before it routes on what is known (nothing).
    await waitFor('every replica read once', () => backends.list.every((b) => b.modelReads >= 1));
    let seen = new Set<string>();
    await waitFor('qwen routed to the replica listing it', async () => {
      seen = new Set<string>();
      for (let i = 0; i < 4; i++) seen.add(String((await send(g, chat(QWEN))).json.backend));
      return seen.size === 1 && seen.has(b3.name);
    });
    for (let i = 0; i < 4; i++) expect((await send(g, chat('sql-lora'))).json.backend).toBe(b2.name);
    expect((await send(g, chat('mistral-large'))).status).toBe(404);
    // GET /v1/models: the gateway's own union, no replica asked.
    const before = backends.list.map((b) => b.requests);
    const list = await request(g.url + '/v1/models');
    expect(list.status).toBe(200);
    // (These backends list every name as a base model; vLLM lists adapters with their parent.)
    expect((JSON.parse(list.body) as { data: Array<{ id: string }> }).data.map((m) => m.id)).toEqual([LLAMA, 'sql-lora', QWEN]);
    expect(backends.list.map((b) => b.requests)).toEqual(before);
    // b3 stops listing (404): its list is unknown now, it may serve any model, and nothing is "not found".
    b3.behave({ models: null });
    await waitFor('an unknown model served by the replica whose list is unknown', async () => {
      const reply = await send(g, chat('mistral-large'));
      return reply.status === 200 && reply.json.backend === b3.name;
    });
    expect(g.errors()).toEqual([]);
  });

  it('discovery off: nothing is read, nothing is routed by model', async () => {
    for (const b of backends.list) b.behave({ models: ['only-this'] });
    const g = await startKongGateway({ config: { strategy: 'round-robin', replicas: backends.list.map((b) => ({ address: b.address })), models: { discovery: false } } });
    gateways.push(g);
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(String((await send(g, chat('anything'))).json.backend));
    expect(seen.size).toBe(3);
    expect(backends.list.every((b) => b.modelReads === 0)).toBe(true);
    // Nothing known: GET /v1/models goes to a replica, which answers for itself.
    expect(JSON.parse((await request(g.url + '/v1/models')).body).backend).toBeDefined();
  });

  it("llm sends a LoRA adapter to its home replica or where vLLM's /metrics says it runs (vllm:lora_requests_info), never elsewhere while loads are even", async () => {
    const [b1, b2, b3] = backends.list;
    const lora = (running: string) =>
      '# TYPE vllm:lora_requests_info gauge\n' +
      `vllm:lora_requests_info{max_lora="2",running_lora_adapters="${running}",waiting_lora_adapters="${running}"} 1.7e9\n` +
      'vllm:num_requests_running{model_name="m"} 0\nvllm:num_requests_waiting{model_name="m"} 0\nvllm:kv_cache_usage_perc{model_name="m"} 0.1\n';
    // Every replica serves the base and its adapters (one identical list: no routing by list alone).
    for (const b of backends.list) b.behave({ models: [LLAMA, `sql-lora@${LLAMA}`, `chat-lora@${LLAMA}`, `new-lora@${LLAMA}`] });
    b1.behave({ metricsText: lora('sql-lora') });
    b2.behave({ metricsText: lora('chat-lora,law-lora') });
    b3.behave({ metricsText: lora('') });
    const g = await startKongGateway({ config: { strategy: 'llm', replicas: backends.list.map((b) => ({ address: b.address })), models: { refresh_s: 1 }, replica_metrics: { interval_s: 0.2 } } });
    gateways.push(g);
    const target = g;
    const ids = backends.list.map((b) => b.address);
    const homeOf = (adapter: string) => backends.list[rendezvousOwner(ids.map((id) => view(id)), hashString(adapter))].name;
    const served = async (model: string, n: number) => {
      const seen = new Set<string>();
      for (let i = 0; i < n; i++) {
        seen.add(String((await send(target, chat(model))).json.backend));
        // The log phase that gives the replica back runs just after the answer: let it, so each
        // request finds the loads even and only the adapter score decides.
        await new Promise((resolve) => setTimeout(resolve, 30));
      }
      return seen;
    };
    // Once b1's slots are scraped: sql-lora goes to b1 or its home, nowhere else.
    const allowed = new Set([b1.name, homeOf('sql-lora')]);
    await waitFor('sql-lora sent where it runs or home', async () => [...(await served('sql-lora', 16))].every((name) => allowed.has(name)) && allowed.size > 0);
    const sql = await served('sql-lora', 16);
    expect([...sql].every((name) => allowed.has(name))).toBe(true);
    expect(sql.has(b1.name)).toBe(true);
    // An adapter running nowhere: its home (the same on every gateway node), or a free slot when
    // the home looks busier (a request still counted); never b2, whose slots are all taken.
    const fresh = await served('new-lora', 8);
    expect(fresh.has(homeOf('new-lora'))).toBe(true);
    if (homeOf('new-lora') !== b2.name) expect(fresh.has(b2.name)).toBe(false);
  });
});
