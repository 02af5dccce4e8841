// nginx's own error answers through the generated configuration are OpenAI-style JSON, in real
// nginx: a bad request line, a 20 KiB header, a long URI, a body over client_max_body_size (by
// Content-Length and chunked), an unknown path, a bad HTTP version or Transfer-Encoding, the
// status page from a disallowed address, a limit_req in front (503 and 429, with Retry-After),
// and no replica left (503 with a Retry-After from the ejections). A replica's own error answer
// still reaches the client unchanged, in the failover location and in the last one.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBackends } from './helpers/backends';
import type { Backends } from './helpers/backends';
import { createFleet, replicasOf } from './helpers/fleet';
import { request } from './helpers/nginx-balancer';
import type { Balancer } from './helpers/nginx-balancer';
import { head, rawRequest } from './helpers/raw-http';
import type { RawReply } from './helpers/raw-http';

let backends: Backends;
const fleet = createFleet('errors');

beforeAll(async () => {
  backends = await startBackends(2);
});
afterEach(async () => {
  expect(await fleet.stopAll()).toEqual([]);
  for (const b of backends.list) await b.restart();
  backends.resetAll();
});
afterAll(async () => {
  await backends?.close();
});

/** The answer is an OpenAI-style error with this status and code. */
function expectJsonError(reply: { status: number; headers: Record<string, string | string[] | undefined>; body: string }, status: number, code: string): void {
  expect(reply.status, reply.body).toBe(status);
  expect(String(reply.headers['content-type'])).toMatch(/^application\/json/);
  const parsed = JSON.parse(reply.body) as { error: { message: string; type: string; code: string; param: null } };
  expect(parsed.error.code).toBe(code);
  expect(parsed.error.message).toMatch(/^llm-balancer: /);
  expect(typeof parsed.error.type).toBe('string');
  expect(parsed.error.param).toBeNull();
}

const CHAT = '/v1/chat/completions';
const BODY = '{"model":"m","messages":[{"role":"user","content":"hi"}]}';

/** Requests nginx itself refuses, whatever the strategy: [what, bytes, status, code]. */
const REFUSED: Array<[string, string, number, string]> = [
  ['a bad request line', 'GARBAGE\r\n\r\n', 400, 'bad_request'],
  ['a 20 KiB header', head('GET', CHAT, { 'X-Big': 'a'.repeat(20 * 1024) }), 400, 'request_header_too_large'],
  ['a 9 KiB URI', head('GET', '/v1/' + 'a'.repeat(9 * 1024)), 414, 'uri_too_long'],
  ['a body over max_body_size by Content-Length', head('POST', CHAT, { 'Content-Length': 2_000_000, 'Content-Type': 'application/json' }) + '{}', 413, 'request_too_large'],
  ['a chunked body over max_body_size', head('POST', CHAT, { 'Transfer-Encoding': 'chunked' }) + ('20000\r\n' + 'a'.repeat(0x20000) + '\r\n').repeat(3) + '0\r\n\r\n', 413, 'request_too_large'],
  ['an unknown path', head('GET', '/admin/secret'), 404, 'not_found'],
  ['a POST to an unknown path', head('POST', '/', { 'Content-Length': 2 }) + '{}', 404, 'not_found'],
  ['HTTP/2.5', 'GET /v1/models HTTP/2.5\r\nHost: x\r\n\r\n', 505, 'http_version_not_supported'],
  ['an unknown Transfer-Encoding', head('POST', CHAT, { 'Transfer-Encoding': 'gzip' }), 501, 'not_implemented'],
  ['a request without Host', 'GET /v1/models HTTP/1.1\r\n\r\n', 400, 'bad_request'],
];

/** Small bodies keep the chunked 413 case quick: 256 KiB is over the limit. */
const NGINX_OPTIONS = { max_body_size: '256k' };

describe("nginx's own errors answer OpenAI-style JSON", () => {
  it.each([
    ['least-connections, retries 1 (the balanced location intercepts for failover)', { strategy: 'least-connections', retries: 1 }],
    ['least-connections, retries 0 (the balanced location is the last attempt)', { strategy: 'least-connections', retries: 0 }],
    ['least-tokens (js_content reads the body, then the proxy location)', { strategy: 'least-tokens', retries: 1 }],
  ])('%s', async (_label, options) => {
    const lb = await fleet.start(Object.assign({ replicas: replicasOf(backends.list), nginx: NGINX_OPTIONS }, options));
    for (const [what, bytes, status, code] of REFUSED) {
      const reply = await rawRequest(lb.port, bytes);
      try {
        expectJsonError(reply, status, code);
      } catch (e) {
        throw new Error(`${what}: ${(e as Error).message}\n${JSON.stringify(reply).slice(0, 600)}`);
      }
    }
    // A normal request still goes through, and the replicas saw none of the refused ones.
    const ok = await request(lb.nginx.url(CHAT), { body: BODY, headers: { 'content-type': 'application/json' } });
    expect(ok.status).toBe(200);
    expect(backends.counts().reduce((a, b) => a + b, 0)).toBe(1);
  });

  it('an invalid chunked body where the location passes replica answers through (last attempt, or js_content reading it)', async () => {
    for (const options of [{ strategy: 'least-connections', retries: 0 }, { strategy: 'least-tokens', retries: 1 }]) {
      const lb = await fleet.start(Object.assign({ replicas: replicasOf(backends.list) }, options));
      const reply = await rawRequest(lb.port, head('POST', CHAT, { 'Transfer-Encoding': 'chunked' }) + 'ZZ\r\nxx\r\n0\r\n\r\n');
      expectJsonError(reply, 400, 'bad_request');
      await fleet.stopLast();
    }
  });

  it('the status page from an address not in status_allow: 403 JSON', async () => {
    const lb = await fleet.start({ replicas: replicasOf(backends.list), nginx: { status_allow: ['10.9.9.9'] } });
    expectJsonError(await request(lb.nginx.url('/llm-balancer/status')), 403, 'forbidden');
    expectJsonError(await request(lb.nginx.url('/llm-balancer/metrics')), 403, 'forbidden');
    // The error pages are internal: asking for one directly is an unknown path.
    expectJsonError(await request(lb.nginx.url('/llm-balancer/error/503')), 404, 'not_found');
  });
});

