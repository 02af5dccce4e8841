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
import type { Backends } from './helpers/backends';
import { request } from './helpers/nginx-balancer';

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
});
