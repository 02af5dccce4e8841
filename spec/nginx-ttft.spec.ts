// Time to first token through real nginx: with response_time.latency_metric ttft the generated
// config times the first response body byte (a js_body_filter), so a replica that sends its SSE
// headers at once but its first token late is seen as slow, and response-time routes by it.
// Assertions are on counts and on LOWER bounds of measured times that the backends enforce (a
// first byte cannot pass before the backend sends it), never on how fast anything ran.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBackends } from './helpers/backends';
import type { Backends } from './helpers/backends';
import { createFleet, replicasOf } from './helpers/fleet';
import { drained, readStatus, request, stream, waitFor } from './helpers/nginx-balancer';
import type { Balancer } from './helpers/nginx-balancer';
import { nginxTarget } from './helpers/nginx-env';

let backends: Backends;
const fleet = createFleet('ttft');

beforeAll(async () => {
  backends = await startBackends(2);
});
afterEach(async () => {
  for (const b of backends.list) b.release();
  expect(await fleet.stopAll()).toEqual([]);
  backends.resetAll();
});
afterAll(async () => {
  await backends?.close();
});

const FIRST_TOKEN_DELAY_MS = 400;

/** The status once the log phase of every request has run (it runs just after the client's last byte). */
async function settledStatus(lb: Balancer): ReturnType<typeof readStatus> {
  await drained(lb);
  return readStatus(lb);
}

async function streamOnce(lb: Balancer): Promise<{ backend: string; body: string }> {
  const reply = await request(lb.nginx.url('/v1/chat/completions'), { method: 'POST', body: '{"stream":true}', headers: { 'content-type': 'application/json' } });
  expect(reply.status, reply.body).toBe(200);
  const match = /"backend":"(b\d)"/.exec(reply.body);
  return { backend: match ? match[1] : '?', body: reply.body };
}

