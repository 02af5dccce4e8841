// The real inference server of the reality checks: llama.cpp's llama-server (Debian's
// llama.cpp-tools, provisioned by build/fetch-llama.js) loading the random-weight GGUF model
// testbed/llama/tiny-model.ts writes. What the gateway specs rely on is checked here against the
// server itself: the model file is what the format says and the server's own load reports it
// back, completions stream and not, the per-slot prompt cache is reused and counted, and the
// server's /metrics reads into the balancer's load signals.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReplicaMetrics } from '../shared/replica-metrics';
import { readGgufHeader } from '../testbed/llama/gguf';
import { ensureTinyModel, SPEC_MODEL, tinyVocabulary } from '../testbed/llama/tiny-model';
import { startLlamaServer } from '../testbed/lib/llama-process';
import type { LlamaServer } from '../testbed/lib/llama-process';
import { request, stream } from './helpers/nginx-balancer';

let server: LlamaServer;

beforeAll(async () => {
  server = await startLlamaServer({ slots: 2, alias: 'random-llama' });
});
afterAll(async () => {
  await server?.stop();
});

const json = { 'content-type': 'application/json' };

async function metrics(): Promise<ReturnType<typeof parseReplicaMetrics>> {
  const reply = await request(server.url + '/metrics', { method: 'GET' });
  expect(reply.status).toBe(200);
  return parseReplicaMetrics(reply.body);
}

describe('the tiny model file', () => {
  it('is a GGUF v3 file of architecture llama whose header says what was written, cached by its shape', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-gguf-'));
    try {
      const file = ensureTinyModel(SPEC_MODEL, dir);
      expect(ensureTinyModel(SPEC_MODEL, dir)).toBe(file);
      expect(ensureTinyModel(Object.assign({}, SPEC_MODEL, { seed: 2 }), dir)).not.toBe(file);
      const header = readGgufHeader(file);
      expect(header.version).toBe(3);
      expect(header.metadata['general.architecture']).toBe('llama');
      expect(header.metadata['llama.block_count']).toBe(SPEC_MODEL.layers);
      expect(header.metadata['llama.embedding_length']).toBe(SPEC_MODEL.embedding);
      const vocabulary = tinyVocabulary();
      expect(header.metadata['tokenizer.ggml.tokens']).toEqual(vocabulary.tokens);
      // 3 control tokens, 256 byte tokens, then the pieces; every offset aligned to 32 bytes.
      expect(vocabulary.tokens.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
      expect(header.tensors).toHaveLength(2 + 9 * SPEC_MODEL.layers + 1);
      expect(header.tensors.find((t) => t.name === 'token_embd.weight')?.dims).toEqual([SPEC_MODEL.embedding, vocabulary.tokens.length]);
      for (const t of header.tensors) expect(t.offset % 32).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("is what llama-server says it loaded: vocabulary, width and parameter count", async () => {
    const reply = await request(server.url + '/v1/models', { method: 'GET' });
    expect(reply.status).toBe(200);
    const list = JSON.parse(reply.body) as { data: Array<{ id: string; meta: { n_vocab: number; n_embd: number; n_params: number } }> };
    expect(list.data.map((m) => m.id)).toEqual(['random-llama']);
    const { embedding: e, layers, feedForward: ff, heads, kvHeads } = SPEC_MODEL;
    const vocab = tinyVocabulary().tokens.length;
    const kv = (e / heads) * kvHeads;
    const perLayer = 2 * e + e * e * 2 + 2 * e * kv + 3 * e * ff;
    expect(list.data[0].meta).toMatchObject({ n_vocab: vocab, n_embd: e, n_params: 2 * e * vocab + e + layers * perLayer });
  });
});

describe('llama-server with the tiny model', () => {
  it('answers a chat completion with an OpenAI body and usage, and streams one as server-sent events ending in [DONE]', async () => {
    const body = { model: 'random-llama', messages: [{ role: 'user', content: 'Say something about the weather.' }], max_tokens: 8 };
    const reply = await request(server.url + '/v1/chat/completions', { body: JSON.stringify(body), headers: json });
    expect(reply.status, reply.body).toBe(200);
    const answer = JSON.parse(reply.body) as { object: string; choices: Array<{ message: { content: string } }>; usage: { prompt_tokens: number; completion_tokens: number } };
    expect(answer.object).toBe('chat.completion');
    expect(answer.usage.prompt_tokens).toBeGreaterThan(5);
    expect(answer.usage.completion_tokens).toBeGreaterThan(0);
    expect(answer.usage.completion_tokens).toBeLessThanOrEqual(8);

    const s = stream(server.url + '/v1/chat/completions', { body: JSON.stringify(Object.assign({ stream: true }, body)), headers: json });
    await s.done;
    const events = s.received().split('\n').filter((line) => line.startsWith('data: '));
    expect(events[events.length - 1]).toBe('data: [DONE]');
    expect(events.length).toBeGreaterThanOrEqual(3);
    expect(JSON.parse(events[0].slice(6)).object).toBe('chat.completion.chunk');
  });

  it('reuses a slot\'s cached prompt prefix, and its /metrics counts the reused tokens as prefix hits', async () => {
    const before = await metrics();
    expect(before.server).toBe('llamacpp');
    const shared = 'You are a helpful assistant for the llm-balancer project. '.repeat(8);
    const ask = (question: string) =>
      request(server.url + '/v1/chat/completions', {
        body: JSON.stringify({ model: 'random-llama', messages: [{ role: 'system', content: shared }, { role: 'user', content: question }], max_tokens: 2 }),
        headers: json,
      });
    const first = JSON.parse((await ask('first question?')).body) as { usage: { prompt_tokens: number; prompt_tokens_details?: { cached_tokens: number } } };
    const second = JSON.parse((await ask('second question?')).body) as { usage: { prompt_tokens: number; prompt_tokens_details?: { cached_tokens: number } } };
    // The shared system prompt is most of the second prompt, and it was computed once.
    expect(second.usage.prompt_tokens_details?.cached_tokens ?? 0).toBeGreaterThan(second.usage.prompt_tokens / 2);
    const after = await metrics();
    expect((after.prefixHits ?? 0) - (before.prefixHits ?? 0)).toBeGreaterThan(second.usage.prompt_tokens / 2);
    expect((after.prefixQueries ?? 0) - (before.prefixQueries ?? 0)).toBeGreaterThanOrEqual(first.usage.prompt_tokens + second.usage.prompt_tokens);
  });

  it('reports busy slots and deferred requests in /metrics while it works (running, waiting)', async () => {
    const long = JSON.stringify({ model: 'random-llama', prompt: 'x', max_tokens: 100_000, ignore_eos: true });
    // Two slots busy, a third request deferred; cancelled when the clients leave.
    const streams = [0, 1, 2].map(() => stream(server.url + '/v1/completions', { body: long.replace('"x"', '"x","stream":true'), headers: json }));
    try {
      let load = await metrics();
      const deadline = Date.now() + 10_000;
      while ((load.running !== 2 || load.waiting !== 1) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        load = await metrics();
      }
      expect(load).toMatchObject({ server: 'llamacpp', running: 2, waiting: 1 });
    } finally {
      for (const s of streams) s.abort();
    }
  });
});