describe("a replica's own error answer reaches the client unchanged", () => {
  it.each([
    ['retries 1: the first attempt intercepts 502/503/504 only', 1],
    ['retries 0: the only attempt passes everything through', 0],
  ])('%s', async (_label, retries) => {
    const lb = await fleet.start({ strategy: 'round-robin', retries, replicas: replicasOf(backends.list) });
    for (const status of [400, 404, 422, 500]) {
      for (const b of backends.list) b.behave({ status });
      const reply = await request(lb.nginx.url(CHAT), { body: BODY });
      expect(reply.status).toBe(status);
      // The backends' own JSON: it names the backend that answered.
      expect(JSON.parse(reply.body)).toMatchObject({ method: 'POST', path: CHAT });
      expect(reply.headers['retry-after']).toBeUndefined();
    }
  });
});

describe('Retry-After on the 503s and 429s the gateway produces', () => {
  const LIMITED = { 'x-limit': 'me' };
  // Only requests with an X-Limit header are limited (an empty key is not counted): one per minute.
  const limitZone = ['limit_req_zone $http_x_limit zone=llm_limit:1m rate=1r/m;'];

  it.each([
    ['limit_req (503) in front of a failover location: JSON 503 through the refused-before-pick path', 1, [], 503, 'service_unavailable'],
    ['limit_req_status 429 in front of a failover location', 1, ['limit_req_status 429;'], 429, 'rate_limit_exceeded'],
    ['limit_req (503) in front of the last attempt', 0, [], 503, 'service_unavailable'],
    ['limit_req_status 429 in front of the last attempt', 0, ['limit_req_status 429;'], 429, 'rate_limit_exceeded'],
  ])('%s', async (_label, retries, extra, status, code) => {
    const lb = await fleet.start(
      { strategy: 'least-connections', retries, replicas: replicasOf(backends.list) },
      { httpDirectives: limitZone, locationDirectives: ['limit_req zone=llm_limit nodelay;'].concat(extra) },
    );
    expect((await request(lb.nginx.url(CHAT), { body: BODY, headers: LIMITED })).status).toBe(200);
    const refused = await request(lb.nginx.url(CHAT), { body: BODY, headers: LIMITED });
    expectJsonError(refused, status, code);
    expect(refused.headers['retry-after']).toBe('1');
    // Refused before the pick: never sent to a replica; unlimited requests still pass.
    expect(backends.counts().reduce((a, b) => a + b, 0)).toBe(1);
    expect((await request(lb.nginx.url(CHAT), { body: BODY })).status).toBe(200);
  });

  async function ejectAll(lb: Balancer): Promise<void> {
    for (const b of backends.list) await b.kill();
    // Each request fails on both replicas (pick + failover): one round ejects both.
    for (let i = 0; i < 4; i++) {
      const reply = await request(lb.nginx.url(CHAT), { body: BODY });
      if (reply.status === 503) return;
    }
  }

  it.each([
    ['js_set pick (proxy_pass), retries 1', 'least-connections', 1],
    ['js_set pick (proxy_pass), retries 0', 'least-connections', 0],
    ['js_content route (least-tokens)', 'least-tokens', 1],
  ])('no replica left, %s: 503 JSON with Retry-After = the time until the first ejection ends', async (_label, strategy, retries) => {
    const lb = await fleet.start({
      strategy,
      retries,
      replicas: replicasOf(backends.list),
      passive_health: { consecutive_failures: 1, base_ejection_s: 20, max_ejection_s: 40, max_ejected_percent: 100 },
    });
    await ejectAll(lb);
    const reply = await request(lb.nginx.url(CHAT), { body: BODY });
    expectJsonError(reply, 503, 'no_healthy_replica');
    // Ejected for 20 s a moment ago: the soonest return is 20 s away, give or take the test's own time.
    const seconds = Number(reply.headers['retry-after']);
    expect(seconds).toBeGreaterThanOrEqual(10);
    expect(seconds).toBeLessThanOrEqual(20);
  });

  it('with every replica marked down by active checks: healthy_threshold intervals', async () => {
    for (const b of backends.list) b.behave({ healthStatus: 500 });
    const lb = await fleet.start({
      strategy: 'least-connections',
      replicas: replicasOf(backends.list),
      passive_health: { enabled: false },
      active_health: { enabled: true, interval_s: 2, timeout_s: 1, unhealthy_threshold: 1, healthy_threshold: 3 },
    });
    let reply: RawReply | null = null;
    for (let i = 0; i < 60 && (reply === null || reply.status !== 503); i++) {
      await new Promise((r) => setTimeout(r, 50));
      reply = await rawRequest(lb.port, head('GET', CHAT));
    }
    expectJsonError(reply as RawReply, 503, 'no_healthy_replica');
    expect((reply as RawReply).headers['retry-after']).toBe('6');
  });
});
