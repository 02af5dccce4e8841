// Model routing through real nginx + njs (issue 13): models.declared says which replica serves
// which model; the body's model (through models.aliases and models.default) picks among them,
// an unknown model is OpenAI's 404 from the gateway itself, and an alias or the default is written
// into the body the replica gets (proxy_set_body), on the first attempt and on failover.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBackends } from './helpers/backends';
import { view } from './helpers/core';
import { hashString } from '../shared/hash';
import { rendezvousOwner } from '../shared/strategies/consistent-hash';
import type { Backends } from './helpers/backends';
import { createFleet, replicasOf } from './helpers/fleet';
import { request, waitFor } from './helpers/nginx-balancer';
import type { Balancer } from './helpers/nginx-balancer';

let backends: Backends;
const fleet = createFleet('models');
const LLAMA = 'meta-llama/Llama-3.1-8B-Instruct';
const QWEN = 'Qwen/Qwen2.5-7B-Instruct';

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

function start(extra: Record<string, unknown> = {}): Promise<Balancer> {
  const [b1, b2, b3] = backends.list;
  return fleet.start({
    strategy: 'least-connections',
    retries: 1,
    replicas: replicasOf(backends.list),
    models: {
      declared: [
        { replica: b1.name, models: [LLAMA] },
        { replica: b2.address, models: [LLAMA, 'sql-lora'] },
        { replica: b3.name, models: [QWEN] },
      ],
      aliases: [{ name: 'gpt-4o', model: QWEN }],
      default: LLAMA,
    },
    ...extra,
  });
}

