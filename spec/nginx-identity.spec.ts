// Trusted identity for `hash_key.source: consumer` on NGINX. The generator refuses a consumer key
// nginx has not verified ($remote_user without auth_basic is whatever the client's Authorization:
// Basic header says) and offers safe constructions; in real nginx, the auth_request construction
// keys on the identity an auth service returned: users stick to their replicas, a client cannot
// move by asserting another identity (Basic header, the identity header itself), and requests the
// auth service refuses are a JSON 401 that never reaches a replica.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { preloadedConfig, renderNginxConfig } from '../plugins/nginx/generator/generate';
import { loadBalancerFile } from '../plugins/nginx/generator/load';
import { startBackends } from './helpers/backends';
import type { Backends } from './helpers/backends';
import { createFleet, replicasOf } from './helpers/fleet';
import { drained, request } from './helpers/nginx-balancer';
import type { Balancer } from './helpers/nginx-balancer';

const REPLICAS = { replicas: [{ address: '127.0.0.1:9001' }, { address: '127.0.0.1:9002' }] };
const CONSUMER = { strategy: 'consistent-hash', hash_key: { source: 'consumer' } };

function load(doc: Record<string, unknown>) {
  return loadBalancerFile(JSON.stringify(Object.assign({}, REPLICAS, doc)));
}

function errorsOf(doc: Record<string, unknown>): string[] {
  const loaded = load(doc);
  return loaded.ok ? [] : loaded.errors.map((e) => `${e.path}: ${e.message}`);
}

describe('the generator refuses a client-asserted consumer', () => {
  it('consumer on $remote_user without auth: refused, saying why and how to do it safely', () => {
    const errors = errorsOf(CONSUMER);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^hash_key\.source: consumer needs a verified identity on NGINX: nginx fills \$remote_user from the client's own Authorization: Basic header/);
    for (const way of ['nginx.auth_request', 'nginx.auth_basic_user_file', 'nginx.consumer_variable_verified: true']) expect(errors[0]).toContain(way);
  });

  it.each([
    ['another variable nothing verifies', { nginx: { consumer_variable: 'jwt_sub' } }, /nothing here verifies \$jwt_sub/],
    ['auth_basic_user_file, but keyed on another variable', { nginx: { consumer_variable: 'jwt_sub', auth_basic_user_file: '/etc/nginx/htpasswd' } }, /nothing here verifies \$jwt_sub/],
  ])('%s: refused', (_label, extra, message) => {
    const errors = errorsOf(Object.assign({}, CONSUMER, extra));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(message);
  });

  it.each([
    ['auth_request', { auth_request: { url: 'http://127.0.0.1:9000/verify', identity_header: 'X-User-Id' } }, 'llm_balancer_consumer'],
    ['auth_basic_user_file', { auth_basic_user_file: '/etc/nginx/htpasswd' }, 'remote_user'],
    ['the operator verifies the variable', { consumer_variable: 'jwt_sub', consumer_variable_verified: true }, 'jwt_sub'],
  ])('%s: accepted, keyed on $%s', (_label, nginx, variable) => {
    const loaded = load(Object.assign({}, CONSUMER, { nginx }));
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
    expect(preloadedConfig(loaded.config, loaded.nginx).consumerVariable).toBe(variable);
  });

  it('other key sources are the client\'s by design and are not refused', () => {
    for (const hashKey of [{ source: 'header', name: 'x-session-id' }, { source: 'client-ip' }, { source: 'body', name: 'user' }]) {
      expect(errorsOf({ strategy: 'consistent-hash', hash_key: hashKey })).toEqual([]);
    }
  });

  it.each([
    ['a URL with a space and a directive', { url: 'http://a/ x; return 200', identity_header: 'X-User' }, 'nginx.auth_request.url: must be an http(s) URL'],
    ['a URL with a variable', { url: 'http://$host/verify', identity_header: 'X-User' }, 'nginx.auth_request.url: must be an http(s) URL'],
    ['a header with a space', { url: 'http://127.0.0.1:9000/v', identity_header: 'X User' }, 'nginx.auth_request.identity_header: must be a header name'],
    ['a missing header', { url: 'http://127.0.0.1:9000/v' }, 'nginx.auth_request.identity_header: is required'],
  ])('auth_request with %s: a config error with its field path', (_label, auth, message) => {
    const errors = errorsOf(Object.assign({}, CONSUMER, { nginx: { auth_request: auth } }));
    expect(errors.some((e) => e.startsWith(message)), errors.join('\n')).toBe(true);
  });

  it('auth_request with an explicit consumer_variable or with auth_basic_user_file: refused', () => {
    const auth = { url: 'http://127.0.0.1:9000/v', identity_header: 'X-User' };
    expect(errorsOf(Object.assign({}, CONSUMER, { nginx: { auth_request: auth, consumer_variable: 'remote_user' } }))[0]).toMatch(/^nginx\.consumer_variable: must be unset with nginx\.auth_request/);
    expect(errorsOf(Object.assign({}, CONSUMER, { nginx: { auth_request: auth, auth_basic_user_file: '/x' } }))[0]).toMatch(/^nginx\.auth_basic_user_file: must be unset with nginx\.auth_request/);
  });

  it('the auth_request construction renders auth_request + auth_request_set in the balanced location and an internal auth location', () => {
    const loaded = load(Object.assign({}, CONSUMER, { nginx: { auth_request: { url: 'http://127.0.0.1:9000/verify', identity_header: 'X-User-Id' } } }));
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
    const conf = renderNginxConfig({ config: loaded.config, nginx: Object.assign({}, loaded.nginx, { js_path: '/x', config_json: '/x.json' }), source: 'spec' }, 'snippet');
    const balanced = conf.slice(conf.indexOf('location /v1/ {'), conf.indexOf('}', conf.indexOf('location /v1/ {')));
    expect(balanced).toContain('auth_request /llm-balancer/auth;');
    expect(balanced).toContain('auth_request_set $llm_balancer_consumer $upstream_http_x_user_id;');
    expect(conf).toContain('location = /llm-balancer/auth {\n      internal;\n      proxy_pass http://127.0.0.1:9000/verify;\n      proxy_pass_request_body off;');
  });
});

