// Model-routing scenarios both gateways must pass (spec/nginx-models.spec.ts, spec/kong-models.spec.ts):
// each gateway's spec starts its own gateway in front of the same three backends and hands in how
// to send a request; what is asserted is the same, so the two stay in step.
import { expect } from 'vitest';
import type { Backends } from './backends';
import { waitFor } from './nginx-balancer';

export const LLAMA = 'meta-llama/Llama-3.1-8B-Instruct';
export const QWEN = 'Qwen/Qwen2.5-7B-Instruct';

export interface SentReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: Record<string, unknown>;
}

/** Sends one chat-completions body (JSON) through the gateway. */
export type Send = (body: Record<string, unknown>) => Promise<SentReply>;

/** A chat-completions body naming `model` (none when undefined). */
export function chat(model?: string): Record<string, unknown> {
  return { ...(model === undefined ? {} : { model }), max_tokens: 5, messages: [{ role: 'user', content: 'hello' }] };
}

/** The `models` config of the declared scenarios: b1 llama, b2 llama + sql-lora, b3 qwen; an alias and a default. */
export function declaredModels(backends: Backends, replicaName: (b: Backends['list'][number]) => string): Record<string, unknown> {
  const [b1, b2, b3] = backends.list;
  return {
    declared: [
      { replica: replicaName(b1), models: [LLAMA] },
      { replica: b2.address, models: [LLAMA, 'sql-lora'] },
      { replica: replicaName(b3), models: [QWEN] },
    ],
    aliases: [{ name: 'gpt-4o', model: QWEN }],
    default: LLAMA,
  };
}

/** Each model goes only to the replicas serving it (b1/b2 llama, b2 sql-lora, b3 qwen). */
export async function expectRoutedByModel(backends: Backends, send: Send): Promise<void> {
  const [b1, b2, b3] = backends.list;
  const seen: Record<string, Set<string>> = { [LLAMA]: new Set(), [QWEN]: new Set(), 'sql-lora': new Set() };
  // 12 rounds: least-connections breaks the ties of idle replicas at random, and all of one model's
  // requests on one of its two replicas (a false failure) is then 2 in 4096, not 2 in 64.
  for (let i = 0; i < 12; i++) {
    for (const model of Object.keys(seen)) {
      const reply = await send(chat(model));
      expect(reply.status).toBe(200);
      seen[model].add(String(reply.json.backend));
    }
  }
  expect([...seen[LLAMA]].sort()).toEqual([b1.name, b2.name].sort());
  expect([...seen[QWEN]]).toEqual([b3.name]);
  expect([...seen['sql-lora']]).toEqual([b2.name]);
}

/** An unknown model: OpenAI's 404 from the gateway, no replica sees the request. */
export async function expectModelNotFound(backends: Backends, send: Send): Promise<void> {
  const before = backends.list.map((b) => b.requests);
  const reply = await send(chat('mistral-large'));
  expect(reply.status).toBe(404);
  expect(String(reply.headers['content-type'])).toContain('application/json');
  expect(reply.json).toEqual({ error: { message: 'llm-balancer: The model `mistral-large` does not exist.', type: 'invalid_request_error', code: 'model_not_found', param: null } });
  expect(backends.list.map((b) => b.requests)).toEqual(before);
}

/** The alias and the default are written into the body the replica gets; other bodies pass byte for byte. */
export async function expectModelRewrites(backends: Backends, send: Send, sendText: (text: string) => Promise<unknown>): Promise<void> {
  const [, , b3] = backends.list;
  expect((await send({ ...chat('gpt-4o'), temperature: 0.25 })).json.backend).toBe(b3.name);
  expect(JSON.parse(b3.bodies[b3.bodies.length - 1])).toEqual({ ...chat(QWEN), temperature: 0.25 });
  const reply = await send(chat());
  const served = backends.list.find((b) => b.name === reply.json.backend)!;
  expect(JSON.parse(served.bodies[served.bodies.length - 1]).model).toBe(LLAMA);
  const text = JSON.stringify(chat(QWEN)).replace(':', ' : ');
  await sendText(text);
  expect(b3.bodies[b3.bodies.length - 1]).toBe(text);
}