describe('time to first token (latency_metric ttft)', () => {
  it('with the first-byte filter in the path, the first event reaches the client while the backend holds the rest', async () => {
    // The filter passes every chunk on flushed: QuickJS held unflushed chunks to the response's end.
    for (const b of backends.list) b.behave({ mode: 'sse', chunks: 3, chunkDelayMs: 1, pauseAfterChunks: 1 });
    const lb = await fleet.start({ strategy: 'least-connections', response_time: { latency_metric: 'ttft' }, replicas: replicasOf(backends.list) });
    const s = stream(lb.nginx.url('/v1/chat/completions'), { body: '{"stream":true}', headers: { 'content-type': 'application/json' } });
    await waitFor('the first SSE event before the backend sends the rest', () => s.received().includes('"chunk":0'));
    expect(s.received()).not.toContain('"chunk":1');
    for (const b of backends.list) b.release();
    const all = await s.done;
    expect(s.status()).toBe(200);
    expect(all).toContain('[DONE]');
  });

  it('two streams in a row each get their own first byte, also through one reused QuickJS context', async () => {
    // One worker, one replica, one request at a time: under QuickJS (js_context_reuse) both
    // requests run in the same context, whose module state the first one leaves behind.
    const qjs = nginxTarget().engine === 'qjs';
    const [b0] = backends.list;
    b0.behave({ mode: 'sse', chunks: 2, chunkDelayMs: 0 });
    const lb = await fleet.start({
      strategy: 'response-time',
      response_time: { latency_metric: 'ttft', half_life_s: 60 },
      replicas: replicasOf([b0]),
      nginx: qjs ? { worker_processes: 1, js_context_reuse: 4 } : { worker_processes: 1 },
    });
    await streamOnce(lb);
    const fast = (await settledStatus(lb)).replicas[0].ttft_ewma_ms;
    expect(fast).not.toBeNull();
    expect(fast as number).toBeLessThan(FIRST_TOKEN_DELAY_MS - 100);
    // The second stream's first token comes late: noted only if its first byte is its own (a
    // first-byte flag left set by the first request would skip it and keep the fast sample).
    b0.behave({ firstChunkDelayMs: FIRST_TOKEN_DELAY_MS });
    await streamOnce(lb);
    expect((await settledStatus(lb)).replicas[0].ttft_ewma_ms).toBeGreaterThanOrEqual(FIRST_TOKEN_DELAY_MS - 50);
  });

  it('measures the first streamed byte, not the headers, and routes away from the late first token', async () => {
    // b0 sends its headers at once and its first chunk 400 ms later; b1 streams at once.
    backends.list[0].behave({ mode: 'sse', chunks: 2, chunkDelayMs: 0, firstChunkDelayMs: FIRST_TOKEN_DELAY_MS });
    backends.list[1].behave({ mode: 'sse', chunks: 2, chunkDelayMs: 0 });
    const lb = await fleet.start({
      strategy: 'response-time',
      response_time: { latency_metric: 'ttft', half_life_s: 60 },
      replicas: replicasOf(backends.list),
    });
    // Until both are sampled (an unsampled replica is tried first), then a few more.
    for (let i = 0; i < 20 && backends.list.some((b) => b.requests === 0); i++) await streamOnce(lb);
    expect(backends.list.every((b) => b.requests > 0)).toBe(true);
    const rows = (await settledStatus(lb)).replicas;
    const b0 = rows.find((row) => row.address === backends.list[0].address);
    const b1 = rows.find((row) => row.address === backends.list[1].address);
    expect(b0?.ttft_ewma_ms).toBeGreaterThanOrEqual(FIRST_TOKEN_DELAY_MS - 50);
    expect(b1?.ttft_ewma_ms).not.toBeNull();
    expect(b1?.ttft_ewma_ms as number).toBeLessThan(b0?.ttft_ewma_ms as number);
    const next: string[] = [];
    for (let i = 0; i < 8; i++) next.push((await streamOnce(lb)).backend);
    expect(next).toEqual(Array(8).fill('b1'));
  });

  it('passes the stream through the body filter unchanged', async () => {
    backends.list[0].behave({ mode: 'sse', chunks: 5, chunkDelayMs: 5 });
    const lb = await fleet.start({ strategy: 'response-time', response_time: { latency_metric: 'ttft' }, replicas: replicasOf(backends.list.slice(0, 1)) });
    const { body } = await streamOnce(lb);
    const expected = [0, 1, 2, 3, 4].map((chunk) => `data: {"backend":"b0","chunk":${chunk}}\n\n`).join('') + 'data: [DONE]\n\n';
    expect(body).toBe(expected);
  });

  it('with the default e2e metric, time to headers is all the gateway sees: the late first token goes unnoticed', async () => {
    backends.list[0].behave({ mode: 'sse', chunks: 2, chunkDelayMs: 0, firstChunkDelayMs: FIRST_TOKEN_DELAY_MS });
    const lb = await fleet.start({ strategy: 'response-time', replicas: replicasOf(backends.list.slice(0, 1)) });
    await streamOnce(lb);
    const row = (await settledStatus(lb)).replicas[0];
    // The headers came before the backend's 400 ms pause, the end of the stream after it: the
    // "first byte" estimate (header time here) sits a whole pause below the end-to-end one.
    expect(row.latency_ewma_ms as number).toBeGreaterThanOrEqual(FIRST_TOKEN_DELAY_MS - 50);
    expect(row.ttft_ewma_ms as number).toBeLessThanOrEqual((row.latency_ewma_ms as number) - (FIRST_TOKEN_DELAY_MS - 50));
  });
});