describe('the auth_request construction in real nginx', () => {
  let backends: Backends;
  let auth: http.Server;
  let authPort = 0;
  let authCalls = 0;
  const fleet = createFleet('identity');
  /** The auth service: a valid bearer token names its user in X-User-Id; anything else is 401. */
  const TOKENS: Record<string, string> = { 'token-alice': 'alice', 'token-bob': 'bob', 'token-carol': 'carol', 'token-dave': 'dave', 'token-erin': 'erin', 'token-frank': 'frank' };

  beforeAll(async () => {
    backends = await startBackends(3);
    auth = http.createServer((req, res) => {
      authCalls++;
      const match = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
      const user = match ? TOKENS[match[1]] : undefined;
      if (user === undefined) {
        res.writeHead(401, { 'www-authenticate': 'Bearer' });
        res.end();
        return;
      }
      res.writeHead(200, { 'x-user-id': user });
      res.end();
    });
    await new Promise<void>((resolve) => auth.listen(0, '127.0.0.1', () => resolve()));
    authPort = (auth.address() as AddressInfo).port;
  });
  afterEach(async () => {
    expect(await fleet.stopAll()).toEqual([]);
    backends.resetAll();
  });
  afterAll(async () => {
    await backends?.close();
    await new Promise((resolve) => auth?.close(resolve));
  });

  const URL_PATH = '/v1/chat/completions';
  const BODY = '{"model":"m","messages":[{"role":"user","content":"hi"}]}';

  async function servedBy(lb: Balancer, headers: Record<string, string>): Promise<string> {
    const reply = await request(lb.nginx.url(URL_PATH), { body: BODY, headers });
    expect(reply.status, reply.body).toBe(200);
    await drained(lb);
    return (JSON.parse(reply.body) as { backend: string }).backend;
  }

  it('users stick to their replicas; another identity asserted by the client moves nothing; refused requests are a JSON 401', async () => {
    const lb = await fleet.start({
      strategy: 'consistent-hash',
      hash_key: { source: 'consumer' },
      replicas: replicasOf(backends.list),
      nginx: { auth_request: { url: `http://127.0.0.1:${authPort}/verify`, identity_header: 'X-User-Id' } },
    });
    const bearer = (token: string) => ({ authorization: 'Bearer ' + token });
    const home: Record<string, string> = {};
    for (const [token, user] of Object.entries(TOKENS)) home[user] = await servedBy(lb, bearer(token));
    expect(new Set(Object.values(home)).size).toBeGreaterThan(1);
    // Sticky, and a client cannot claim another user's replica: the identity header it sends is
    // not the auth service's answer.
    const [alice, other] = [home.alice, Object.keys(home).find((u) => home[u] !== home.alice) as string];
    for (let i = 0; i < 3; i++) {
      expect(await servedBy(lb, bearer('token-alice'))).toBe(alice);
      expect(await servedBy(lb, Object.assign(bearer('token-alice'), { 'x-user-id': other }))).toBe(alice);
      expect(await servedBy(lb, bearer('token-' + other))).toBe(home[other]);
    }
    // The original attack: a Basic header naming another user, without a valid token.
    const before = backends.counts().reduce((a, b) => a + b, 0);
    const basic = await request(lb.nginx.url(URL_PATH), { body: BODY, headers: { authorization: 'Basic ' + Buffer.from(other + ':x').toString('base64') } });
    expect(basic.status).toBe(401);
    expect(basic.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(basic.body).error.code).toBe('unauthorized');
    expect(basic.headers['www-authenticate']).toBe('Bearer');
    expect(backends.counts().reduce((a, b) => a + b, 0)).toBe(before);
    await drained(lb);
  });

  it('the auth step also guards the body-reading mode (js_content) before any pick', async () => {
    const lb = await fleet.start({
      strategy: 'least-tokens',
      replicas: replicasOf(backends.list),
      nginx: { auth_request: { url: `http://127.0.0.1:${authPort}/verify`, identity_header: 'X-User-Id' } },
    });
    const callsBefore = authCalls;
    const refused = await request(lb.nginx.url(URL_PATH), { body: BODY });
    expect(refused.status).toBe(401);
    expect(JSON.parse(refused.body).error.code).toBe('unauthorized');
    expect(backends.counts()).toEqual([0, 0, 0]);
    expect(await servedBy(lb, { authorization: 'Bearer token-bob' })).toMatch(/^b[012]$/);
    expect(authCalls - callsBefore).toBe(2);
  });

  it('auth_basic with a user file: a wrong password is a JSON 401 with its WWW-Authenticate challenge', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-htpasswd-'));
    fs.chmodSync(dir, 0o755);
    const file = path.join(dir, 'users');
    fs.writeFileSync(file, 'alice:{PLAIN}secret\n', { mode: 0o644 });
    try {
      const lb = await fleet.start({ strategy: 'consistent-hash', hash_key: { source: 'consumer' }, replicas: replicasOf(backends.list), nginx: { auth_basic_user_file: file } });
      const wrong = await request(lb.nginx.url(URL_PATH), { body: BODY, headers: { authorization: 'Basic ' + Buffer.from('alice:guess').toString('base64') } });
      expect(wrong.status).toBe(401);
      expect(JSON.parse(wrong.body).error.code).toBe('unauthorized');
      expect(wrong.headers['www-authenticate']).toBe('Basic realm="llm-balancer"');
      expect(await servedBy(lb, { authorization: 'Basic ' + Buffer.from('alice:secret').toString('base64') })).toMatch(/^b[012]$/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
