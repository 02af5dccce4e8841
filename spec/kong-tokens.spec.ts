// least-tokens in the Kong plugin, end to end: the built dist/kong/llm-balancer.js in the REAL
// kong-js-pluginserver, driven by the harness playing Kong (testbed/lib/kong-harness.ts): access reads
// the raw body (up to kong.max_body_bytes), estimates the request's tokens, counts them on the
// replica it picks and keeps them in kong.ctx.shared; the log phase reads them back and releases
// them. The balancer state lives in the plugin server process, so the tests see it through routing
// (held requests on live backends) and through the PDK calls of each phase. Assertions are on
// counts, PDK calls and bodies, never on durations.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBackends } from './helpers/backends';
import type { Backend, Backends } from './helpers/backends';
import { KongSide, kongRequest, startBuiltPlugin } from './helpers/kong-harness';
import type { BuiltPlugin, FakeRequest, KongRequestOptions, KongResult, PhaseRun } from './helpers/kong-harness';

let backends: Backends;
let built: BuiltPlugin;
let kong: KongSide;
let nextPluginId = 0;

beforeAll(async () => {
  backends = await startBackends(2);
  built = await startBuiltPlugin('kong-tokens');
  kong = built.kong;
});

afterEach(async () => {
  for (const b of backends.list) {
    b.release();
    if (!b.listening) await b.restart();
  }
  backends.resetAll();
});

afterAll(async () => {
  await built?.stop();
  await backends?.close();
});

/** The kong.ctx.shared key the plugin keeps a request's estimated tokens under (plugins/kong/index.ts). */
const TOKENS_KEY = 'llm_balancer_tokens';

/** A new plugin instance with its own plugin id (its own balancer state in the server). */
async function plugin(config: Record<string, unknown>): Promise<number> {
  nextPluginId++;
  return kong.startInstance('llm-balancer', config, 'tokens-plugin-' + nextPluginId);
}

function staticReplicas(): Array<{ address: string; weight: number }> {
  return backends.list.map((b) => ({ address: b.address, weight: 1 }));
}

function byName(name: string): Backend {
  const found = backends.list.find((b) => b.name === name);
  if (!found) throw new Error('no backend ' + name);
  return found;
}

/** A chat body with one user message (and max_tokens when given). */
function chat(content: string, maxTokens?: number): string {
  const body: Record<string, unknown> = { model: 'm', messages: [{ role: 'user', content }] };
  if (maxTokens !== undefined) body.max_tokens = maxTokens;
  return JSON.stringify(body);
}

/** A POST with this raw body and its content-type and content-length, as a client sends it. */
function withBody(body: string, contentType = 'application/json'): FakeRequest {
  return { body, headers: { 'content-type': contentType, 'content-length': String(Buffer.byteLength(body)) } };
}

// 16,000 characters = 4,000 tokens, + 4 for the message, + max_tokens 100 (under the 1,024 cap).
const LONG = chat('x'.repeat(16_000), 100);
const LONG_TOKENS = 4104;
// "hi" = 1 token, + 4 for the message, + max_tokens 16.
const SHORT = chat('hi', 16);
const SHORT_TOKENS = 21;
// least_tokens.default_request_tokens.
const DEFAULT_TOKENS = 512;

function servedBy(result: KongResult): string {
  expect(result.status, result.body).toBe(200);
  return (JSON.parse(result.body) as { backend: string }).backend;
}

function totalRequests(): number {
  return backends.list.reduce((sum, b) => sum + b.requests, 0);
}

interface Held {
  pending: Promise<KongResult>;
  /** The backend that received (and holds) the request. */
  backend: string;
}

/**
 * Starts one request without awaiting it (kongRequest resolves only after the log phase) and
 * waits until a backend has received it: with the backends in hold mode it then stays in flight.
 */
