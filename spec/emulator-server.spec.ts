// The emulated replicas over real HTTP on 127.0.0.1 free ports, at timeScale 0.05 (20x faster than
// a GPU) so the file stays quick. No timing assertions: durations are read from the model's own
// accounting (stats().lastStepMs), and "no answer" is checked against a bounded client timeout.
import http from 'node:http';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NO_FAULTS, PROFILES, countChatTokens, countTextTokens, startEmulatedReplicas } from '../testbed/emulator/index';
import type { EmulatedReplica, EmulatedReplicas } from '../testbed/emulator/index';
import { createStrictSseParser, parseStrictSse } from './helpers/sse';

const TIME_SCALE = 0.05;
/** Long enough for a loaded 2-core machine to answer a request that should be answered at once. */
const ANSWER_TIMEOUT_MS = 10_000;
/** How long a hung replica is given to (wrongly) answer. */
const HANG_PROBE_MS = 300;

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

/** One request on a fresh connection (no pooling: a crash test must not reuse a dead socket). */
function request(port: number, method: string, path: string, body?: unknown, timeoutMs = ANSWER_TIMEOUT_MS): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port, method, path, agent: false, headers: payload === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      res.on('error', reject);
    });
    const timer = setTimeout(() => req.destroy(new Error('client timeout')), timeoutMs);
    req.on('close', () => clearTimeout(timer));
    req.on('error', reject);
    req.end(payload);
  });
}

const post = (port: number, path: string, body: unknown, timeoutMs?: number) => request(port, 'POST', path, body, timeoutMs);

interface OpenStream {
  status: number;
  /** Resolves with the first JSON event. */
  firstEvent: Promise<unknown>;
  /** Resolves when the response ends or the connection closes: whether [DONE] came, and the events. */
  ended: Promise<{ done: boolean; events: unknown[] }>;
  abort(): void;
}

