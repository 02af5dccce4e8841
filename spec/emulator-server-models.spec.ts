// Served models and LoRA adapters through a real emulated replica's HTTP API on a free 127.0.0.1
// port: vLLM's 404 body for an unknown model, GET /v1/models as vLLM lists it, and
// vllm:lora_requests_info on /metrics. The engine runs on a manual clock and wall time is scripted,
// so every step and every timestamp below is exact; nothing waits on real time except HTTP itself.
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createManualClock } from '../testbed/emulator/clock';
import type { ManualClock } from '../testbed/emulator/clock';
import { PROFILES, startEmulatedReplicas, startReplicaServer } from '../testbed/emulator/index';
import { goFloatText } from '../testbed/emulator/metrics';
import type { EmulatedReplica } from '../testbed/emulator/index';

interface Reply {
  status: number;
  text: string;
}

function request(port: number, method: string, path: string, body?: unknown): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port, method, path, agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

const chat = (model: string | undefined) => ({ model, max_tokens: 3, messages: [{ role: 'user', content: 'Say three words.' }] });

/** Wall time the replica reads: starts at a fixed instant, one second later on every read. */
function scriptedWallClock(startMs: number): () => number {
  let reads = 0;
  return () => startMs + 1000 * reads++;
}

const WALL_START_MS = 1_789_828_498_000;

let replica: EmulatedReplica | null = null;
afterEach(async () => {
  if (replica !== null) await replica.close();
  replica = null;
});

async function start(options: Partial<Parameters<typeof startReplicaServer>[0]>, clock: ManualClock): Promise<EmulatedReplica> {
  replica = await startReplicaServer(
    Object.assign({ name: 'r1', profile: PROFILES.h100, port: 0, host: '127.0.0.1', seed: 1, timeScale: 1, clock, wallClockMs: () => WALL_START_MS }, options),
  );
  return replica;
}

/** Sends a completion and runs the manual clock once the engine has it, so the answer can come. */
async function complete(target: EmulatedReplica, clock: ManualClock, model: string | undefined): Promise<Reply> {
  const reply = request(target.port, 'POST', '/v1/chat/completions', chat(model));
  // The engine holds the request (the manual clock has not moved) until the clock runs.
  while (target.stats().waiting === 0) await new Promise((resolve) => setTimeout(resolve, 2));
  clock.runUntilIdle();
  return reply;
}

function loraInfoLines(metricsText: string): string[] {
  return metricsText.split('\n').filter((line) => line.startsWith('vllm:lora_requests_info{'));
}

