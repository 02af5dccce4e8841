// Timeouts and retry_on on NGINX: what the generator renders for them (every proxy location's
// connect / read / send bounds, streaming and non-streaming locations, the statuses each attempt
// hands to the next alternate), how `route` tells a streaming request from the body, and what they
// do in real nginx (2 workers, the built bundle) with real backends: a replica's 500 goes to the
// other replica, retry_on [] passes it through, a 404 is never retried, an attempt that timed out
// before any byte reached the client is retried on the next alternate, streaming requests are cut
// at stream_idle_s and the others are not.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { failoverStatuses, renderNginxConfig } from '../plugins/nginx/generator/generate';
import { loadBalancerFile } from '../plugins/nginx/generator/load';
import { splitsByStreaming, streamRequested } from '../plugins/nginx/streaming';
import { startBackends } from './helpers/backends';
import type { Backends } from './helpers/backends';
import { createFleet, replicasOf } from './helpers/fleet';
import { drained, readStatus, request } from './helpers/nginx-balancer';
import type { Balancer, StatusRow } from './helpers/nginx-balancer';

const REPLICAS = [{ address: '127.0.0.1:9001', id: 'a' }, { address: '127.0.0.1:9002', id: 'b' }];

/** The nginx.conf the generator renders for `balancer` (no nginx run: the directives only). */
function conf(balancer: Record<string, unknown>): string {
  const loaded = loadBalancerFile(JSON.stringify(Object.assign({ replicas: REPLICAS }, balancer)));
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  return renderNginxConfig({ config: loaded.config, nginx: Object.assign({}, loaded.nginx, { js_path: '/js', config_json: '/c.json' }), source: 'spec' }, 'full');
}

/** The body of `location <name> { ... }` in `text`. */
function location(text: string, name: string): string {
  const start = text.indexOf('    location ' + name + ' {\n');
  if (start < 0) throw new Error(`no location ${name} in:\n${text}`);
  return text.slice(start, text.indexOf('\n    }', start));
}

