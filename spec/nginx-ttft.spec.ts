// Time to first token through real nginx: with response_time.latency_metric ttft the generated
// config times the first response body byte (a js_body_filter), so a replica that sends its SSE
// headers at once but its first token late is seen as slow, and response-time routes by it.
// Assertions are on counts and on LOWER bounds of measured times that the backends enforce (a
// first byte cannot pass before the backend sends it), never on how fast anything ran.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBackends } from './helpers/backends';
import type { Backends } from './helpers/backends';
import { createFleet, replicasOf } from './helpers/fleet';
import { readStatus, request } from './helpers/nginx-balancer';
import type { Balancer } from './helpers/nginx-balancer';

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

async function streamOnce(lb: Balancer): Promise<{ backend: string; body: string }> {
  const reply = await request(lb.nginx.url('/v1/chat/completions'), { method: 'POST', body: '{"stream":true}', headers: { 'content-type': 'application/json' } });
  expect(reply.status, reply.body).toBe(200);
  const match = /"backend":"(b\d)"/.exec(reply.body);
  return { backend: match ? match[1] : '?', body: reply.body };
}

describe('time to first token (latency_metric ttft)', () => {
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
    const rows = (await readStatus(lb)).replicas;
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
    const row = (await readStatus(lb)).replicas[0];
    // The headers came before the backend's 400 ms pause, the end of the stream after it: the
    // "first byte" estimate (header time here) sits a whole pause below the end-to-end one.
    expect(row.latency_ewma_ms as number).toBeGreaterThanOrEqual(FIRST_TOKEN_DELAY_MS - 50);
    expect(row.ttft_ewma_ms as number).toBeLessThanOrEqual((row.latency_ewma_ms as number) - (FIRST_TOKEN_DELAY_MS - 50));
  });
});
