// Every strategy routing live requests through real nginx (2 worker processes, the generator's
// configuration, the built njs bundle) to real HTTP backends. Assertions are on counts and
// states, never on durations.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBackends } from './helpers/backends';
import type { Backend, Backends } from './helpers/backends';
import { drained, readStatus, render, request, stream, waitFor } from './helpers/nginx-balancer';
import { createFleet, replicasOf } from './helpers/fleet';
import { runWithBundle } from './helpers/nginx-env';
import { NGINX_OUTFILE } from '../build/build.js';
import type { Balancer, Reply } from './helpers/nginx-balancer';

let backends: Backends;
const fleet = createFleet('routing');

beforeAll(async () => {
  backends = await startBackends(3);
});
afterEach(async () => {
  for (const b of backends.list) b.release();
  expect(await fleet.stopAll()).toEqual([]);
  backends.resetAll();
});
afterAll(async () => {
  await backends?.close();
});

const replicas = replicasOf;

const balancer = (config: Record<string, unknown>) => fleet.start(config);
const stopLast = () => fleet.stopLast();

/** Backend name of a JSON answer. */
function servedBy(reply: Reply): string {
  expect(reply.status, reply.body).toBe(200);
  return (JSON.parse(reply.body) as { backend: string }).backend;
}

async function sequential(lb: Balancer, n: number, headers?: Record<string, string>): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(servedBy(await request(lb.nginx.url('/v1/chat/completions'), { headers })));
  return out;
}

async function concurrent(lb: Balancer, n: number, parallel: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i += parallel) {
    const batch: Promise<Reply>[] = [];
    for (let j = i; j < Math.min(n, i + parallel); j++) batch.push(request(lb.nginx.url('/v1/chat/completions'), { method: 'POST', body: '{}' }));
    for (const reply of await Promise.all(batch)) out.push(servedBy(reply));
  }
  return out;
}

function tally(names: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const n of names) counts[n] = (counts[n] ?? 0) + 1;
  return counts;
}

/**
 * Sends a request and resolves once a backend received it (held or answered); `reply` settles
 * when it completes. (Wrapped: an async function returning the promise itself would wait for it.)
 */
async function holdOne(lb: Balancer, headers?: Record<string, string>): Promise<{ reply: Promise<Reply> }> {
  const before = backends.list.reduce((s, b) => s + b.requests, 0);
  const reply = request(lb.nginx.url('/v1/chat/completions'), { headers });
  await waitFor('the request to reach a backend', () => backends.list.reduce((s, b) => s + b.requests, 0) > before);
  return { reply };
}

describe('round-robin', () => {
  it('rotates over all replicas in order, shared by both workers', async () => {
    const lb = await balancer({ strategy: 'round-robin', replicas: replicas(backends.list) });
    const names = await sequential(lb, 9);
    expect(tally(names)).toEqual({ b0: 3, b1: 3, b2: 3 });
    // Strict rotation: every window of 3 consecutive requests covers all three.
    for (let i = 0; i + 3 <= names.length; i++) expect(new Set(names.slice(i, i + 3)).size).toBe(3);
  });

  it('proxies a long prompt whose body is larger than nginx keeps in memory (spooled to temp/)', async () => {
    // 64 KiB > client_body_buffer_size (16k): nginx writes it to client_body_temp_path first.
    const lb = await balancer({ strategy: 'round-robin', replicas: replicas(backends.list) });
    const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(64 * 1024) }] });
    const reply = await request(lb.nginx.url('/v1/chat/completions'), { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    expect(reply.status, reply.body).toBe(200);
    expect((JSON.parse(reply.body) as { bodyBytes: number }).bodyBytes).toBe(Buffer.byteLength(body));
  });
});

describe('weighted-round-robin', () => {
  it('shares match the weights exactly over every window of sum(weights), sequential and concurrent', async () => {
    const lb = await balancer({ strategy: 'weighted-round-robin', replicas: replicas(backends.list, [3, 2, 1]) });
    const names = await sequential(lb, 12);
    for (let i = 0; i < 12; i += 6) expect(tally(names.slice(i, i + 6))).toEqual({ b0: 3, b1: 2, b2: 1 });
    // Concurrent requests spread over both workers: the shared cursor keeps the totals exact.
    const more = await concurrent(lb, 48, 8);
    expect(tally(names.concat(more))).toEqual({ b0: 30, b1: 20, b2: 10 });
    await drained(lb);
  });
});