async function send(lb: Balancer, body: Record<string, unknown>) {
  const reply = await request(lb.nginx.url('/v1/chat/completions'), { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: reply.status, headers: reply.headers, json: JSON.parse(reply.body) as Record<string, unknown> };
}

const chat = (model?: string) => ({ ...(model === undefined ? {} : { model }), max_tokens: 5, messages: [{ role: 'user', content: 'hello' }] });

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
    const [b1, b2, b3] = backends.list;
    const seen: Record<string, Set<string>> = { [LLAMA]: new Set(), [QWEN]: new Set(), 'sql-lora': new Set() };
    for (let i = 0; i < 6; i++) {
      for (const model of Object.keys(seen)) {
        const reply = await send(lb, chat(model));
        expect(reply.status).toBe(200);
        seen[model].add(String(reply.json.backend));
      }
    }
    expect([...seen[LLAMA]].sort()).toEqual([b1.name, b2.name].sort());
    expect([...seen[QWEN]]).toEqual([b3.name]);
    expect([...seen['sql-lora']]).toEqual([b2.name]);
  });

  it("answers an unknown model itself: OpenAI's 404 model_not_found, and no replica sees the request", async () => {
    const lb = await start();
    const before = backends.list.map((b) => b.requests);
    const reply = await send(lb, chat('mistral-large'));
    expect(reply.status).toBe(404);
    expect(String(reply.headers['content-type'])).toContain('application/json');
    expect(reply.json).toEqual({ error: { message: 'llm-balancer: The model `mistral-large` does not exist.', type: 'invalid_request_error', code: 'model_not_found', param: null } });
    expect(backends.list.map((b) => b.requests)).toEqual(before);
  });

  it('writes the served name into the body for an alias and for a body without a model; other bodies pass unchanged', async () => {
    const lb = await start();
    const [, , b3] = backends.list;
    expect((await send(lb, { ...chat('gpt-4o'), temperature: 0.25 })).json.backend).toBe(b3.name);
    expect(JSON.parse(b3.bodies[b3.bodies.length - 1])).toEqual({ ...chat(QWEN), temperature: 0.25 });
    const reply = await send(lb, chat());
    const served = backends.list.find((b) => b.name === reply.json.backend)!;
    expect(JSON.parse(served.bodies[served.bodies.length - 1]).model).toBe(LLAMA);
    const text = JSON.stringify(chat(QWEN)).replace(':', ' : ');
    await request(lb.nginx.url('/v1/chat/completions'), { body: text, headers: { 'content-type': 'application/json' } });
    expect(b3.bodies[b3.bodies.length - 1]).toBe(text);
  });

  it("failover stays within the model's replicas and sends the rewritten body again", async () => {
    const lb = await start();
    const [b1, b2, b3] = backends.list;
    b1.behave({ status: 503 });
    b2.behave({ status: 503 });
    const reply = await send(lb, chat());
    // Both llama replicas answered 503 (the second attempt's answer passes through); qwen's was never tried.
    expect(reply.status).toBe(503);
    expect(b3.requests).toBe(0);
    expect(b1.requests + b2.requests).toBe(2);
    for (const b of [b1, b2]) expect(JSON.parse(b.bodies[b.bodies.length - 1]).model).toBe(LLAMA);
  });

  it('without models configured any model goes anywhere, unknown ones included (the replica answers for itself)', async () => {
    const lb = await fleet.start({ strategy: 'round-robin', replicas: replicasOf(backends.list) });
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(String((await send(lb, chat('mistral-large'))).json.backend));
    expect(seen.size).toBe(3);
  });

  it('discovery: with a strategy that reads the body, learns each replica\'s /v1/models and routes by it', async () => {
    const [b1, b2, b3] = backends.list;
    b1.behave({ models: [LLAMA] });
    b2.behave({ models: [LLAMA, 'sql-lora'] });
    b3.behave({ models: [QWEN] });
    const lb = await fleet.start({ strategy: 'least-tokens', replicas: replicasOf(backends.list), models: { refresh_s: 1 } });
    await waitFor('qwen routed to the replica listing it', async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 4; i++) seen.add(String((await send(lb, chat(QWEN))).json.backend));
      return seen.size === 1 && seen.has(b3.name);
    });
    for (let i = 0; i < 4; i++) expect((await send(lb, chat('sql-lora'))).json.backend).toBe(b2.name);
    expect((await send(lb, chat('mistral-large'))).status).toBe(404);
    // GET /v1/models: the gateway's own union (these backends list every name as a base model).
    const before = backends.list.map((b) => b.requests);
    const list = await request(lb.nginx.url('/v1/models'));
    expect(list.status).toBe(200);
    expect((JSON.parse(list.body) as { data: Array<{ id: string }> }).data.map((m) => m.id)).toEqual([LLAMA, 'sql-lora', QWEN]);
    expect(backends.list.map((b) => b.requests)).toEqual(before);
    // b3 stops listing: its list is unknown, it may serve any model, nothing is "not found".
    b3.behave({ models: null });
    await waitFor('an unknown model served by the replica whose list is unknown', async () => {
      const reply = await send(lb, chat('mistral-large'));
      return reply.status === 200 && reply.json.backend === b3.name;
    });
  });

  it('discovery does not make nginx read bodies: on the js_set path (a body-blind strategy, one read bound) nothing is read or routed', async () => {
    const [b1, , b3] = backends.list;
    b1.behave({ models: [LLAMA] });
    b3.behave({ models: [QWEN] });
    // stream_idle_s equal to response_s: streams need no proxy location of their own, so nothing reads the body.
    const lb = await fleet.start({ strategy: 'round-robin', replicas: replicasOf(backends.list), timeouts: { response_s: 300, stream_idle_s: 300 }, models: { refresh_s: 1 } });
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(String((await send(lb, chat(QWEN))).json.backend));
    expect(seen.size).toBe(3);
    expect(backends.list.every((b) => b.modelReads === 0)).toBe(true);
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
    const lb = await fleet.start({ strategy: 'llm', replicas: replicasOf(backends.list), models: { refresh_s: 1 }, replica_metrics: { interval_s: 0.2 } });
    const target = lb;
    const ids = backends.list.map((b) => b.name);
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
