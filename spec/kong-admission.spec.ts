// Admission through the REAL kong-js-pluginserver (testbed/kong-gateway plays Kong's side): a
// saturated pool holds a request at the gateway, holding no replica, until a slot frees; past
// admission.max_wait_s it is answered 429 with Retry-After and OpenAI's error shape; an
// unsaturated pool adds no wait. Assertions on what clients and backends see; the one duration
// bound (the deadline) has wide margins.
import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KONG_OUTFILE } from '../build/build.js';
import { startKongGateway } from '../testbed/kong-gateway/gateway';
import type { KongGateway } from '../testbed/kong-gateway/gateway';
import { startBackends } from './helpers/backends';
import type { Backends } from './helpers/backends';
import { request, waitFor } from './helpers/nginx-balancer';
import type { Reply } from './helpers/nginx-balancer';

const STATUS = '/llm-balancer/status';
let backends: Backends;
const gateways: KongGateway[] = [];

beforeAll(async () => {
  if (!fs.existsSync(KONG_OUTFILE)) throw new Error(`${KONG_OUTFILE} is missing: run \`node build/build.js\` (npm test's pretest does)`);
  backends = await startBackends(2);
});
afterEach(async () => {
  for (const b of backends.list) b.release();
  for (const g of gateways.splice(0)) await g.stop();
  backends.resetAll();
});
afterAll(async () => {
  await backends?.close();
});

/** Two replicas, each saturated by one request in flight (admission by concurrency). */
async function gateway(admission: Record<string, unknown> = {}): Promise<KongGateway> {
  const g = await startKongGateway({
    config: {
      strategy: 'least-connections',
      replicas: backends.list.map((b) => ({ address: b.address })),
      admission: { enabled: true, saturation: 'concurrency', max_concurrency: 1, ...admission },
      kong: { status_path: STATUS },
    },
  });
  gateways.push(g);
  return g;
}

const chat = (g: KongGateway): Promise<Reply> => request(g.url + '/v1/chat/completions', { method: 'POST', body: '{}' });
const requestsSeen = () => backends.list.reduce((sum, b) => sum + b.requests, 0);

async function admissionStatus(g: KongGateway): Promise<{ waiting: Array<{ band: number; waiting: number }>; admittedAfterWait: number; rejected: Record<string, number> }> {
  const reply = await request(g.url + STATUS);
  expect(reply.status).toBe(200);
  return (JSON.parse(reply.body) as { admission: never }).admission;
}

/** Holds one request on each backend: the pool is saturated. */
async function saturate(g: KongGateway): Promise<Array<Promise<Reply>>> {
  for (const b of backends.list) b.behave({ mode: 'hold' });
  const held = [chat(g), chat(g)];
  await waitFor('one request held on each replica', () => backends.list.every((b) => b.open === 1));
  return held;
}

describe('admission on Kong (real plugin server)', () => {
  it('an unsaturated pool adds no wait: every request goes straight to a replica', async () => {
    const g = await gateway();
    for (let i = 0; i < 6; i++) expect((await chat(g)).status).toBe(200);
    expect(requestsSeen()).toBe(6);
    expect(await admissionStatus(g)).toMatchObject({ waiting: [], admittedAfterWait: 0, rejected: { shed: 0, full: 0, timeout: 0, displaced: 0 } });
  });

  it('a saturated pool holds the request, holding no replica, until a slot frees; then it is sent there', async () => {
    const g = await gateway({ max_wait_s: 30 });
    const held = await saturate(g);
    const waiting = chat(g);
    await waitFor('the request waiting at the gateway', async () => (await admissionStatus(g)).waiting.length === 1);
    expect((await admissionStatus(g)).waiting).toEqual([{ band: 0, waiting: 1 }]);
    // Still only the two held requests reached a replica.
    expect(requestsSeen()).toBe(2);
    backends.list[1].behave({ mode: 'json' });
    backends.list[1].release();
    const reply = await waiting;
    expect(reply.status).toBe(200);
    expect((JSON.parse(reply.body) as { backend: string }).backend).toBe('b1');
    expect(await admissionStatus(g)).toMatchObject({ waiting: [], admittedAfterWait: 1 });
    backends.list[0].behave({ mode: 'json' });
    backends.list[0].release();
    for (const r of await Promise.all(held)) expect(r.status).toBe(200);
    expect(g.errors()).toEqual([]);
  });

  it('past max_wait_s the request gets 429 with Retry-After and an OpenAI error, and never reaches a replica', async () => {
    const g = await gateway({ max_wait_s: 0.5 });
    const held = await saturate(g);
    const started = Date.now();
    const reply = await chat(g);
    const waited = Date.now() - started;
    expect(reply.status).toBe(429);
    expect(reply.headers['retry-after']).toBe('1');
    expect(reply.headers['content-type']).toContain('application/json');
    expect(JSON.parse(reply.body)).toMatchObject({ error: { type: 'rate_limit_error', code: 'queue_timeout' } });
    // The deadline is the bound: not answered before it, nor long after (wide margin for a busy machine).
    expect(waited).toBeGreaterThanOrEqual(450);
    expect(waited).toBeLessThan(5000);
    expect(requestsSeen()).toBe(2);
    expect((await admissionStatus(g)).rejected.timeout).toBe(1);
    // Prometheus carries the same counts.
    const prom = await request(g.url + STATUS + '?format=prometheus');
    expect(prom.body).toContain('llm_balancer_admission_rejected_total{reason="timeout"} 1');
    expect(prom.body).toContain('llm_balancer_admission_waiting_total_now 0');
    for (const b of backends.list) {
      b.behave({ mode: 'json' });
      b.release();
    }
    for (const r of await Promise.all(held)) expect(r.status).toBe(200);
  });

  it('a sheddable band is refused at once while saturated (admission.priority below 0), with reject_status 503 when configured', async () => {
    const g = await gateway({ priority: -1, reject_status: 503 });
    const held = await saturate(g);
    const reply = await chat(g);
    expect(reply.status).toBe(503);
    expect(JSON.parse(reply.body)).toMatchObject({ error: { type: 'service_unavailable', code: 'shed' } });
    expect(reply.headers['retry-after']).toBeDefined();
    for (const b of backends.list) {
      b.behave({ mode: 'json' });
      b.release();
    }
    for (const r of await Promise.all(held)) expect(r.status).toBe(200);
  });
});
