// The Kong plugin end to end: the built dist/kong/llm-balancer.js in the REAL kong-js-pluginserver,
// driven over its MessagePack-RPC socket by a harness playing Kong (testbed/lib/kong-harness.ts):
// access phase → a real HTTP request to the target the plugin set, on live local backends → log
// phase with Kong's log entry. Replicas come from the plugin config or from a fake Kong Admin API
// (spec/helpers/kong-admin.ts) whose targets, weights and health the tests change. Assertions
// are on counts and answers, never on durations.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBackends } from './helpers/backends';
import type { Backends } from './helpers/backends';
import { startFakeKongAdmin } from './helpers/kong-admin';
import type { FakeKongAdmin, KongHealth } from './helpers/kong-admin';
import { KongSide, kongRequest, startBuiltPlugin } from './helpers/kong-harness';
import type { BuiltPlugin, FakeRequest, KongResult, PluginServer } from './helpers/kong-harness';

let backends: Backends;
let server: PluginServer;
let built: BuiltPlugin;
let kong: KongSide;
const admins: FakeKongAdmin[] = [];
let nextPluginId = 0;

beforeAll(async () => {
  backends = await startBackends(3);
  built = await startBuiltPlugin('kong-int');
  server = built.server;
  kong = built.kong;
});

afterEach(async () => {
  for (const b of backends.list) {
    b.release();
    if (!b.listening) await b.restart();
  }
  backends.resetAll();
  for (const admin of admins.splice(0)) await admin.close();
});

afterAll(async () => {
  await built?.stop();
  await backends?.close();
});

/** A new plugin instance with its own plugin id (its own balancer state in the server). */
async function plugin(config: Record<string, unknown>): Promise<number> {
  nextPluginId++;
  return kong.startInstance('llm-balancer', config, 'plugin-' + nextPluginId);
}

function staticReplicas(weights?: number[]): Array<{ address: string; weight: number }> {
  return backends.list.map((b, i) => ({ address: b.address, weight: weights ? weights[i] : 1 }));
}

function servedBy(result: KongResult): string {
  expect(result.status, result.body).toBe(200);
  return (JSON.parse(result.body) as { backend: string }).backend;
}

async function send(instance: number, n: number, request: FakeRequest = {}): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(servedBy(await kongRequest(kong, instance, request)));
  return out;
}

function tally(names: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const n of names) counts[n] = (counts[n] ?? 0) + 1;
  return counts;
}

async function admin(health: KongHealth[] = ['HEALTHY', 'HEALTHY', 'HEALTHY'], weights = [100, 100, 100]): Promise<FakeKongAdmin> {
  const a = await startFakeKongAdmin('llm-replicas', backends.list.map((b, i) => ({ target: b.address, weight: weights[i], health: health[i] })));
  admins.push(a);
  return a;
}

function viaAdmin(a: FakeKongAdmin, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { kong: { upstream: a.upstream, admin_url: a.url, refresh_interval_s: 0.1, admin_timeout_s: 1, ...extra } };
}