describe('least-connections', () => {
  it('breaks ties between idle replicas at random, freshly for every request VM', async () => {
    // Every request runs in a new njs VM and seeds its random source from the shared counter
    // (runtime.ts): a seed that repeated would send every idle request to the same replica.
    const lb = await balancer({ strategy: 'least-connections', replicas: replicas(backends.list) });
    const counts = tally(await sequential(lb, 60));
    // Binomial(60, 1/3) falls below 5 with probability ~1e-5 per replica.
    for (const name of ['b0', 'b1', 'b2']) expect(counts[name] ?? 0).toBeGreaterThanOrEqual(5);
    await drained(lb);
  });

  it('sends new requests away from a backend holding a slow request', async () => {
    const lb = await balancer({ strategy: 'least-connections', replicas: replicas(backends.list) });
    const slow = backends.list[0];
    slow.behave({ mode: 'hold' });
    // Until the slow backend holds one request, the others answer at once.
    const finished: Promise<Reply>[] = [];
    for (let i = 0; i < 30 && slow.open === 0; i++) finished.push((await holdOne(lb)).reply);
    expect(slow.open).toBe(1);
    await waitFor('in flight [1, 0, 0]', async () => (await readStatus(lb)).replicas.map((r) => r.in_flight).join() === '1,0,0');
    const before = slow.requests;
    const names = await sequential(lb, 20);
    expect(slow.requests).toBe(before);
    expect(names).not.toContain('b0');
    slow.release();
    await Promise.all(finished);
    await drained(lb);
  });
});

describe('response-time', () => {
  it('moves traffic off a backend made slow mid-test', async () => {
    // A short half-life: an idle replica's estimate decays within ~100 ms, so the equally fast
    // replicas keep alternating and the slow one is met soon, however noisy the machine is.
    const lb = await balancer({ strategy: 'response-time', response_time: { half_life_s: 0.1 }, replicas: replicas(backends.list.slice(0, 2)) });
    await sequential(lb, 10);
    const status = await readStatus(lb);
    expect(status.replicas.every((r) => r.samples > 0)).toBe(true);
    const slow = backends.list[0];
    slow.behave({ latencyMs: 300 });
    // Requests keep flowing until one meets the slow backend: its latency estimate jumps (peak EWMA).
    const before = slow.requests;
    for (let i = 0; i < 500 && slow.requests === before; i++) await sequential(lb, 1);
    expect(slow.requests).toBe(before + 1);
    const after = (await readStatus(lb)).replicas;
    expect(after[0].latency_ewma_ms).toBeGreaterThan(after[1].latency_ewma_ms as number);
    const names = await sequential(lb, 20);
    expect(tally(names)).toEqual({ b1: 20 });
  });
});