/** Discovery's lists for the discovery scenario: b1 llama, b2 llama + sql-lora, b3 qwen. */
export function listDiscoveryModels(backends: Backends): void {
  const [b1, b2, b3] = backends.list;
  b1.behave({ models: [LLAMA] });
  b2.behave({ models: [LLAMA, 'sql-lora'] });
  b3.behave({ models: [QWEN] });
}

/**
 * Routing by discovered lists, the gateway's own GET /v1/models, and a replica that stops listing
 * (its list unknown: it may then serve any model, and nothing is "not found").
 */
export async function expectDiscoveryRouting(backends: Backends, send: Send, getModels: () => Promise<{ status: number; body: string }>): Promise<void> {
  const [, b2, b3] = backends.list;
  await waitFor('qwen routed to the replica listing it', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add(String((await send(chat(QWEN))).json.backend));
    return seen.size === 1 && seen.has(b3.name);
  });
  for (let i = 0; i < 4; i++) expect((await send(chat('sql-lora'))).json.backend).toBe(b2.name);
  expect((await send(chat('mistral-large'))).status).toBe(404);
  // GET /v1/models: the gateway's own union (these lists name every model as a base model).
  const before = backends.list.map((b) => b.requests);
  const list = await getModels();
  expect(list.status).toBe(200);
  expect((JSON.parse(list.body) as { data: Array<{ id: string }> }).data.map((m) => m.id)).toEqual([LLAMA, 'sql-lora', QWEN]);
  expect(backends.list.map((b) => b.requests)).toEqual(before);
  b3.behave({ models: null });
  await waitFor('an unknown model served by the replica whose list is unknown', async () => {
    const reply = await send(chat('mistral-large'));
    return reply.status === 200 && reply.json.backend === b3.name;
  });
}

/** vLLM's /metrics with its LoRA slots (both label lists carry the adapters with requests, as vLLM V1 writes them). */
function loraMetrics(running: string): string {
  return (
    '# TYPE vllm:lora_requests_info gauge\n' +
    `vllm:lora_requests_info{max_lora="2",running_lora_adapters="${running}",waiting_lora_adapters="${running}"} 1.7e9\n` +
    'vllm:num_requests_running{model_name="m"} 0\nvllm:num_requests_waiting{model_name="m"} 0\nvllm:kv_cache_usage_perc{model_name="m"} 0.1\n'
  );
}

/** Before the gateway starts: every replica lists the base and three adapters; b1 runs sql-lora, b2's two slots are full, b3's empty. */
export function prepareLoraBackends(backends: Backends): void {
  const [b1, b2, b3] = backends.list;
  for (const b of backends.list) b.behave({ models: [LLAMA, `sql-lora@${LLAMA}`, `chat-lora@${LLAMA}`, `new-lora@${LLAMA}`] });
  b1.behave({ metricsText: loraMetrics('sql-lora') });
  b2.behave({ metricsText: loraMetrics('chat-lora,law-lora') });
  b3.behave({ metricsText: loraMetrics('') });
}

/**
 * LoRA placement (llm's adapter score, or models.adapter_filter): sql-lora goes where it runs (b1)
 * and nowhere else while loads are even; an adapter running nowhere goes to a free slot (b1's
 * second or b3's), never to b2 whose slots are all taken, and then keeps to that replica: the
 * gateway's record of what it sent says it is loaded there, though /metrics does not name it
 * (the fixture's slots never change).
 */
export async function expectLoraPlacement(backends: Backends, send: Send): Promise<void> {
  const [b1, b2] = backends.list;
  const served = async (model: string, n: number) => {
    const seen: string[] = [];
    for (let i = 0; i < n; i++) {
      seen.push(String((await send(chat(model))).json.backend));
      // The log phase that gives the replica back runs just after the answer: let it, so each
      // request finds the loads even and only the adapter placement decides.
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
    return seen;
  };
  await waitFor('sql-lora sent where it runs', async () => (await served('sql-lora', 8)).every((name) => name === b1.name));
  expect(new Set(await served('sql-lora', 16))).toEqual(new Set([b1.name]));
  const fresh = await served('new-lora', 12);
  expect(fresh).not.toContain(b2.name);
  expect(new Set(fresh).size).toBe(1);
}
