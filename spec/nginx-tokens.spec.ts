// least-tokens through real nginx (2 worker processes, the generator's configuration, the built
// njs bundle) to real HTTP backends: the body-reading location (js_content route + internal
// redirect) estimates each request's tokens from its OpenAI body, counts them on the replica an
// attempt starts on and releases them when it ends. Assertions are on counts, states and bodies,
// never on durations.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBackends } from './helpers/backends';
import type { Backend, Backends } from './helpers/backends';
import { createFleet, replicasOf } from './helpers/fleet';
import { drained, readStatus, request, stream, waitFor } from './helpers/nginx-balancer';
import type { Balancer, Reply, RequestOptions, StatusRow } from './helpers/nginx-balancer';

let backends: Backends;
const fleet = createFleet('tokens');

beforeAll(async () => {
  backends = await startBackends(2);
});
afterEach(async () => {
  for (const b of backends.list) b.release();
  expect(await fleet.stopAll()).toEqual([]);
  for (const b of backends.list) await b.restart();
  backends.resetAll();
});
afterAll(async () => {
  await backends?.close();
});

const replicas = replicasOf;
const balancer = (config: Record<string, unknown>) => fleet.start(config);

const URL_PATH = '/v1/chat/completions';

/** A chat body with one user message (and max_tokens when given). */
function chat(content: string, maxTokens?: number): string {
  const body: Record<string, unknown> = { model: 'm', messages: [{ role: 'user', content }] };
  if (maxTokens !== undefined) body.max_tokens = maxTokens;
  return JSON.stringify(body);
}

/** Backend name of a JSON answer. */
function servedBy(reply: Reply): string {
  expect(reply.status, reply.body).toBe(200);
  return (JSON.parse(reply.body) as { backend: string }).backend;
}

function byId(rows: StatusRow[], id: string): StatusRow {
  const found = rows.find((r) => r.id === id);
  if (!found) throw new Error(`no status row ${id}`);
  return found;
}

/**
 * Sends a request and resolves once a backend received it (held or answered), with the backend
 * that did; `reply` settles when it completes. (Wrapped: an async function returning the promise
 * itself would wait for it.)
 */
async function holdOne(lb: Balancer, options: RequestOptions = {}): Promise<{ reply: Promise<Reply>; backend: Backend }> {
  const before = backends.counts();
  const reply = request(lb.nginx.url(URL_PATH), options);
  await waitFor('the request to reach a backend', () => backends.list.some((b, i) => b.requests > before[i]));
  const reached = backends.list.filter((b, i) => b.requests > before[i]);
  expect(reached.length).toBe(1);
  return { reply, backend: reached[0] };
}

/** tokens_in_flight and in_flight of every replica, in list order, as "tokens/in_flight" strings. */
async function load(lb: Balancer): Promise<string[]> {
  return (await readStatus(lb)).replicas.map((r) => `${r.tokens_in_flight}/${r.in_flight}`);
}

/** Waits until every replica has 0 tokens and 0 requests in flight (the log phase runs after the last byte). */
async function tokensDrained(lb: Balancer): Promise<void> {
  let last: string[] = [];
  await waitFor('tokens and in-flight counts back to 0', async () => {
    last = await load(lb);
    return last.every((s) => s === '0/0');
  }).catch((e: Error) => {
    throw new Error(`${e.message} (still ${last.join(', ')})`);
  });
  await drained(lb);
}