async function jsonOnce(lb: Balancer): Promise<string> {
  const reply = await request(lb.nginx.url('/v1/chat/completions'), { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
  expect(reply.status, reply.body).toBe(200);
  return (JSON.parse(reply.body) as { backend: string }).backend;
}

// Time per output token: the body filter counts the streamed events (or reads usage) and the log
// phase divides the first-to-last-byte time by them. Lower bounds only, set by the backends' pauses.
describe('time per output token (latency_metric tpot)', () => {
  const DECODE_PAUSE_MS = 60;

  it('follows decoding speed, not the first token or the whole response', async () => {
    // b0: first token 400 ms late, then 6 tokens at once (fast decode, slow prefill);
    // b1: first token at once, then a token every 60 ms (slow decode). By ttft or e2e b1 wins; by tpot b0.
    backends.list[0].behave({ mode: 'sse', chunks: 6, chunkDelayMs: 0, firstChunkDelayMs: FIRST_TOKEN_DELAY_MS });
    backends.list[1].behave({ mode: 'sse', chunks: 6, chunkDelayMs: DECODE_PAUSE_MS });
    const lb = await fleet.start({ strategy: 'response-time', response_time: { latency_metric: 'tpot', half_life_s: 60 }, replicas: replicasOf(backends.list) });
    for (let i = 0; i < 20 && backends.list.some((b) => b.requests === 0); i++) await streamOnce(lb);
    expect(backends.list.every((b) => b.requests > 0)).toBe(true);
    const rows = (await settledStatus(lb)).replicas;
    const b0 = rows.find((row) => row.address === backends.list[0].address);
    const b1 = rows.find((row) => row.address === backends.list[1].address);
    // b1: 5 pauses between its 6 events → at least 60 ms per token after the first.
    expect(b1?.tpot_ewma_ms as number).toBeGreaterThanOrEqual(DECODE_PAUSE_MS - 10);
    expect(b0?.tpot_ewma_ms).not.toBeNull();
    expect(b0?.tpot_ewma_ms as number).toBeLessThan(b1?.tpot_ewma_ms as number);
    // The first byte is timed too (ttft column), and it says the opposite.
    expect(b0?.ttft_ewma_ms as number).toBeGreaterThanOrEqual(FIRST_TOKEN_DELAY_MS - 50);
    const next: string[] = [];
    for (let i = 0; i < 6; i++) next.push((await streamOnce(lb)).backend);
    expect(next).toEqual(Array(6).fill('b0'));
  });

  it('prefers the usage event over counting events', async () => {
    // 3 events 60 ms apart would be ≥ 60 ms per token; usage says 1,001 tokens: ≈ 0.12 ms each.
    backends.list[0].behave({ mode: 'sse', chunks: 3, chunkDelayMs: DECODE_PAUSE_MS, usageTokens: 1001 });
    const lb = await fleet.start({ strategy: 'response-time', response_time: { latency_metric: 'tpot' }, replicas: replicasOf(backends.list.slice(0, 1)) });
    const { body } = await streamOnce(lb);
    expect(body).toContain('"completion_tokens":1001');
    const row = (await settledStatus(lb)).replicas[0];
    expect(row.tpot_ewma_ms).not.toBeNull();
    expect(row.tpot_ewma_ms as number).toBeLessThan(DECODE_PAUSE_MS / 2);
  });

  it('a whole JSON answer: its time over its usage tokens (prefill included); without usage no sample', async () => {
    backends.list[0].behave({ mode: 'json', latencyMs: 300, usageTokens: 10 });
    const lb = await fleet.start({ strategy: 'response-time', response_time: { latency_metric: 'tpot' }, replicas: replicasOf(backends.list.slice(0, 1)) });
    expect(await jsonOnce(lb)).toBe('b0');
    const row = (await settledStatus(lb)).replicas[0];
    expect(row.tpot_ewma_ms as number).toBeGreaterThanOrEqual(30 - 5);
    backends.list[1].behave({ mode: 'json', latencyMs: 0 });
    const lb2 = await fleet.start({ strategy: 'response-time', response_time: { latency_metric: 'tpot' }, replicas: replicasOf(backends.list.slice(1, 2)) });
    expect(await jsonOnce(lb2)).toBe('b1');
    const row2 = (await settledStatus(lb2)).replicas[0];
    expect(row2.samples).toBe(1);
    expect(row2.tpot_ewma_ms).toBeNull();
  });

  it('passes the stream through the counting filter unchanged', async () => {
    backends.list[0].behave({ mode: 'sse', chunks: 5, chunkDelayMs: 5, usageTokens: 5 });
    const lb = await fleet.start({ strategy: 'response-time', response_time: { latency_metric: 'tpot' }, replicas: replicasOf(backends.list.slice(0, 1)) });
    const { body } = await streamOnce(lb);
    const expected =
      [0, 1, 2, 3, 4].map((chunk) => `data: {"backend":"b0","chunk":${chunk}}\n\n`).join('') +
      'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10}}\n\n' +
      'data: [DONE]\n\n';
    expect(body).toBe(expected);
  });
});