async function startHeld(instance: number, request: FakeRequest, options?: KongRequestOptions): Promise<Held> {
  const before = backends.list.map((b) => b.requests);
  const pending = kongRequest(kong, instance, request, options);
  // A request that fails before reaching a backend ends the wait too (and its status is asserted later).
  let settled = false;
  void pending.then(
    () => (settled = true),
    () => (settled = true),
  );
  const deadline = Date.now() + 5000;
  while (totalRequests() === before.reduce((s, n) => s + n, 0) && !settled && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const received = backends.list.filter((b, i) => b.requests > before[i]);
  if (received.length !== 1) {
    const result = settled ? await pending : null;
    throw new Error(`expected exactly one backend to receive the request, got ${received.length}` + (result ? ` (status ${result.status}: ${result.body})` : ''));
  }
  return { pending, backend: received[0].name };
}

function sharedCalls(run: PhaseRun | null, method: 'get' | 'set'): unknown[][] {
  if (run === null) return [];
  return run.calls.filter((c) => c.method === 'kong.ctx.shared.' + method && c.args[0] === TOKENS_KEY).map((c) => c.args);
}

/** The tokens access kept in kong.ctx.shared for the log phase (the one set call with the key). */
function tokensSet(result: KongResult): unknown {
  const sets = sharedCalls(result.access, 'set');
  expect(sets, 'kong.ctx.shared.set(' + TOKENS_KEY + ', n) calls in access').toHaveLength(1);
  return sets[0][1];
}

function methods(run: PhaseRun | null): string[] {
  return run === null ? [] : run.calls.map((c) => c.method);
}

/** Sends the long request and 3 short ones, each held on a backend; returns them with the long one's backend. */
async function longThenShort(id: number): Promise<{ long: Held; short: Held[] }> {
  for (const b of backends.list) b.behave({ mode: 'hold' });
  const long = await startHeld(id, withBody(LONG));
  const short: Held[] = [];
  for (let i = 0; i < 3; i++) short.push(await startHeld(id, withBody(SHORT)));
  return { long, short };
}

async function releaseAll(held: Held[]): Promise<KongResult[]> {
  for (const b of backends.list) b.release();
  const results = await Promise.all(held.map((h) => h.pending));
  for (const r of results) expect(r.status, r.body).toBe(200);
  return results;
}

describe('least-tokens in the Kong plugin', () => {
  it('a long prompt steers the next short requests to the other replica', async () => {
    const id = await plugin({ strategy: 'least-tokens', replicas: staticReplicas() });
    const { long, short } = await longThenShort(id);
    const x = long.backend;
    const y = backends.list.find((b) => b.name !== x)?.name as string;
    // X holds 4,104 tokens: each short one (21) is cheaper on Y even with the other shorts there
    // (least-connections would tie 1–1 on the second and could send it to X).
    expect(short.map((h) => h.backend)).toEqual([y, y, y]);
    expect(byName(x).open).toBe(1);
    expect(byName(y).open).toBe(3);
    const results = await releaseAll([long, ...short]);
    expect(results.map(servedBy)).toEqual([x, y, y, y]);
  });

  it('the log phase gives the tokens back', async () => {
    const id = await plugin({ strategy: 'least-tokens', replicas: staticReplicas() });
    const { long, short } = await longThenShort(id);
    const x = long.backend;
    const y = backends.list.find((b) => b.name !== x)?.name as string;
    expect(short.map((h) => h.backend)).toEqual([y, y, y]);
    const [longResult, ...shortResults] = await releaseAll([long, ...short]);

    // Access kept each request's estimate in kong.ctx.shared, and the log phase read it back.
    expect(tokensSet(longResult)).toBe(LONG_TOKENS);
    for (const r of shortResults) expect(tokensSet(r)).toBe(SHORT_TOKENS);
    for (const r of [longResult, ...shortResults]) {
      const gets = (r.log?.calls ?? []).filter((c) => c.method === 'kong.ctx.shared.get' && c.args[0] === TOKENS_KEY);
      expect(gets, 'kong.ctx.shared.get(' + TOKENS_KEY + ') in log').toHaveLength(1);
      expect(gets[0].answer).toBe(tokensSet(r));
      expect(r.log?.unexpected).toEqual([]);
    }

    // Everything ended: both replicas are back to 0 tokens. Held short requests then alternate
    // (a tie, then the emptier one), so 10 of them split 5–5. With the tokens leaked, X would look
    // 4,104 tokens busy (Y only 63) for ever and get none of them.
    for (const b of backends.list) b.behave({ mode: 'hold' });
    const next: Held[] = [];
    for (let i = 0; i < 10; i++) next.push(await startHeld(id, withBody(SHORT)));
    const names = next.map((h) => h.backend);
    expect(names).toContain(x);
    expect(names.filter((n) => n === x)).toHaveLength(5);
    expect(names.filter((n) => n === y)).toHaveLength(5);
    await releaseAll(next);
  });

  it('bodies over kong.max_body_bytes or not OpenAI count the default and still reach the replica unchanged', async () => {
    const id = await plugin({ strategy: 'least-tokens', replicas: staticReplicas(), kong: { max_body_bytes: 1024 } });
    const big = chat('y'.repeat(4096), 100);
    expect(Buffer.byteLength(big)).toBeGreaterThan(4096);
    const cases: Array<{ what: string; request: FakeRequest; options?: KongRequestOptions; readsBody: boolean }> = [
      // Content-Length over the limit: the body is not even read.
      { what: '4 KiB chat body', request: withBody(big), readsBody: false },
      // No Content-Length (chunked): read, then found too large.
      {
        what: '4 KiB chat body without content-length',
        request: withBody(big),
        options: { pdk: (state) => ({ 'kong.request.get_header': ([name]) => (String(name).toLowerCase() === 'content-length' ? null : (state.request.headers[String(name).toLowerCase()] ?? null)) }) },
        readsBody: true,
      },
      { what: 'non-JSON body', request: withBody('model=m&prompt=hello there, not JSON {', 'application/x-www-form-urlencoded'), readsBody: true },
      { what: 'JSON that is not an OpenAI request', request: withBody(JSON.stringify({ input: 'hello', max_tokens: 5 })), readsBody: true },
      { what: 'no body', request: { method: 'GET', path: '/v1/models' }, readsBody: true },
    ];
    for (const c of cases) {
      const before = backends.list.map((b) => b.bodies.length);
      const result = await kongRequest(kong, id, c.request, c.options);
      const name = servedBy(result);
      expect(methods(result.access).includes('kong.request.get_raw_body'), c.what + ': get_raw_body called').toBe(c.readsBody);
      expect(tokensSet(result), c.what).toBe(DEFAULT_TOKENS);
      expect(sharedCalls(result.log, 'get'), c.what).toEqual([[TOKENS_KEY]]);
      // The replica got exactly the bytes the client sent.
      const backend = byName(name);
      const index = backends.list.indexOf(backend);
      expect(backend.bodies.length, c.what).toBe(before[index] + 1);
      expect(backend.bodies[backend.bodies.length - 1], c.what).toBe(c.request.body ?? '');
      expect(JSON.parse(result.body).bodyBytes, c.what).toBe(Buffer.byteLength(c.request.body ?? ''));
    }
  });

  it('strategies that count no tokens make no extra PDK calls (kong.stream_timeouts off: no body read for the timeouts either)', async () => {
    const id = await plugin({ strategy: 'least-connections', replicas: staticReplicas(), kong: { stream_timeouts: false } });
    for (const body of [LONG, SHORT]) {
      const result = await kongRequest(kong, id, withBody(body));
      servedBy(result);
      expect(methods(result.access)).not.toContain('kong.request.get_raw_body');
      expect(sharedCalls(result.access, 'set')).toEqual([]);
      expect(sharedCalls(result.log, 'get')).toEqual([]);
      expect(result.state.shared.has(TOKENS_KEY)).toBe(false);
      expect(result.log?.unexpected).toEqual([]);
    }
  });
});