/** A streaming request whose events are parsed strictly as they arrive. */
function openStream(port: number, body: unknown): Promise<OpenStream> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', agent: false }, (res) => {
      const parser = createStrictSseParser();
      const events: unknown[] = [];
      let done = false;
      let first: (value: unknown) => void = () => undefined;
      const firstEvent = new Promise<unknown>((r) => (first = r));
      const ended = new Promise<{ done: boolean; events: unknown[] }>((r) => {
        res.on('close', () => r({ done, events }));
      });
      res.setEncoding('utf8');
      res.on('data', (text: string) => {
        for (const event of parser.push(text)) {
          if (event.kind === 'done') done = true;
          else {
            events.push(event.json);
            if (events.length === 1) first(event.json);
          }
        }
      });
      res.on('error', () => undefined);
      resolve({ status: res.statusCode ?? 0, firstEvent, ended, abort: () => req.destroy() });
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** Polls a condition on the emulator's own state (never on elapsed time) until it holds. */
async function eventually(condition: () => boolean, what: string): Promise<void> {
  for (let attempt = 0; attempt < 1000; attempt++) {
    if (condition()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`never became true: ${what}`);
}

/** Prometheus text format 0.0.4, strictly: every sample belongs to a family declared by # TYPE before it. */
function parsePrometheus(text: string): Map<string, Array<{ labels: Record<string, string>; value: number }>> {
  const types = new Map<string, string>();
  const samples = new Map<string, Array<{ labels: Record<string, string>; value: number }>>();
  expect(text.endsWith('\n')).toBe(true);
  for (const line of text.slice(0, -1).split('\n')) {
    const comment = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (comment !== null) {
      if (comment[1] === 'TYPE') {
        expect(['counter', 'gauge', 'histogram']).toContain(comment[3]);
        types.set(comment[2], comment[3]);
      }
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\} (\S+)$/.exec(line);
    if (sample === null) throw new Error(`not a Prometheus line: ${line}`);
    const name = sample[1];
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    if (!types.has(family)) throw new Error(`sample ${name} before its # TYPE`);
    const labels: Record<string, string> = {};
    for (const match of sample[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[match[1]] = match[2];
    const value = Number(sample[3]);
    expect(Number.isNaN(value)).toBe(false);
    const list = samples.get(name) ?? [];
    list.push({ labels, value });
    samples.set(name, list);
  }
  return samples;
}

async function metric(port: number, name: string): Promise<number> {
  const reply = await request(port, 'GET', '/metrics');
  expect(reply.status).toBe(200);
  const samples = parsePrometheus(reply.text).get(name);
  if (samples === undefined || samples.length !== 1) throw new Error(`expected one ${name} sample`);
  return samples[0].value;
}

function refused(promise: Promise<unknown>): Promise<void> {
  return expect(promise).rejects.toMatchObject({ code: 'ECONNREFUSED' });
}

const CHAT = { messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Explain continuous batching.' }] };
const CHAT_PROMPT_TOKENS = countChatTokens(CHAT.messages);

let emulator: EmulatedReplicas;
let alpha: EmulatedReplica;

beforeAll(async () => {
  emulator = await startEmulatedReplicas(
    [
      { name: 'alpha', profile: 'h100' },
      { name: 'beta', profile: 'a100' },
      { name: 'gamma', profile: 'l4' },
    ],
    { timeScale: TIME_SCALE, adminPort: 0 },
  );
  alpha = emulator.replicas[0];
});

afterAll(async () => {
  await emulator.close();
});

afterEach(async () => {
  for (const replica of emulator.replicas) await replica.setFaults(NO_FAULTS);
  await eventually(() => emulator.replicas.every((replica) => replica.stats().running === 0 && replica.stats().waiting === 0), 'replicas idle');
});

type Chunk = {
  id: string;
  object: string;
  model: string;
  system_fingerprint: string;
  choices: Array<{ index: number; delta?: { role?: string; content?: string }; text?: string; finish_reason: string | null }>;
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
};

describe('streaming', () => {
  it.each([
    { path: '/v1/chat/completions', body: Object.assign({ max_tokens: 12 }, CHAT), object: 'chat.completion.chunk', promptTokens: CHAT_PROMPT_TOKENS, finish: 'length', maxTokens: 12 },
    { path: '/v1/chat/completions', body: Object.assign({ max_completion_tokens: 7 }, CHAT), object: 'chat.completion.chunk', promptTokens: CHAT_PROMPT_TOKENS, finish: 'length', maxTokens: 7 },
    { path: '/v1/chat/completions', body: CHAT, object: 'chat.completion.chunk', promptTokens: CHAT_PROMPT_TOKENS, finish: 'stop', maxTokens: null },
    { path: '/v1/completions', body: { prompt: 'Once upon a time', max_tokens: 9 }, object: 'text_completion', promptTokens: countTextTokens('Once upon a time'), finish: 'length', maxTokens: 9 },
  ])('$path ($finish): strict SSE, one content chunk per token, usage last, then [DONE]', async ({ path, body, object, promptTokens, finish, maxTokens }) => {
    const reply = await post(alpha.port, path, Object.assign({ stream: true, stream_options: { include_usage: true } }, body));
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('text/event-stream');
    expect(reply.headers['x-llm-replica']).toBe('alpha');
    const chunks = parseStrictSse(reply.text) as Chunk[];

    const usageChunk = chunks[chunks.length - 1];
    expect(usageChunk.choices).toEqual([]);
    const usage = usageChunk.usage as NonNullable<Chunk['usage']>;
    expect(usage.prompt_tokens).toBe(promptTokens);
    expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);

    const choiceChunks = chunks.slice(0, -1);
    const finalChunk = choiceChunks[choiceChunks.length - 1];
    expect(finalChunk.choices[0].finish_reason).toBe(finish);
    const contents: string[] = [];
    for (const chunk of chunks) {
      expect(chunk).toMatchObject({ id: chunks[0].id, object, model: alpha.modelName, system_fingerprint: 'alpha' });
      if (chunk === usageChunk) continue;
      expect(chunk.usage).toBeNull(); // include_usage: null on every other chunk, as OpenAI does
      expect(chunk.choices).toHaveLength(1);
      expect(chunk.choices[0].index).toBe(0);
      if (chunk === finalChunk) {
        // The finish chunk carries no token: an empty delta (chat) or empty text (completions).
        if (object === 'text_completion') expect(chunk.choices[0].text).toBe('');
        else expect(chunk.choices[0].delta).toEqual({});
        continue;
      }
      expect(chunk.choices[0].finish_reason).toBeNull();
      const text = object === 'text_completion' ? chunk.choices[0].text : chunk.choices[0].delta?.content;
      expect(typeof text).toBe('string');
      if (text !== '') contents.push(text as string);
    }
    if (object === 'chat.completion.chunk') expect(choiceChunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    expect(contents).toHaveLength(usage.completion_tokens);
    if (maxTokens !== null) expect(usage.completion_tokens).toBe(maxTokens);
    expect(contents.join('').trim().length).toBeGreaterThan(0);
  });

  it('without include_usage there is no usage chunk and no usage field', async () => {
    const reply = await post(alpha.port, '/v1/chat/completions', Object.assign({ stream: true, max_tokens: 3 }, CHAT));
    const chunks = parseStrictSse(reply.text) as Chunk[];
    expect(chunks).toHaveLength(1 + 3 + 1); // role, 3 tokens, finish
    for (const chunk of chunks) expect(chunk).not.toHaveProperty('usage');
  });
});

describe('non-streaming', () => {
  it.each([
    { path: '/v1/chat/completions', body: Object.assign({ max_tokens: 6 }, CHAT), object: 'chat.completion', promptTokens: CHAT_PROMPT_TOKENS },
    { path: '/v1/completions', body: { prompt: 'Once upon a time', max_tokens: 6 }, object: 'text_completion', promptTokens: countTextTokens('Once upon a time') },
    { path: '/v1/completions', body: { prompt: [[1, 2, 3, 4, 5]], max_tokens: 6 }, object: 'text_completion', promptTokens: 5 },
  ])('$path answers one JSON body with usage ($promptTokens prompt tokens)', async ({ path, body, object, promptTokens }) => {
    const reply = await post(alpha.port, path, body);
    expect(reply.status).toBe(200);
    expect(reply.headers['x-llm-replica']).toBe('alpha');
    const json = JSON.parse(reply.text);
    expect(json).toMatchObject({ object, model: alpha.modelName, system_fingerprint: 'alpha' });
    expect(json.usage).toEqual({ prompt_tokens: promptTokens, completion_tokens: 6, total_tokens: promptTokens + 6 });
    expect(json.choices).toHaveLength(1);
    expect(json.choices[0].finish_reason).toBe('length');
    const text: string = object === 'chat.completion' ? json.choices[0].message.content : json.choices[0].text;
    if (object === 'chat.completion') expect(json.choices[0].message.role).toBe('assistant');
    expect(text.split(' ')).toHaveLength(6);
  });

  it.each([
    { name: 'a body that is not JSON', path: '/v1/chat/completions', body: '{', status: 400, code: 'invalid_json' },
    { name: 'no messages', path: '/v1/chat/completions', body: { messages: [] }, status: 400, code: 'invalid_value' },
    { name: 'max_tokens 0', path: '/v1/chat/completions', body: Object.assign({ max_tokens: 0 }, CHAT), status: 400, code: 'invalid_value' },
    { name: 'no prompt', path: '/v1/completions', body: {}, status: 400, code: 'invalid_value' },
    { name: 'more tokens than the KV cache', path: '/v1/completions', body: { prompt: 'x', max_tokens: PROFILES.h100.kvCacheTokens }, status: 400, code: 'context_length_exceeded' },
    { name: 'an unknown path', path: '/v1/embeddings', body: {}, status: 404, code: 'not_found' },
  ])('$name: $status with an OpenAI-style error', async ({ path, body, status, code }) => {
    const reply = await post(alpha.port, path, body);
    expect(reply.status).toBe(status);
    expect(reply.headers['x-llm-replica']).toBe('alpha');
    expect(JSON.parse(reply.text)).toMatchObject({ error: { code, message: expect.any(String), type: expect.any(String) } });
  });

  it('replicas with the same seed give the same answers to the same requests; another seed does not', async () => {
    const twins = await startEmulatedReplicas(
      [
        { name: 'twin-a', profile: 'h100', seed: 7 },
        { name: 'twin-b', profile: 'h100', seed: 7 },
        { name: 'other', profile: 'h100', seed: 8 },
      ],
      { timeScale: TIME_SCALE },
    );
    try {
      const answers = async (replica: EmulatedReplica) => {
        const out: string[] = [];
        for (const body of [CHAT, Object.assign({ max_tokens: 4 }, CHAT), { messages: [{ role: 'user', content: 'again' }] }]) {
          const json = JSON.parse((await post(replica.port, '/v1/chat/completions', body)).text);
          out.push(json.choices[0].message.content);
        }
        return out;
      };
      const [a, b, other] = await Promise.all(twins.replicas.map(answers));
      expect(a).toEqual(b);
      expect(a).not.toEqual(other);
    } finally {
      await twins.close();
    }
  });
});

describe('the true state for an oracle', () => {
  it('cachedPrefix reads what a request would find cached, per replica, without counting a query', async () => {
    const pair = await startEmulatedReplicas(
      [
        { name: 'warm', profile: 'h100', seed: 1 },
        { name: 'cold', profile: 'h100', seed: 1 },
      ],
      { timeScale: TIME_SCALE },
    );
    try {
      const [warm, cold] = pair.replicas;
      const body = { messages: [{ role: 'system', content: 'y'.repeat(400) }, { role: 'user', content: 'hello there' }], max_tokens: 2 };
      const promptTokens = countChatTokens(body.messages);
      expect(warm.cachedPrefix(body)).toEqual({ promptTokens, cachedTokens: 0 });
      expect((await post(warm.port, '/v1/chat/completions', body)).status).toBe(200);
      const queries = warm.stats().prefixQueries;
      const seen = warm.cachedPrefix(body);
      expect(seen?.cachedTokens).toBeGreaterThan(promptTokens - 32);
      expect(cold.cachedPrefix(body)?.cachedTokens).toBe(0);
      expect(warm.stats().prefixQueries).toBe(queries);
      expect(warm.cachedPrefix({ prompt: 'plain text completion' })).toMatchObject({ cachedTokens: 0 });
      expect(warm.cachedPrefix('not an object')).toBeNull();
    } finally {
      await pair.close();
    }
  });
});

describe('models, health, metrics', () => {
  it('GET /v1/models lists the served model', async () => {
    const reply = await request(alpha.port, 'GET', '/v1/models');
    expect(JSON.parse(reply.text)).toMatchObject({ object: 'list', data: [{ id: alpha.modelName, object: 'model' }] });
  });

  it.each([
    { unhealthy: false, status: 200, body: {} },
    { unhealthy: true, status: 503, body: { status: 'unhealthy' } },
  ])('GET /health with unhealthy=$unhealthy: $status', async ({ unhealthy, status, body }) => {
    await alpha.setFaults({ unhealthy });
    const reply = await request(alpha.port, 'GET', '/health');
    expect(reply.status).toBe(status);
    expect(reply.headers['x-llm-replica']).toBe('alpha');
    expect(JSON.parse(reply.text)).toEqual(body);
  });

  it('/metrics parses as Prometheus text and carries the true running, waiting and KV usage', async () => {
    const idle = parsePrometheus((await request(alpha.port, 'GET', '/metrics')).text);
    for (const name of [
      'vllm:num_requests_running',
      'vllm:num_requests_waiting',
      'vllm:kv_cache_usage_perc',
      'vllm:prefix_cache_queries_total',
      'vllm:prefix_cache_hits_total',
      'vllm:generation_tokens_total',
      'vllm:prompt_tokens_total',
    ]) {
      expect(idle.get(name)?.[0].labels.model_name).toBe(alpha.modelName);
    }
    expect(idle.get('vllm:num_requests_running')?.[0].value).toBe(0);

    // A long stream in flight: running 1, KV in use.
    const long = await openStream(alpha.port, Object.assign({ stream: true, max_tokens: 20_000 }, { messages: [{ role: 'user', content: 'long' }] }));
    await long.firstEvent;
    expect(await metric(alpha.port, 'vllm:num_requests_running')).toBe(1);
    expect(await metric(alpha.port, 'vllm:kv_cache_usage_perc')).toBeGreaterThan(0);

    // Hung: a second request queues behind the frozen step.
    await alpha.setFaults({ hang: true });
    const queued = post(alpha.port, '/v1/chat/completions', Object.assign({ max_tokens: 2 }, CHAT));
    await eventually(() => alpha.stats().waiting === 1, 'second request queued');
    expect(await metric(alpha.port, 'vllm:num_requests_waiting')).toBe(1);
    expect(await metric(alpha.port, 'vllm:num_requests_running')).toBe(1);

    // The client of the long stream leaves: it is aborted and its blocks freed; un-hung, the queued one answers.
    long.abort();
    await alpha.setFaults({ hang: false });
    expect((await queued).status).toBe(200);
    await eventually(() => alpha.stats().running === 0, 'aborted stream released');
    expect(await metric(alpha.port, 'vllm:kv_cache_usage_perc')).toBe(0);
    expect(alpha.stats().cancelled).toBeGreaterThanOrEqual(1);
  });

  it('prefix-cache counters count tokens: the same long prompt twice hits', async () => {
    const before = alpha.stats();
    const body = { messages: [{ role: 'user', content: 'y'.repeat(400) }], max_tokens: 1 }; // 104 tokens, 6 full blocks
    await post(alpha.port, '/v1/chat/completions', body);
    await post(alpha.port, '/v1/chat/completions', body);
    const after = alpha.stats();
    expect(after.prefixQueries - before.prefixQueries).toBe(2 * 104);
    expect(after.prefixHits - before.prefixHits).toBe(96);
  });
});

describe('faults', () => {
  it.each([
    { errorRate: 1, status: 500 },
    { errorRate: 0, status: 200 },
  ])('errorRate $errorRate: $status', async ({ errorRate, status }) => {
    const set = await post(alpha.port, '/admin/faults', { errorRate });
    expect(JSON.parse(set.text)).toMatchObject({ errorRate });
    expect(JSON.parse((await request(alpha.port, 'GET', '/admin/faults')).text)).toMatchObject({ errorRate });
    const reply = await post(alpha.port, '/v1/chat/completions', Object.assign({ max_tokens: 2 }, CHAT));
    expect(reply.status).toBe(status);
    if (status === 500) expect(JSON.parse(reply.text)).toMatchObject({ error: { type: 'internal_server_error', code: 'injected_fault' } });
  });

  it.each([
    { body: { errorRate: 2 }, message: 'between 0 and 1' },
    { body: { slowdown: 0 }, message: '> 0' },
    { body: { hang: 'yes' }, message: 'true or false' },
    { body: { explode: true }, message: 'unknown fault' },
  ])('POST /admin/faults rejects $body', async ({ body, message }) => {
    const reply = await post(alpha.port, '/admin/faults', body);
    expect(reply.status).toBe(400);
    expect(JSON.parse(reply.text).error.message).toContain(message);
    expect(alpha.faults()).toEqual(NO_FAULTS);
  });

  it('crash refuses connections and cuts open streams; un-crashed (admin port), it answers on the same port', async () => {
    const port = alpha.port;
    const open = await openStream(port, Object.assign({ stream: true, max_tokens: 20_000 }, CHAT));
    await open.firstEvent;
    expect((await post(port, '/admin/faults', { crash: true })).status).toBe(200);
    const cut = await open.ended;
    expect(cut.done).toBe(false);
    await eventually(() => alpha.faults().crash, 'crashed');
    await refused(request(port, 'GET', '/health'));
    await refused(post(port, '/v1/chat/completions', CHAT));

    const admin = emulator.admin as { port: number };
    const restart = await post(admin.port, '/admin/replicas/alpha/faults', { crash: false });
    expect(JSON.parse(restart.text)).toMatchObject({ crash: false });
    expect(alpha.port).toBe(port);
    const reply = await post(port, '/v1/chat/completions', Object.assign({ max_tokens: 2 }, CHAT));
    expect(reply.status).toBe(200);
    // A restarted replica starts empty: its engine counters are fresh.
    expect(alpha.stats()).toMatchObject({ completed: 1, restarts: 1 });
  });

  it('hang: no answer within a bounded client timeout; cleared, the held request and new ones answer', async () => {
    await alpha.setFaults({ hang: true });
    const held = post(alpha.port, '/v1/chat/completions', Object.assign({ max_tokens: 2 }, CHAT));
    await expect(post(alpha.port, '/v1/chat/completions', Object.assign({ max_tokens: 2 }, CHAT), HANG_PROBE_MS)).rejects.toThrow('client timeout');
    // The API server stays up while the engine is stuck.
    expect((await request(alpha.port, 'GET', '/health')).status).toBe(200);
    await alpha.setFaults({ hang: false });
    expect((await held).status).toBe(200);
    expect((await post(alpha.port, '/v1/chat/completions', Object.assign({ max_tokens: 2 }, CHAT))).status).toBe(200);
  });

  it.each([1, 3])('slowdown %i multiplies the model step duration (read from the model, not the wall clock)', async (slowdown) => {
    await alpha.setFaults({ slowdown });
    const reply = await post(alpha.port, '/v1/chat/completions', Object.assign({ max_tokens: 4 }, CHAT));
    expect(reply.status).toBe(200);
    // The last step of a lone request decodes one sequence: decodeStepMs x slowdown x timeScale.
    expect(alpha.stats()).toMatchObject({ lastStepBatch: 1, lastStepPrefills: 0, slowdown });
    expect(alpha.stats().lastStepMs).toBeCloseTo(PROFILES.h100.decodeStepMs * slowdown * TIME_SCALE, 9);
  });
});

describe('several replicas in one process', () => {
  it('each answers on its own port under its own name and profile', async () => {
    const ports = emulator.replicas.map((replica) => replica.port);
    expect(new Set(ports).size).toBe(3);
    expect(emulator.replicas.map((replica) => replica.profile.name)).toEqual(['h100', 'a100', 'l4']);
    for (const replica of emulator.replicas) {
      expect(replica.address).toBe(`127.0.0.1:${replica.port}`);
      const reply = await post(replica.port, '/v1/chat/completions', Object.assign({ max_tokens: 2 }, CHAT));
      expect(reply.headers['x-llm-replica']).toBe(replica.name);
      expect(JSON.parse(reply.text).system_fingerprint).toBe(replica.name);
      expect(replica.stats().lastStepMs).toBeCloseTo(replica.profile.decodeStepMs * TIME_SCALE, 9);
    }
    const listing = JSON.parse((await request((emulator.admin as { port: number }).port, 'GET', '/admin/replicas')).text);
    expect(listing.map((row: { name: string; profile: string }) => [row.name, row.profile])).toEqual([
      ['alpha', 'h100'],
      ['beta', 'a100'],
      ['gamma', 'l4'],
    ]);
  });

  it('close() frees the ports', async () => {
    const extra = await startEmulatedReplicas([{ name: 'one', profile: 'h100' }, { name: 'two', profile: 'l4' }], { timeScale: TIME_SCALE });
    const ports = extra.replicas.map((replica) => replica.port);
    expect((await request(ports[0], 'GET', '/health')).status).toBe(200);
    await extra.close();
    for (const port of ports) {
      await refused(request(port, 'GET', '/health'));
      const server = net.createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => resolve());
      });
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('the strict SSE parser (spec/helpers/sse.ts)', () => {
  const ok = 'data: {"a":1}\n\ndata: {"a":2}\n\ndata: [DONE]\n\n';

  it('accepts a well-formed stream, however it is split into chunks', () => {
    expect(parseStrictSse(ok)).toEqual([{ a: 1 }, { a: 2 }]);
    const parser = createStrictSseParser();
    const events = ok.split('').flatMap((character) => parser.push(character));
    parser.end();
    expect(events.map((event) => event.kind)).toEqual(['data', 'data', 'done']);
  });

  it.each([
    { name: 'no [DONE]', body: 'data: {"a":1}\n\n', error: 'without data: [DONE]' },
    { name: 'cut inside an event', body: 'data: {"a":1}\n\ndata: {"a"', error: 'inside an event' },
    { name: 'data after [DONE]', body: ok + 'data: {"a":3}\n\n', error: 'after [DONE]' },
    { name: 'a comment line', body: ': keepalive\n\n' + ok, error: "does not start with 'data: '" },
    { name: 'an event: field', body: 'event: x\ndata: {"a":1}\n\n' + ok, error: "does not start with 'data: '" },
    { name: 'a payload over two lines', body: 'data: {"a":\ndata: 1}\n\n' + ok, error: 'several lines' },
    { name: 'CRLF line ends', body: 'data: {"a":1}\r\n\r\ndata: [DONE]\r\n\r\n', error: 'stream ended' },
    { name: 'a payload that is not JSON', body: 'data: hello\n\n' + ok, error: 'not JSON' },
    { name: 'no space after data:', body: 'data:{"a":1}\n\n' + ok, error: "does not start with 'data: '" },
  ])('rejects $name', ({ body, error }) => {
    expect(() => parseStrictSse(body)).toThrow(error);
  });
});