describe('consistent-hash', () => {
  const config = (list: Backend[], balanceFactor = 1.25) => ({
    strategy: 'consistent-hash',
    hash_key: { source: 'header', name: 'x-session-id' },
    consistent_hash: { balance_factor: balanceFactor },
    replicas: replicas(list),
  });
  const keys = Array.from({ length: 30 }, (_, i) => `session-${i}`);

  /**
   * One request, then wait for its log phase: bounded load counts in-flight requests, and a
   * request sent before the last one's log phase ran would see its key's replica still busy
   * (ceil(1.25 × 2 / 3) = 1) and spill — correct, but not what these tests are about.
   */
  async function settledOne(lb: Balancer, headers: Record<string, string>): Promise<string> {
    const name = (await sequential(lb, 1, headers))[0];
    await drained(lb);
    return name;
  }

  async function placement(lb: Balancer): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const key of keys) out[key] = await settledOne(lb, { 'x-session-id': key });
    return out;
  }

  it('keeps keys sticky, and removing a replica (reload) moves only the keys it held', async () => {
    const lb = await balancer(config(backends.list));
    const first = await placement(lb);
    expect(await placement(lb)).toEqual(first);
    expect(new Set(Object.values(first)).size).toBe(3);
    // Remove b2 and reload: the keys of b0 and b1 stay where they were (rendezvous hashing).
    await lb.reconfigure(config(backends.list.slice(0, 2)));
    const second = await placement(lb);
    const moved = keys.filter((k) => second[k] !== first[k]);
    expect(moved.sort()).toEqual(keys.filter((k) => first[k] === 'b2').sort());
    expect(moved.every((k) => second[k] !== 'b2')).toBe(true);
  });

  it('keys from the consumer identity ($remote_user, verified by auth_basic): each user stays on one replica', async () => {
    const users = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi'];
    // An unverified $remote_user is refused by the generator (spec/nginx-identity.spec.ts): auth_basic checks it here.
    const htpasswd = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-htpasswd-')), 'users');
    fs.writeFileSync(htpasswd, users.map((u) => u + ':{PLAIN}secret\n').join(''), { mode: 0o644 });
    fs.chmodSync(path.dirname(htpasswd), 0o755);
    const lb = await balancer({ strategy: 'consistent-hash', hash_key: { source: 'consumer' }, replicas: replicas(backends.list), nginx: { auth_basic_user_file: htpasswd } });
    const basic = (user: string) => ({ authorization: 'Basic ' + Buffer.from(user + ':secret').toString('base64') });
    const first: string[] = [];
    for (const user of users) first.push(await settledOne(lb, basic(user)));
    for (let i = 0; i < users.length; i++) {
      expect([await settledOne(lb, basic(users[i])), await settledOne(lb, basic(users[i]))]).toEqual([first[i], first[i]]);
    }
    expect(new Set(first).size).toBeGreaterThan(1);
  });

  it('bounded load caps a hot key at ceil(c × average), the unbounded ring does not', async () => {
    for (const b of backends.list) b.behave({ mode: 'hold' });
    const hot = { 'x-session-id': 'hot-key' };
    const held = async (balanceFactor: number): Promise<number[]> => {
      const lb = await balancer(config(backends.list, balanceFactor));
      const pending: Promise<Reply>[] = [];
      for (let i = 0; i < 9; i++) pending.push((await holdOne(lb, hot)).reply);
      const open = backends.list.map((b) => b.open);
      await waitFor('in flight as held', async () => (await readStatus(lb)).replicas.map((r) => r.in_flight).join() === open.join());
      for (const b of backends.list) b.release();
      await Promise.all(pending);
      await drained(lb);
      await stopLast();
      return open;
    };
    const bounded = await held(1.25);
    expect(Math.max(...bounded)).toBeLessThanOrEqual(Math.ceil((1.25 * 9) / 3));
    expect(bounded.filter((n) => n > 0).length).toBeGreaterThan(1);
    const unbounded = await held(0);
    expect(unbounded.sort()).toEqual([0, 0, 9]);
  });

  it('keys from a JSON body field (js_content route): sticky, and streams pass through unbuffered', async () => {
    const lb = await balancer({
      strategy: 'consistent-hash',
      hash_key: { source: 'body', name: 'user' },
      replicas: replicas(backends.list),
    });
    // Each request's log phase runs before the next is sent (see settledOne): bounded load would
    // otherwise see the previous one still in flight and may spill, correctly.
    const post = async (user: string) => {
      const reply = await request(lb.nginx.url('/v1/chat/completions'), { body: JSON.stringify({ user, messages: [{ role: 'user', content: 'hi' }] }) });
      await drained(lb);
      return reply;
    };
    const users = ['ann', 'bob', 'cyd', 'dan', 'eve', 'fay'];
    const first: string[] = [];
    for (const user of users) first.push(servedBy(await post(user)));
    for (let i = 0; i < users.length; i++) expect(servedBy(await post(users[i]))).toBe(first[i]);
    // The backend saw the whole body.
    const body = JSON.stringify({ user: 'ann', messages: [{ role: 'user', content: 'hi' }] });
    expect(backends.list.find((b) => b.name === first[0])?.bodies).toContain(body);
    // Not JSON: routed by the fallback strategy, never an error.
    expect((await request(lb.nginx.url('/v1/chat/completions'), { body: 'not json' })).status).toBe(200);
    // SSE: the first event reaches the client while the backend still holds the rest.
    for (const b of backends.list) b.behave({ mode: 'sse', chunks: 3, chunkDelayMs: 1, pauseAfterChunks: 1 });
    const s = stream(lb.nginx.url('/v1/chat/completions'), { body: JSON.stringify({ user: 'ann', stream: true }) });
    await waitFor('the first SSE event before the backend sends the rest', () => s.received().includes('"chunk":0'));
    expect(s.received()).not.toContain('"chunk":1');
    for (const b of backends.list) b.release();
    const all = await s.done;
    expect(s.status()).toBe(200);
    expect(all).toContain('"chunk":2');
    expect(all).toContain('[DONE]');
    await drained(lb);
  });
});

