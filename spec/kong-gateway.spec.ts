// The shootout's "Kong" (testbed/kong-gateway/): a streaming HTTP proxy in front of the REAL
// kong-js-pluginserver running dist/kong/llm-balancer.js, on live local backends. Assertions are on
// what clients and backends see, never on durations.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KONG_OUTFILE, REPO_ROOT } from '../build/build.js';
import { startKongGateway } from '../testbed/kong-gateway/gateway';
import type { KongGateway } from '../testbed/kong-gateway/gateway';
import { startJsonChild } from '../testbed/lib/json-child';
import { startBackends } from './helpers/backends';
import type { Backends } from './helpers/backends';
import { request, stream, waitFor } from './helpers/nginx-balancer';
import type { Reply } from './helpers/nginx-balancer';

let backends: Backends;
const gateways: KongGateway[] = [];

beforeAll(async () => {
  if (!fs.existsSync(KONG_OUTFILE)) throw new Error(`${KONG_OUTFILE} is missing: run \`node build/build.js\` (npm test's pretest does)`);
  backends = await startBackends(3);
});
afterEach(async () => {
  for (const b of backends.list) b.release();
  for (const g of gateways.splice(0)) await g.stop();
  backends.resetAll();
});
afterAll(async () => {
  await backends?.close();
});

async function gateway(config: Record<string, unknown>): Promise<KongGateway> {
  const g = await startKongGateway({ config });
  gateways.push(g);
  return g;
}

const replicas = (count = 3) => backends.list.slice(0, count).map((b) => ({ address: b.address }));

function servedBy(reply: Reply): string {
  expect(reply.status, reply.body).toBe(200);
  return (JSON.parse(reply.body) as { backend: string }).backend;
}

async function sequential(g: KongGateway, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(servedBy(await request(g.url + '/v1/chat/completions', { method: 'POST', body: '{}' })));
  return out;
}