describe('a replica with a model list and LoRA adapters', () => {
  const options = {
    servedModels: ['base-a', 'alias-a'],
    loraAdapters: [{ name: 'sql-lora' }, { prefix: 'adapter-' }],
    maxLoras: 2,
    loraLoadMs: 100,
  };

  it("answers an unknown model with vLLM's 404 NotFoundError body, and counts it as rejected", async () => {
    const clock = createManualClock();
    const target = await start(options, clock);
    const reply = await request(target.port, 'POST', '/v1/chat/completions', chat('gpt-4'));
    expect(reply.status).toBe(404);
    expect(JSON.parse(reply.text)).toEqual({ error: { message: 'The model `gpt-4` does not exist.', type: 'NotFoundError', param: 'model', code: 404 } });
    expect(target.stats()).toMatchObject({ rejected: 1, waiting: 0, running: 0 });
  });

  it.each([
    ['the first served name', 'base-a', 'base-a'],
    ['another served alias (answered as the first name)', 'alias-a', 'base-a'],
    ['a named adapter', 'sql-lora', 'sql-lora'],
    ['a pattern adapter', 'adapter-05', 'adapter-05'],
  ])('serves %s', async (_what, model, answered) => {
    const clock = createManualClock();
    const target = await start(options, clock);
    const reply = await complete(target, clock, model);
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.text).model).toBe(answered);
  });

  it('GET /v1/models lists the base names (one root for all aliases), then registered adapters with root and parent (pattern matches once requested)', async () => {
    const clock = createManualClock();
    const target = await start(options, clock);
    const permission = (index: number) => ({
      id: `modelperm-emulated-${index}`,
      object: 'model_permission',
      created: 1_789_828_498,
      allow_create_engine: false,
      allow_sampling: true,
      allow_logprobs: true,
      allow_search_indices: false,
      allow_view: true,
      allow_fine_tuning: false,
      organization: '*',
      group: null,
      is_blocking: false,
    });
    const card = (id: string, root: string, parent: string | null, maxModelLen: number | null, index: number) => ({
      id,
      object: 'model',
      created: 1_789_828_498,
      owned_by: 'vllm',
      root,
      parent,
      max_model_len: maxModelLen,
      permission: [permission(index)],
    });
    const before = JSON.parse((await request(target.port, 'GET', '/v1/models')).text);
    expect(before).toEqual({
      object: 'list',
      data: [card('base-a', 'base-a', null, PROFILES.h100.kvCacheTokens, 0), card('alias-a', 'base-a', null, PROFILES.h100.kvCacheTokens, 1), card('sql-lora', '/adapters/sql-lora', 'base-a', null, 2)],
    });
    await complete(target, clock, 'adapter-11');
    const after = JSON.parse((await request(target.port, 'GET', '/v1/models')).text);
    expect(after.data.map((entry: { id: string }) => entry.id)).toEqual(['base-a', 'alias-a', 'sql-lora', 'adapter-11']);
    expect(after.data[3]).toEqual(card('adapter-11', '/adapters/adapter-11', 'base-a', null, 3));
  });

  it('/metrics: vllm:lora_requests_info as vLLM writes it (sorted labels, Go-style time value, one series per label set) and the emulator-only load counters', async () => {
    const clock = createManualClock();
    const target = await start(Object.assign({}, options, { wallClockMs: scriptedWallClock(WALL_START_MS) }), clock);
    const idle = (await request(target.port, 'GET', '/metrics')).text;
    expect(idle).toContain('# HELP vllm:lora_requests_info Running stats on lora requests.\n# TYPE vllm:lora_requests_info gauge\n');
    expect(loraInfoLines(idle)).toEqual([]);

    await complete(target, clock, 'adapter-01');
    const text = (await request(target.port, 'GET', '/metrics')).text;
    // Three steps of max_tokens 3: the first two end with adapter-01 running, the last after it finished.
    // Each step end reads the scripted wall clock once: +0 s, +1 s, +2 s.
    expect(loraInfoLines(text)).toEqual([
      'vllm:lora_requests_info{max_lora="2",running_lora_adapters="adapter-01",waiting_lora_adapters="adapter-01"} 1.789828499e+09',
      'vllm:lora_requests_info{max_lora="2",running_lora_adapters="",waiting_lora_adapters=""} 1.7898285e+09',
    ]);
    expect(text).toContain('\nllm_emulator_lora_adapter_loads_total{model_name="base-a",engine="0"} 1\n');
    expect(text).toContain('\nllm_emulator_lora_adapter_evictions_total{model_name="base-a",engine="0"} 0\n');
  });

  it('a third adapter evicts the least recently used idle one, and /metrics counts it', async () => {
    const clock = createManualClock();
    const target = await start(options, clock);
    for (const model of ['adapter-01', 'adapter-02', 'adapter-01', 'adapter-03']) expect((await complete(target, clock, model)).status).toBe(200);
    expect(target.stats().lora).toMatchObject({ loads: 3, evictions: 1, resident: ['adapter-01', 'adapter-03'] });
    const text = (await request(target.port, 'GET', '/metrics')).text;
    expect(text).toContain('\nllm_emulator_lora_adapter_evictions_total{model_name="base-a",engine="0"} 1\n');
  });
});

describe('a replica without a model list (backwards compatible)', () => {
  it('serves any model name with its base model and lists only that model; no LoRA metrics', async () => {
    const clock = createManualClock();
    const target = await start({}, clock);
    const reply = await complete(target, clock, 'm');
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.text).model).toBe(target.modelName);
    const models = JSON.parse((await request(target.port, 'GET', '/v1/models')).text);
    expect(models.data.map((entry: { id: string }) => entry.id)).toEqual([target.modelName]);
    const text = (await request(target.port, 'GET', '/metrics')).text;
    expect(text).not.toContain('lora');
  });
});

describe("sample values in prometheus_client's Go float style", () => {
  it.each([
    [1789828498.802105, '1.789828498802105e+09'],
    [1789828500, '1.7898285e+09'],
    [1234567, '1.234567e+06'],
    [123456, '123456.0'],
    [0.5, '0.5'],
    [1, '1.0'],
  ])('%s prints as %s', (value, text) => {
    expect(goFloatText(value)).toBe(text);
  });
});

describe('startEmulatedReplicas passes models and LoRA settings per replica', () => {
  it('a replica spec sets its models and adapters; the options give maxLoras and loraLoadMs to those that do not', async () => {
    const emulator = await startEmulatedReplicas(
      [
        { name: 'a', profile: 'h100', servedModels: ['base-a'], loraAdapters: [{ prefix: 'adapter-' }] },
        { name: 'b', profile: 'h100', servedModels: ['base-b'], loraAdapters: [{ prefix: 'adapter-' }], maxLoras: 1 },
        { name: 'c', profile: 'h100' },
      ],
      { maxLoras: 3, loraLoadMs: 10, timeScale: 0.05 },
    );
    try {
      const [a, b, c] = emulator.replicas;
      expect([a.stats().lora?.maxLoras, b.stats().lora?.maxLoras, c.stats().lora]).toEqual([3, 1, null]);
      expect((await request(b.port, 'POST', '/v1/chat/completions', chat('base-a'))).status).toBe(404);
      expect((await request(c.port, 'POST', '/v1/chat/completions', chat('anything'))).status).toBe(200);
    } finally {
      await emulator.close();
    }
  });
});