describe('strategies through the real plugin server', () => {
  it('round-robin rotates over every replica', async () => {
    const id = await plugin({ strategy: 'round-robin', replicas: staticReplicas() });
    const names = await send(id, 9);
    expect(tally(names)).toEqual({ b0: 3, b1: 3, b2: 3 });
    for (let i = 0; i + 3 <= names.length; i++) expect(new Set(names.slice(i, i + 3)).size).toBe(3);
  });

  it('weighted-round-robin matches the weights exactly over each window', async () => {
    const id = await plugin({ strategy: 'weighted-round-robin', replicas: staticReplicas([3, 2, 1]) });
    const names = await send(id, 12);
    expect(tally(names.slice(0, 6))).toEqual({ b0: 3, b1: 2, b2: 1 });
    expect(tally(names.slice(6))).toEqual({ b0: 3, b1: 2, b2: 1 });
  });

  it('least-connections sends new requests away from a backend holding a slow one', async () => {
    const id = await plugin({ strategy: 'least-connections', replicas: staticReplicas() });
    const slow = backends.list[0];
    slow.behave({ mode: 'hold' });
    // Until b0 holds one request, the others answer at once.
    const held: Array<Promise<KongResult>> = [];
    for (let i = 0; i < 30 && slow.open === 0; i++) {
      const before = backends.list.reduce((s, b) => s + b.requests, 0);
      const pending = kongRequest(kong, id, {});
      held.push(pending);
      const deadline = Date.now() + 5000;
      while (backends.list.reduce((s, b) => s + b.requests, 0) === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    }
    expect(slow.open).toBe(1);
    const names = await send(id, 12);
    expect(names).not.toContain('b0');
    slow.release();
    for (const r of await Promise.all(held)) expect(r.status).toBe(200);
  });

  it('consistent-hash keyed by the Kong consumer: each consumer stays on one replica', async () => {
    const id = await plugin({ strategy: 'consistent-hash', hash_key: { source: 'consumer' }, replicas: staticReplicas() });
    const homes: Record<string, Set<string>> = {};
    for (let round = 0; round < 4; round++) {
      for (const user of ['team-a', 'team-b', 'team-c', 'team-d', 'team-e']) {
        const name = servedBy(await kongRequest(kong, id, { consumer: { id: 'consumer-' + user, username: user } }));
        (homes[user] ??= new Set()).add(name);
      }
    }
    for (const user of Object.keys(homes)) expect([...homes[user]], user).toHaveLength(1);
  });

  it('hybrid with a header key is sticky too, and anonymous requests spread', async () => {
    const id = await plugin({ strategy: 'hybrid', hash_key: { source: 'header', name: 'x-session-id' }, replicas: staticReplicas() });
    const sticky = new Set(await send(id, 6, { headers: { 'X-Session-Id': 'conv-42' } }));
    expect(sticky.size).toBe(1);
    expect(new Set(await send(id, 12)).size).toBeGreaterThan(1);
  });

  it('response-time moves traffic off a backend made slow', async () => {
    const id = await plugin({ strategy: 'response-time', replicas: staticReplicas() });
    await send(id, 9);
    backends.list[1].behave({ latencyMs: 150 });
    // Let the slow replica be sampled (peak EWMA takes a slow sample at once).
    await send(id, 6);
    const names = await send(id, 12);
    expect(tally(names).b1 ?? 0).toBeLessThanOrEqual(1);
  });
});

describe('targets, weights and health from the Kong Admin API', () => {
  it('routes to the upstream targets read from the Admin API (all pages) and sends the admin token', async () => {
    const a = await admin();
    const id = await plugin({ strategy: 'round-robin', ...viaAdmin(a, { admin_token: 'rbac-token' }) });
    expect(tally(await send(id, 6))).toEqual({ b0: 2, b1: 2, b2: 2 });
    expect(a.tokens.length).toBeGreaterThan(0);
    expect(new Set(a.tokens)).toEqual(new Set(['rbac-token']));
  });

  it('a weight change takes effect at the next refresh', async () => {
    const a = await admin();
    const id = await plugin({ strategy: 'weighted-round-robin', ...viaAdmin(a) });
    expect(tally(await send(id, 6))).toEqual({ b0: 2, b1: 2, b2: 2 });
    a.targets = a.targets.map((t, i) => ({ ...t, weight: i === 0 ? 300 : 100 }));
    await a.nextReads(2);
    const names = await send(id, 10);
    expect(tally(names)).toEqual({ b0: 6, b1: 2, b2: 2 });
  });

  it('a target Kong marks UNHEALTHY gets no traffic after the next refresh, and comes back', async () => {
    const a = await admin();
    const id = await plugin({ strategy: 'round-robin', ...viaAdmin(a) });
    await send(id, 3);
    a.targets = a.targets.map((t, i) => ({ ...t, health: i === 1 ? 'UNHEALTHY' : 'HEALTHY' }));
    await a.nextReads(2);
    expect(await send(id, 8)).not.toContain('b1');
    a.targets = a.targets.map((t) => ({ ...t, health: 'HEALTHY' }));
    await a.nextReads(2);
    expect(await send(id, 6)).toContain('b1');
  });

  it('keeps routing on the last known replicas while the Admin API fails or hangs, and logs it', async () => {
    const a = await admin();
    const id = await plugin({ strategy: 'round-robin', ...viaAdmin(a) });
    expect(new Set(await send(id, 3)).size).toBe(3);
    a.mode = 'error';
    await new Promise((r) => setTimeout(r, 350));
    expect(tally(await send(id, 6))).toEqual({ b0: 2, b1: 2, b2: 2 });
    a.mode = 'hang';
    expect(tally(await send(id, 6))).toEqual({ b0: 2, b1: 2, b2: 2 });
    expect(server.stderr()).toContain('Admin API');
  });

  it('uses the static replicas until the Admin API answers for the first time', async () => {
    const a = await admin();
    a.mode = 'error';
    const id = await plugin({ strategy: 'round-robin', replicas: [{ address: backends.list[2].address }], ...viaAdmin(a) });
    expect(new Set(await send(id, 3))).toEqual(new Set(['b2']));
    a.mode = 'ok';
    await a.nextReads(2);
    expect(new Set(await send(id, 6))).toEqual(new Set(['b0', 'b1', 'b2']));
  });

  it('answers 503 JSON (never a wrong host) when the Admin API was never read and there are no static replicas', async () => {
    const a = await admin();
    a.mode = 'error';
    const id = await plugin({ strategy: 'round-robin', ...viaAdmin(a) });
    const result = await kongRequest(kong, id, {});
    expect(result.exited).toBe(true);
    expect(result.status).toBe(503);
    expect(result.target).toBeNull();
    expect(JSON.parse(result.body)).toMatchObject({ error: { type: 'service_unavailable', code: 'no_replicas' } });
    expect(JSON.parse(result.body).error.message).toContain('Admin API');
  });

  it('answers 503 JSON when every target is UNHEALTHY', async () => {
    const a = await admin(['UNHEALTHY', 'DNS_ERROR', 'UNHEALTHY']);
    const id = await plugin({ strategy: 'least-connections', ...viaAdmin(a) });
    const result = await kongRequest(kong, id, {});
    expect(result.status).toBe(503);
    expect(result.target).toBeNull();
    expect(JSON.parse(result.body)).toMatchObject({ error: { type: 'service_unavailable', code: 'no_healthy_replica' } });
  });
});

describe('failures', () => {
  it('a dead backend is ejected after consecutive failures and traffic moves (Kong retries: 0)', async () => {
    const id = await plugin({ strategy: 'round-robin', replicas: staticReplicas(), passive_health: { consecutive_failures: 2, max_ejected_percent: 50 } });
    await backends.list[0].kill();
    const results: KongResult[] = [];
    for (let i = 0; i < 9; i++) results.push(await kongRequest(kong, id, {}));
    const failed = results.filter((r) => r.status !== 200);
    // Round robin hits b0 every third request until two failures eject it.
    expect(failed.length).toBe(2);
    for (const r of failed) expect(r.status).toBe(502);
    expect(results.every((r) => r.retries === 0)).toBe(true);
    const after = await send(id, 6);
    expect(after).not.toContain('b0');
  });

  it("calls set_retries(0) while the Service retries on its own, and saves the round trip once the Service has retries 0", async () => {
    const id = await plugin({ strategy: 'round-robin', replicas: staticReplicas() });
    const kongDefault: Array<number | null> = [];
    for (let i = 0; i < 3; i++) kongDefault.push((await kongRequest(kong, id, {})).retries);
    expect(kongDefault).toEqual([0, 0, 0]);
    const serviceZero: Array<number | null> = [];
    for (let i = 0; i < 3; i++) serviceZero.push((await kongRequest(kong, id, {}, { serviceRetries: 0 })).retries);
    // The first still sets it (the entries so far showed 5); its own entry shows 0: no more calls.
    expect(serviceZero).toEqual([0, null, null]);
  });

  it('answers 503 for an invalid configuration and logs the field path', async () => {
    const id = await plugin({ strategy: 'least-conn', replicas: staticReplicas() });
    const result = await kongRequest(kong, id, {});
    expect(result.status).toBe(503);
    expect(result.target).toBeNull();
    const logged = result.access.calls.filter((c) => c.method === 'kong.log.err').map((c) => String(c.args[0]));
    expect(logged.join('\n')).toContain('strategy: must be one of');
  });

  it('a body key reads the body only up to kong.max_body_bytes', async () => {
    const id = await plugin({ strategy: 'consistent-hash', hash_key: { source: 'body', name: 'user' }, replicas: staticReplicas(), kong: { max_body_bytes: 1024 } });
    const small = JSON.stringify({ user: 'alice', messages: [] });
    const homes = new Set(await send(id, 4, { body: small, headers: { 'content-type': 'application/json', 'content-length': String(small.length) } }));
    expect(homes.size).toBe(1);
    const big = JSON.stringify({ user: 'alice', messages: ['x'.repeat(4096)] });
    const result = await kongRequest(kong, id, { body: big, headers: { 'content-type': 'application/json', 'content-length': String(big.length) } });
    expect(result.status).toBe(200);
    expect(result.access.calls.map((c) => c.method)).not.toContain('kong.request.get_raw_body');
  });
});