describe('the Kong gateway of the shootout', () => {
  it('streams server-sent events chunk by chunk, with Kong\'s latency headers', async () => {
    const g = await gateway({ strategy: 'round-robin', replicas: replicas(1) });
    const b0 = backends.list[0];
    b0.behave({ mode: 'sse', chunks: 3, chunkDelayMs: 0, pauseAfterChunks: 1 });
    const s = stream(g.url + '/v1/chat/completions', { body: '{"stream":true}', headers: { 'content-type': 'application/json' } });
    // The backend holds the rest of the stream: the first event must already be at the client.
    await waitFor('the first event at the client', () => s.received().includes('data:'));
    expect(s.received()).not.toContain('[DONE]');
    b0.behave({ mode: 'json' });
    b0.release();
    expect(await s.done).toContain('data: [DONE]');
    expect(s.status()).toBe(200);
    const reply = await request(g.url + '/v1/chat/completions', { method: 'POST', body: '{}' });
    expect(reply.headers['x-kong-upstream-latency']).toMatch(/^\d+$/);
    expect(reply.headers['x-kong-proxy-latency']).toMatch(/^\d+$/);
    expect(g.errors()).toEqual([]);
  });

  it('least-connections: a held request keeps new ones away, and its log phase gives the replica back', async () => {
    const g = await gateway({ strategy: 'least-connections', replicas: replicas() });
    const slow = backends.list[0];
    slow.behave({ mode: 'hold' });
    const held: Array<Promise<Reply>> = [];
    for (let i = 0; i < 30 && slow.open === 0; i++) {
      const before = backends.list.reduce((sum, b) => sum + b.requests, 0);
      held.push(request(g.url + '/v1/chat/completions', { method: 'POST', body: '{}' }));
      await waitFor('the request at a backend', () => backends.list.reduce((sum, b) => sum + b.requests, 0) > before);
    }
    expect(slow.open).toBe(1);
    await waitFor('the other requests answered', () => backends.list.every((b) => b === slow || b.open === 0));
    expect(await sequential(g, 12)).not.toContain('b0');
    slow.behave({ mode: 'json' });
    slow.release();
    for (const reply of await Promise.all(held)) expect(reply.status).toBe(200);
    // Without the log phase b0 would stay "busy" for ever: least-connections would never pick it.
    await waitFor('b0 picked again', async () => (await sequential(g, 3)).includes('b0'));
    expect(g.errors()).toEqual([]);
  });

  it("a plugin exit is the answer: 503 with the plugin's OpenAI-style JSON, and the error is reported", async () => {
    const g = await gateway({ strategy: 'least-conn', replicas: replicas() });
    const reply = await request(g.url + '/v1/chat/completions', { method: 'POST', body: '{}' });
    expect(reply.status).toBe(503);
    expect(JSON.parse(reply.body)).toMatchObject({ error: { type: 'service_unavailable' } });
    expect(backends.counts()).toEqual([0, 0, 0]);
    await waitFor('the log phase', () => g.handled() === 1);
    expect(g.errors().join('\n')).toContain('strategy: must be one of');
  });

  it('a client that leaves mid-stream cuts the upstream request, and the log phase still runs', async () => {
    const g = await gateway({ strategy: 'least-connections', replicas: replicas(1) });
    const b0 = backends.list[0];
    b0.behave({ mode: 'sse', chunks: 3, chunkDelayMs: 0, pauseAfterChunks: 1 });
    const s = stream(g.url + '/v1/chat/completions', { body: '{"stream":true}' });
    await waitFor('the first event at the client', () => s.received().includes('data:'));
    expect(b0.open).toBe(1);
    s.abort();
    await waitFor('the backend connection closed', () => b0.open === 0);
    await waitFor('the log phase of the aborted request', () => g.handled() === 1);
    b0.behave({ mode: 'json' });
    expect(await sequential(g, 2)).toEqual(['b0', 'b0']);
    expect(g.errors()).toEqual([]);
  });

  it('a replica refusing connections gets Kong\'s 502 (Service retries 0), and the next request goes elsewhere', async () => {
    const g = await gateway({ strategy: 'round-robin', replicas: replicas(2), passive_health: { consecutive_failures: 1, max_ejected_percent: 50 } });
    await backends.list[0].kill();
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push((await request(g.url + '/v1/chat/completions', { method: 'POST', body: '{}' })).status);
      expect(statuses.filter((s) => s === 502)).toHaveLength(1);
      expect(statuses.filter((s) => s === 200)).toHaveLength(3);
    } finally {
      await backends.list[0].restart();
    }
  });

  it("honours the plugin's set_timeouts: a replica that never answers gets Kong's 504 after timeouts.response_s, the log phase records a timeout, and the next requests go elsewhere", async () => {
    const g = await gateway({
      strategy: 'round-robin',
      replicas: replicas(2),
      timeouts: { response_s: 1 },
      passive_health: { consecutive_failures: 1, failure_kinds: ['timeout'], max_ejected_percent: 50 },
      kong: { status_path: '/llm-balancer/status' },
    });
    const hung = backends.list[0];
    hung.behave({ mode: 'hold' });
    const started = Date.now();
    const replies = await Promise.all([0, 1].map(() => request(g.url + '/v1/chat/completions', { method: 'POST', body: '{}' })));
    const timedOut = replies.filter((r) => r.status === 504);
    expect(timedOut).toHaveLength(1);
    // Kong's own answer (the error handler's), bounded by the plugin's 1 s read timeout, not the Service's 60 s.
    expect(JSON.parse(timedOut[0].body)).toEqual({ message: 'The upstream server is timing out' });
    expect(Date.now() - started).toBeLessThan(10_000);
    await waitFor('both log phases', () => g.handled() === 2);
    const status = JSON.parse((await request(g.url + '/llm-balancer/status')).body) as { replicas: Array<{ id: string; state: string; in_flight: number }> };
    expect(status.replicas.find((r) => r.id === hung.address)).toMatchObject({ state: 'ejected', in_flight: 0 });
    expect(await sequential(g, 4)).toEqual(['b1', 'b1', 'b1', 'b1']);
    expect(g.errors()).toEqual([]);
  });

  it('a stream that goes silent after its headers is cut after timeouts.stream_idle_s (kong.stream_timeouts: the body says "stream": true)', async () => {
    const g = await gateway({ strategy: 'round-robin', replicas: replicas(1), timeouts: { stream_idle_s: 1, response_s: 60 }, kong: { stream_timeouts: true } });
    const b0 = backends.list[0];
    b0.behave({ mode: 'sse', chunks: 3, chunkDelayMs: 0, pauseAfterChunks: 1 });
    const started = Date.now();
    const s = stream(g.url + '/v1/chat/completions', { body: '{"stream":true}', headers: { 'content-type': 'application/json' } });
    await waitFor('the first event at the client', () => s.received().includes('data:'));
    // The replica holds the rest: nginx gives up after 1 s of silence and, the status being out, cuts the client.
    await s.done.catch(() => undefined);
    expect(s.received()).not.toContain('[DONE]');
    expect(Date.now() - started).toBeLessThan(10_000);
    await waitFor('the backend connection closed', () => b0.open === 0);
    b0.behave({ mode: 'json' });
    b0.release();
    expect(g.errors()).toEqual([]);
  });

  it('active_health: the plugin server probes the replicas itself; a replica failing its probes gets no traffic, and is back within an interval of passing', async () => {
    const g = await gateway({
      strategy: 'round-robin',
      replicas: replicas(2),
      active_health: { enabled: true, interval_s: 1, timeout_s: 0.5, unhealthy_threshold: 2, healthy_threshold: 1 },
      kong: { status_path: '/llm-balancer/status' },
    });
    const sick = backends.list[1];
    const stateOf = async () => (JSON.parse((await request(g.url + '/llm-balancer/status')).body) as { replicas: Array<{ id: string; state: string }> }).replicas.find((r) => r.id === sick.address)?.state;
    await waitFor('the first probes', () => sick.healthChecks >= 1);
    sick.behave({ healthStatus: 503 });
    await waitFor('b1 marked down by its probes', async () => (await stateOf()) === 'unhealthy', 10_000);
    expect(await sequential(g, 4)).toEqual(['b0', 'b0', 'b0', 'b0']);
    sick.behave({ healthStatus: 200 });
    const passing = Date.now();
    await waitFor('b1 back', async () => (await stateOf()) === 'healthy', 10_000);
    // One probe interval (1 s) plus the round in flight and a loaded machine's slack.
    expect(Date.now() - passing).toBeLessThan(4_000);
    expect((await sequential(g, 4)).sort()).toEqual(['b0', 'b0', 'b1', 'b1']);
    expect(g.errors()).toEqual([]);
  });

  it('the CLI announces itself with one JSON line and reports what it handled when stopped', async () => {
    const config = JSON.stringify({ strategy: 'round-robin', replicas: replicas(2) });
    const child = await startJsonChild<{ url: string; port: number }>(path.join(REPO_ROOT, 'testbed', 'kong-gateway', 'cli.ts'), ['--config', config, '--json'], 'the Kong gateway');
    let summary: unknown[] = [];
    try {
      expect(child.ready.url).toBe(`http://127.0.0.1:${child.ready.port}`);
      expect((await sequential({ url: child.ready.url } as KongGateway, 4)).sort()).toEqual(['b0', 'b0', 'b1', 'b1']);
    } finally {
      summary = await child.stop();
    }
    expect(summary).toEqual([{ handled: 4, errors: [] }]);
  });
});