describe('least-tokens', () => {
  it('a long prompt counts as many tokens, and the next short requests go around it where least-connections would not', async () => {
    for (const b of backends.list) b.behave({ mode: 'hold' });
    const lb = await balancer({ strategy: 'least-tokens', replicas: replicas(backends.list) });
    // 16,000 characters → 4,000 tokens + 4 for the message, plus max_tokens 100.
    const long = chat('x'.repeat(16_000), 100);
    const first = await holdOne(lb, { body: long, headers: { 'content-type': 'application/json' } });
    const x = first.backend;
    const y = backends.list.find((b) => b !== x) as Backend;
    const pending = [first.reply];
    const short = async () => {
      const held = await holdOne(lb, { body: chat('hi'), headers: { 'content-type': 'application/json' } });
      pending.push(held.reply);
      return held.backend.name;
    };
    // 'hi' → 1 token + 4, no max_tokens → 256 expected output: 261 each. With least-connections
    // the second would tie 1–1 with the long one; by tokens Y stays cheaper.
    const landed: string[] = [];
    for (let i = 0; i < 3; i++) landed.push(await short());
    expect(landed).toEqual([y.name, y.name, y.name]);
    expect([x.open, y.open]).toEqual([1, 3]);
    const rows = (await readStatus(lb)).replicas;
    expect(byId(rows, x.name).tokens_in_flight).toBe(4_104);
    expect(byId(rows, y.name).tokens_in_flight).toBe(3 * 261);
    expect([byId(rows, x.name).in_flight, byId(rows, y.name).in_flight]).toEqual([1, 3]);
    // The backend received the long body whole.
    expect(x.bodies).toEqual([long]);
    // Y stays cheaper up to 16 short requests (16 × 261 = 4,176 and 4,176 < 4,104 + 261): a
    // count-based or coin-flip choice would have sent some of them to X long before. The 17th
    // costs 4,176 + 261 = 4,437 on Y against 4,365 on X: it goes to X.
    for (let i = 3; i < 16; i++) landed.push(await short());
    expect(landed).toEqual(Array(16).fill(y.name));
    expect(await short()).toBe(x.name);
    const after = (await readStatus(lb)).replicas;
    expect([byId(after, x.name).tokens_in_flight, byId(after, y.name).tokens_in_flight]).toEqual([4_104 + 261, 16 * 261]);
    expect([byId(after, x.name).in_flight, byId(after, y.name).in_flight]).toEqual([2, 16]);

    for (const b of backends.list) b.release();
    const replies = await Promise.all(pending);
    expect(replies.map(servedBy)).toEqual([x.name, ...Array(16).fill(y.name), x.name]);
    await tokensDrained(lb);
  });

  it('a body that is not an OpenAI request counts the default, and is still proxied unchanged', async () => {
    const b0 = backends.list[0];
    b0.behave({ mode: 'hold' });
    const lb = await balancer({ strategy: 'least-tokens', replicas: replicas([b0]) });
    const notJson = 'not json \u00e9\u2713 {';
    const noPrompt = JSON.stringify({ model: 'm', temperature: 0, input: 'embeddings-style' });
    const pending: Promise<Reply>[] = [];
    const tokens: number[] = [];
    for (const options of [{ body: notJson }, { body: noPrompt, headers: { 'content-type': 'application/json' } }, { method: 'GET' }] as RequestOptions[]) {
      pending.push((await holdOne(lb, options)).reply);
      const row = (await readStatus(lb)).replicas[0];
      expect(row.in_flight).toBe(pending.length);
      tokens.push(row.tokens_in_flight);
    }
    expect(tokens).toEqual([512, 1024, 1536]);
    // Counted, never refused: the status page says how many went without an OpenAI body.
    expect((await readStatus(lb)).requests_without_llm_body).toBe(3);
    b0.release();
    const replies = await Promise.all(pending);
    expect(replies.map(servedBy)).toEqual(['b0', 'b0', 'b0']);
    expect(replies.map((r) => (JSON.parse(r.body) as { method: string }).method)).toEqual(['POST', 'POST', 'GET']);
    // The exact bytes, whatever the estimate made of them.
    expect(b0.bodies).toEqual([notJson, noPrompt, '']);
    expect(replies.map((r) => (JSON.parse(r.body) as { bodyBytes: number }).bodyBytes)).toEqual([notJson.length, noPrompt.length, 0]);
    await tokensDrained(lb);
  });

  it('streams SSE through the body-reading location, and releases the prompt tokens at the first byte', async () => {
    const b0 = backends.list[0];
    b0.behave({ mode: 'sse', chunks: 3, chunkDelayMs: 1, pauseAfterChunks: 1 });
    const lb = await balancer({ strategy: 'least-tokens', replicas: replicas([b0]) });
    // 'count to three' (14 chars → 4 tokens) + 4, max_tokens 50: 58.
    const s = stream(lb.nginx.url(URL_PATH), {
      body: JSON.stringify({ model: 'm', stream: true, max_tokens: 50, messages: [{ role: 'user', content: 'count to three' }] }),
      headers: { 'content-type': 'application/json' },
    });
    await waitFor('the first SSE event before the backend sends the rest', () => s.received().includes('"chunk":0'));
    expect(s.received()).not.toContain('"chunk":1');
    expect(s.status()).toBe(200);
    // The first streamed byte means the prompt's prefill is done: its 8 tokens stop counting,
    // the 50 of output count until the end.
    expect(await load(lb)).toEqual(['50/1']);
    b0.release();
    const all = await s.done;
    expect(all).toContain('"chunk":2');
    expect(all).toContain('[DONE]');
    await tokensDrained(lb);
  });

  it('failover counts the tokens on the replica actually tried, once', async () => {
    const [dead, live] = backends.list;
    // Weight 2 makes the dead replica the cheaper first pick for every request below
    // ((0 + t) / 2 < (held + t) / 1), so each one fails over; 1000 consecutive (connect)
    // failures never eject it.
    const lb = await balancer({
      strategy: 'least-tokens',
      retries: 1,
      replicas: replicas([dead, live], [2, 1]),
      passive_health: { consecutive_failures: 1000, consecutive_connect_errors: 1000 },
    });
    await dead.kill();
    live.behave({ mode: 'hold' });
    // 4 + ceil(n / 4) + max_tokens: 4 + 100 + 10, 4 + 200 + 20, 4 + 1 + 256.
    const bodies = [chat('a'.repeat(400), 10), chat('b'.repeat(800), 20), chat('c')];
    const expected = [114, 224, 261];
    const pending: Promise<Reply>[] = [];
    for (let i = 0; i < bodies.length; i++) {
      const held = await holdOne(lb, { body: bodies[i], headers: { 'content-type': 'application/json' } });
      expect(held.backend.name).toBe(live.name);
      pending.push(held.reply);
      const rows = (await readStatus(lb)).replicas;
      // The failed attempt on the dead replica was ended at once, its tokens handed back.
      expect([byId(rows, dead.name).tokens_in_flight, byId(rows, dead.name).in_flight]).toEqual([0, 0]);
      expect(byId(rows, dead.name).picks).toBe(i + 1);
      expect(byId(rows, dead.name).failures).toBe(i + 1);
      // The live replica carries each request's tokens exactly once.
      expect(byId(rows, live.name).tokens_in_flight).toBe(expected.slice(0, i + 1).reduce((s, t) => s + t, 0));
      expect(byId(rows, live.name).in_flight).toBe(i + 1);
    }
    expect(byId((await readStatus(lb)).replicas, dead.name).state).not.toBe('ejected');
    live.release();
    const replies = await Promise.all(pending);
    expect(replies.map(servedBy)).toEqual([live.name, live.name, live.name]);
    expect(live.bodies).toEqual(bodies);
    await tokensDrained(lb);
    const rows = (await readStatus(lb)).replicas;
    expect(rows.map((r) => r.picks)).toEqual([3, 3]);
  });
});