/** Every `location` line of the server, in order. */
function locations(text: string): string[] {
  return Array.from(text.matchAll(/^ {4}location (\S+(?: \S+)?) \{$/gm), (m) => m[1]);
}

describe('rendered timeouts', () => {
  it('defaults: every proxy location connects within connect_s; streaming ones wait stream_idle_s, the others response_s', () => {
    const text = conf({ strategy: 'least-connections', retries: 2 });
    // The body is read to know the request's kind: js_content route, then a location per kind and attempt.
    expect(location(text, '/v1/')).toContain('js_content llm_balancer.route;');
    // (The internal error-page locations and the catch-all `/` are error-pages.ts's.)
    expect(locations(text).filter((name) => !name.startsWith('= /llm-balancer/error/') && name !== '/')).toEqual([
      '/v1/',
      '@llm_balancer_proxy',
      '@llm_balancer_proxy_stream',
      '@llm_balancer_retry_1',
      '@llm_balancer_retry_2',
      '@llm_balancer_retry_stream_1',
      '@llm_balancer_retry_stream_2',
      '@llm_balancer_exhausted',
      '= /llm-balancer/status',
      '= /llm-balancer/metrics',
      // models.discovery (on by default) where the body is read anyway.
      '@llm_balancer_models',
    ]);
    for (const name of ['@llm_balancer_proxy', '@llm_balancer_retry_1', '@llm_balancer_retry_2']) {
      const block = location(text, name);
      expect(block).toContain('proxy_connect_timeout 3000ms;');
      expect(block).toContain('proxy_read_timeout 300000ms;');
      expect(block).toContain('proxy_send_timeout 300000ms;');
    }
    for (const name of ['@llm_balancer_proxy_stream', '@llm_balancer_retry_stream_1', '@llm_balancer_retry_stream_2']) {
      const block = location(text, name);
      expect(block).toContain('proxy_connect_timeout 3000ms;');
      expect(block).toContain('proxy_read_timeout 60000ms;');
      expect(block).toContain('proxy_send_timeout 60000ms;');
    }
    // A streaming request's failover stays among the streaming locations.
    expect(location(text, '@llm_balancer_proxy_stream')).toContain('= @llm_balancer_retry_stream_1;');
    expect(location(text, '@llm_balancer_retry_stream_1')).toContain('= @llm_balancer_retry_stream_2;');
    expect(location(text, '@llm_balancer_proxy')).toContain('= @llm_balancer_retry_1;');
    expect(location(text, '@llm_balancer_retry_1')).toContain('= @llm_balancer_retry_2;');
    // Every proxy location has exactly one of each bound (nginx would refuse duplicates anyway).
    expect(text.match(/proxy_connect_timeout/g)).toHaveLength(6);
    expect(text.match(/proxy_read_timeout/g)).toHaveLength(6);
  });

  it('fractions of a second become whole milliseconds', () => {
    const text = conf({ timeouts: { connect_s: 0.25, response_s: 2.5, stream_idle_s: 1.5 } });
    expect(location(text, '@llm_balancer_proxy')).toMatch(/proxy_connect_timeout 250ms;\n\s+proxy_read_timeout 2500ms;\n\s+proxy_send_timeout 2500ms;/);
    expect(location(text, '@llm_balancer_proxy_stream')).toMatch(/proxy_connect_timeout 250ms;\n\s+proxy_read_timeout 1500ms;\n\s+proxy_send_timeout 1500ms;/);
  });

  it('equal bounds: one kind of location, and strategies that do not read the body keep the js_set path', () => {
    const text = conf({ strategy: 'round-robin', retries: 1, timeouts: { response_s: 120, stream_idle_s: 120 } });
    expect(text).not.toContain('js_content llm_balancer.route');
    expect(text).not.toContain('_stream');
    expect(location(text, '/v1/')).toContain('proxy_pass http://$llm_balancer_upstream;');
    expect(location(text, '/v1/')).toContain('proxy_read_timeout 120000ms;');
    expect(location(text, '@llm_balancer_retry_1')).toContain('proxy_read_timeout 120000ms;');
    // A strategy that reads the body still routes, to the one proxy location.
    const tokens = conf({ strategy: 'least-tokens', timeouts: { response_s: 120, stream_idle_s: 120 } });
    expect(tokens).toContain('js_content llm_balancer.route;');
    expect(locations(tokens)).toContain('@llm_balancer_proxy');
    expect(tokens).not.toContain('_stream');
  });

  it('a longer stream bound than response bound is honoured too', () => {
    const text = conf({ timeouts: { response_s: 30, stream_idle_s: 600 } });
    expect(location(text, '@llm_balancer_proxy')).toContain('proxy_read_timeout 30000ms;');
    expect(location(text, '@llm_balancer_proxy_stream')).toContain('proxy_read_timeout 600000ms;');
  });
});

describe('rendered retry_on', () => {
  it('default: non-last attempts intercept 429 and 5xx and hand them to the next; the last passes the replica answer through', () => {
    const text = conf({ retries: 1 });
    for (const name of ['@llm_balancer_proxy', '@llm_balancer_proxy_stream']) {
      const block = location(text, name);
      expect(block).toContain('proxy_intercept_errors on;');
      expect(block).toMatch(/error_page 429 500 502 503 504 = @llm_balancer_retry_(stream_)?1;/);
    }
    for (const name of ['@llm_balancer_retry_1', '@llm_balancer_retry_stream_1']) {
      const block = location(text, name);
      expect(block).not.toContain('proxy_intercept_errors');
      // Only nginx's own failures of the last attempt become the JSON error.
      expect(block).toContain('error_page 502 504 = @llm_balancer_exhausted;');
    }
  });

  it('retry_on []: replica answers are never intercepted, nginx\'s own connect errors and timeouts still fail over', () => {
    const text = conf({ retries: 1, retry_on: [] });
    expect(text).not.toContain('proxy_intercept_errors');
    expect(location(text, '@llm_balancer_proxy')).toContain('error_page 502 504 = @llm_balancer_retry_1;');
    expect(location(text, '@llm_balancer_proxy_stream')).toContain('error_page 502 504 = @llm_balancer_retry_stream_1;');
  });

  it('a chosen set: its statuses plus nginx\'s own 502 and 504, sorted; retries 0 intercepts nothing', () => {
    expect(location(conf({ retries: 2, retry_on: [503, 429] }), '@llm_balancer_retry_1')).toContain('error_page 429 502 503 504 = @llm_balancer_retry_2;');
    expect(failoverStatuses([])).toEqual([502, 504]);
    expect(failoverStatuses([507, 500, 502])).toEqual([500, 502, 504, 507]);
    const none = conf({ retries: 0 });
    expect(none).not.toContain('proxy_intercept_errors');
    expect(none).not.toContain('@llm_balancer_retry_');
    expect(location(none, '@llm_balancer_proxy')).toContain('error_page 502 504 = @llm_balancer_exhausted;');
  });
});

describe('streamRequested / splitsByStreaming', () => {
  it.each<[string, unknown, string | null, boolean]>([
    ['stream true', undefined, '{"model":"m","stream":true,"messages":[]}', true],
    ['stream true with spaces', undefined, '{ "stream" : true }', true],
    ['stream false', undefined, '{"stream":false}', false],
    ['no stream field', undefined, '{"model":"m","messages":[{"role":"user","content":"hi"}]}', false],
    ['"stream" only inside a message', undefined, '{"messages":[{"role":"user","content":"say \\"stream\\": true"}]}', false],
    ['nested stream: not the request\'s', undefined, '{"metadata":{"stream":true}}', false],
    ['stream as a string', undefined, '{"stream":"true"}', false],
    ['not JSON', undefined, 'stream: true "stream"', false],
    ['an array', undefined, '[{"stream":true}]', false],
    ['no body', undefined, null, false],
    ['already parsed by the strategy', { stream: true }, '{"ignored":1}', true],
    ['already parsed, not JSON', null, '{"stream":true}', false],
  ])('%s', (_name, parsed, text, expected) => {
    expect(streamRequested(parsed, text)).toBe(expected);
  });

  it('splits only when the two bounds differ', () => {
    expect(splitsByStreaming({ connect_s: 3, response_s: 300, stream_idle_s: 60 })).toBe(true);
    expect(splitsByStreaming({ connect_s: 3, response_s: 60, stream_idle_s: 60 })).toBe(false);
    expect(splitsByStreaming(undefined)).toBe(false);
  });
});

describe('in real nginx', () => {
  let backends: Backends;
  const fleet = createFleet('failover');

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

  const URL_PATH = '/v1/chat/completions';
  const row = async (lb: Balancer, id: string): Promise<StatusRow> => (await readStatus(lb)).replicas.find((r) => r.id === id) as StatusRow;
  // Passive ejection off: these tests count which replica each attempt went to.
  const base = (extra: Record<string, unknown>) =>
    Object.assign({ strategy: 'round-robin', retries: 1, replicas: replicasOf(backends.list), passive_health: { enabled: false } }, extra);

  it('a replica answering 500: the client gets the other replica\'s 200, and the failed attempt is recorded', async () => {
    const lb = await fleet.start(base({}));
    backends.list[0].behave({ status: 500 });
    const replies = [];
    for (let i = 0; i < 6; i++) replies.push(await request(lb.nginx.url(URL_PATH), { body: '{"model":"m"}' }));
    expect(replies.map((r) => r.status)).toEqual(Array(6).fill(200));
    for (const reply of replies) expect(JSON.parse(reply.body).backend).toBe('b1');
    // Round robin sent half of the first attempts to b0: each of its 500s was retried on b1.
    expect(backends.list[0].requests).toBe(3);
    expect(backends.list[1].requests).toBe(6);
    await drained(lb);
    const b0 = await row(lb, 'b0');
    expect(b0.picks).toBe(3);
    expect(b0.failures).toBe(3);
  });

  it('retry_on []: the replica\'s 500 and its JSON body pass through unchanged', async () => {
    const lb = await fleet.start(base({ retry_on: [] }));
    backends.list[0].behave({ status: 500 });
    const replies = [];
    for (let i = 0; i < 4; i++) replies.push(await request(lb.nginx.url(URL_PATH), { body: '{"model":"m"}' }));
    expect(replies.map((r) => r.status).sort()).toEqual([200, 200, 500, 500]);
    for (const reply of replies.filter((r) => r.status === 500)) expect(JSON.parse(reply.body)).toMatchObject({ backend: 'b0' });
    expect(backends.counts()).toEqual([2, 2]);
    await drained(lb);
  });

  it('a 404 is never retried; when every attempt fails, the last replica\'s own answer reaches the client', async () => {
    const lb = await fleet.start(base({}));
    backends.list[0].behave({ status: 404 });
    const replies = [];
    for (let i = 0; i < 4; i++) replies.push(await request(lb.nginx.url(URL_PATH), { body: '{"model":"m"}' }));
    expect(replies.map((r) => r.status).sort()).toEqual([200, 200, 404, 404]);
    expect(backends.counts()).toEqual([2, 2]);
    // Both answer 500: two attempts, and the client gets the second replica's own JSON 500.
    backends.list[1].behave({ status: 500 });
    backends.list[0].behave({ status: 500 });
    const before = backends.counts();
    const failed = await request(lb.nginx.url(URL_PATH), { body: '{"model":"m"}' });
    expect(failed.status).toBe(500);
    expect(failed.headers['content-type']).toContain('application/json');
    expect(JSON.parse(failed.body)).toHaveProperty('backend');
    expect(backends.counts().map((n, i) => n - before[i])).toEqual([1, 1]);
    await drained(lb);
  });

  it('a replica that never answers: a streaming request fails over after stream_idle_s, a non-streaming one only after response_s', async () => {
    const lb = await fleet.start(base({ timeouts: { response_s: 3, stream_idle_s: 1 } }));
    const hung = backends.list[0];
    hung.behave({ mode: 'hold' });
    const timed = async (body: string) => {
      const started = Date.now();
      const reply = await request(lb.nginx.url(URL_PATH), { body, timeoutMs: 15_000 });
      return { reply, ms: Date.now() - started };
    };
    // Two at once: round robin sends one of them to the hung replica first.
    const streaming = await Promise.all([timed('{"stream":true}'), timed('{"stream":true}')]);
    expect(streaming.map((s) => s.reply.status)).toEqual([200, 200]);
    expect(streaming.map((s) => JSON.parse(s.reply.body).backend)).toEqual(['b1', 'b1']);
    expect(hung.requests).toBe(1);
    // The one that met the hung replica was held for its 1 s bound, not response_s (generous margin).
    const slowest = Math.max(streaming[0].ms, streaming[1].ms);
    expect(slowest).toBeGreaterThanOrEqual(900);
    expect(slowest).toBeLessThan(2_800);
    const plain = await Promise.all([timed('{"stream":false}'), timed('{"model":"m"}')]);
    expect(plain.map((s) => s.reply.status)).toEqual([200, 200]);
    expect(plain.map((s) => JSON.parse(s.reply.body).backend)).toEqual(['b1', 'b1']);
    expect(hung.requests).toBe(2);
    // Not cut at the streaming bound: the full response_s (3 s), then the retry.
    const longest = Math.max(plain[0].ms, plain[1].ms);
    expect(longest).toBeGreaterThanOrEqual(2_900);
    expect(longest).toBeLessThan(6_000);
    await drained(lb);
    // Both timeouts were recorded against the hung replica.
    expect((await row(lb, 'b0')).failures).toBe(2);
  });

  it('a stream the replica stops mid-way is cut after stream_idle_s and recorded as a failure, though its status was 200', async () => {
    const lb = await fleet.start(base({ timeouts: { response_s: 10, stream_idle_s: 1 } }));
    const [stalls, completes] = backends.list;
    stalls.behave({ mode: 'sse', chunks: 5, chunkDelayMs: 5, pauseAfterChunks: 1 });
    completes.behave({ mode: 'sse', chunks: 3, chunkDelayMs: 5 });
    const replies = await Promise.all([0, 1].map(() => request(lb.nginx.url(URL_PATH), { body: '{"stream":true}', timeoutMs: 15_000 })));
    const cut = replies.find((r) => r.body.includes('"backend":"b0"'));
    const whole = replies.find((r) => r.body.includes('"backend":"b1"'));
    // The headers (200) and the first event had reached the client: too late to fail over.
    expect(cut?.status).toBe(200);
    expect(cut?.body).not.toContain('[DONE]');
    expect(whole?.body).toContain('[DONE]');
    await drained(lb);
    expect((await row(lb, 'b0')).failures).toBe(1);
    expect((await row(lb, 'b1')).failures).toBe(0);
    stalls.release();
  });
});