describe('hybrid', () => {
  it('stays sticky by key until the replica reaches max_concurrent, then goes elsewhere', async () => {
    const lb = await balancer({
      strategy: 'hybrid',
      hash_key: { source: 'query', name: 'session' },
      hybrid: { sticky: true, max_concurrent: 2 },
      replicas: replicas(backends.list),
    });
    const url = lb.nginx.url('/v1/chat/completions?session=s-42');
    const home = servedBy(await request(url));
    expect(servedBy(await request(url))).toBe(home);
    // Their log phases first: a count still at 1 would make the second held request spill.
    await drained(lb);
    const homeBackend = backends.list.find((b) => b.name === home) as Backend;
    homeBackend.behave({ mode: 'hold' });
    const pending = [request(url), request(url)];
    await waitFor('two held requests on the home replica', () => homeBackend.open === 2);
    const elsewhere = servedBy(await request(url));
    expect(elsewhere).not.toBe(home);
    homeBackend.release();
    await Promise.all(pending);
    await drained(lb);
  });
});

describe('streaming through the js_set path', () => {
  it('SSE chunks reach the client while the backend is still generating', async () => {
    const lb = await balancer({ strategy: 'round-robin', replicas: replicas(backends.list.slice(0, 1)) });
    backends.list[0].behave({ mode: 'sse', chunks: 4, chunkDelayMs: 1, pauseAfterChunks: 2 });
    const s = stream(lb.nginx.url('/v1/chat/completions'));
    await waitFor('two SSE events before the backend sends the rest', () => s.received().includes('"chunk":1'));
    expect(s.received()).not.toContain('"chunk":2');
    expect((await readStatus(lb)).replicas[0].in_flight).toBe(1);
    backends.list[0].release();
    expect(await s.done).toContain('[DONE]');
    await drained(lb);
  });
});

describe('the generated configuration and the bundle agree', () => {
  // nginx -t does not check that a js_set/js_content/js_periodic function exists (a missing one
  // fails only when a request reaches it), so check every name the generator writes.
  it('every llm_balancer.<handler> the generator renders is a function of the bundle', async () => {
    const list = replicas(backends.list);
    const confs = [
      { strategy: 'least-connections', retries: 2, replicas: list, active_health: { enabled: true } },
      { strategy: 'consistent-hash', hash_key: { source: 'body', name: 'user' }, replicas: list },
    ].map((config) => render(config, 8080, '/tmp/unused.json').conf);
    const names = new Set<string>();
    for (const conf of confs) for (const m of conf.matchAll(/llm_balancer\.([A-Za-z_]+)/g)) if (m[1] !== 'js') names.add(m[1]);
    expect([...names].sort()).toEqual(['discoverModels', 'firstByte', 'healthCheck', 'healthReport', 'metrics', 'outcome', 'pick', 'retry', 'route', 'status']);
    const r = await runWithBundle(NGINX_OUTFILE, `console.log(${JSON.stringify([...names])}.filter(function (n) { return typeof m[n] !== 'function'; }).join(','));`);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('');
  });
});
