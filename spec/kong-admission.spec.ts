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
    // Every waiting access phase holds its RPC connection, as each Kong request holds its own.
    connections: 16,
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

/** Holds one request on each backend through `g` at `path` (the pool is then saturated). */
async function saturateAt(g: KongGateway, path: string): Promise<Array<Promise<Reply>>> {
  for (const b of backends.list) b.behave({ mode: 'hold' });
  const held = [request(g.url + path, { method: 'POST', body: '{}' }), request(g.url + path, { method: 'POST', body: '{}' })];
  await waitFor('one request held on each replica', () => backends.list.every((b) => b.open === 1));
  return held;
}

/** Frees one slot at a time (b1 answers its held request, then holds the next) and lists who got each. */
async function drainInOrder(waiting: Array<{ name: string; reply: Promise<Reply> }>): Promise<string[]> {
  const order: string[] = [];
  const b1 = backends.list[1];
  const done = new Set<string>();
  for (const w of waiting) void w.reply.then(() => done.add(w.name));
  for (let i = 0; i < waiting.length; i++) {
    const before = b1.requests;
    b1.release();
    await waitFor('the next waiting request at b1', () => b1.requests > before);
    // The request that reached b1: the one whose body names it.
    const body = b1.bodies[b1.bodies.length - 1];
    order.push((JSON.parse(body) as { who: string }).who);
  }
  b1.behave({ mode: 'json' });
  b1.release();
  await Promise.all(waiting.map((w) => w.reply));
  return order;
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

  it("strict priority by the consumer, then the route Kong matched; turns across the consumers Kong verified within a band", async () => {
    const g = await startKongGateway({
      config: {
        strategy: 'least-connections',
        replicas: backends.list.map((b) => ({ address: b.address })),
        admission: { enabled: true, saturation: 'concurrency', max_concurrency: 1, max_wait_s: 30, route_priorities: [{ route: 'premium-chat', priority: 5 }], consumer_priorities: [{ consumer: 'vip', priority: 7 }] },
        kong: { status_path: STATUS },
      },
      routes: [{ prefix: '/premium', name: 'premium-chat' }],
      consumerHeader: 'x-consumer',
      // Every waiting access phase holds its RPC connection, as each Kong request holds its own.
      connections: 32,
    });
    gateways.push(g);
    const held = await saturateAt(g, '/v1/chat/completions');
    const send = (path: string, consumer: string, who: string) => request(g.url + path, { method: 'POST', body: JSON.stringify({ who }), headers: { 'x-consumer': consumer, 'content-type': 'application/json' } });
    const waiting: Array<{ name: string; reply: Promise<Reply> }> = [];
    const enqueue = async (path: string, consumer: string, who: string) => {
      waiting.push({ name: who, reply: send(path, consumer, who) });
      await waitFor(who + ' waiting', async () => (await admissionStatus(g)).waiting.reduce((n, w) => n + w.waiting, 0) === waiting.length);
    };
    // Arrival order: three from a noisy consumer, one from a quiet one, then one on the premium route.
    await enqueue('/v1/chat/completions', 'noisy', 'noisy-1');
    await enqueue('/v1/chat/completions', 'noisy', 'noisy-2');
    await enqueue('/v1/chat/completions', 'noisy', 'noisy-3');
    await enqueue('/v1/chat/completions', 'quiet', 'quiet-1');
    await enqueue('/premium/v1/chat/completions', 'noisy', 'premium-1');
    // A listed consumer's band applies on any route.
    await enqueue('/v1/chat/completions', 'vip', 'vip-1');
    expect((await admissionStatus(g)).waiting).toEqual([
      { band: 7, waiting: 1 },
      { band: 5, waiting: 1 },
      { band: 0, waiting: 4 },
    ]);
    // b1 takes one at a time: it answers its held request, then holds the next one dispatched to it.
    const order = await drainInOrder(waiting);
    expect(order).toEqual(['vip-1', 'premium-1', 'noisy-1', 'quiet-1', 'noisy-2', 'noisy-3']);
    for (const r of waiting) expect((await r.reply).status).toBe(200);
    backends.list[0].behave({ mode: 'json' });
    backends.list[0].release();
    for (const r of await Promise.all(held)) expect(r.status).toBe(200);
    expect(g.errors()).toEqual([]);
  });
});

