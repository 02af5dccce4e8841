// The Kong Admin API client against nock: the page shapes are Kong 3.x's (`data`, `offset`,
// `next` as a path from the Admin API root), so these pin the paging, the join of targets with
// health, the validation of every field we use, and that every failure is one readable line.
import net from 'node:net';
import { Readable } from 'node:stream';
import nock from 'nock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAX_PAGES, readUpstreamReplicas } from '../plugins/kong/admin-api';
import type { AdminApiOptions } from '../plugins/kong/admin-api';

const ADMIN = 'http://kong-admin.test:8001';
const OPTIONS: AdminApiOptions = { adminUrl: ADMIN, upstream: 'llm', token: null, timeoutMs: 2000 };

let created = 0;
/** A target entry as Kong lists it. */
function target(address: string, weight = 100): Record<string, unknown> {
  created++;
  return {
    id: '00000000-0000-4000-8000-' + String(created).padStart(12, '0'),
    created_at: 1700000000 + created,
    updated_at: 1700000000 + created,
    upstream: { id: '11111111-1111-4111-8111-111111111111' },
    target: address,
    weight,
    tags: null,
  };
}

/** A health entry as Kong lists it: the target's fields plus health and the balancer's details. */
function health(address: string, state: string, weight = 100): Record<string, unknown> {
  const colon = address.lastIndexOf(':');
  return {
    ...target(address, weight),
    health: state,
    data: {
      host: address.slice(0, colon),
      port: Number(address.slice(colon + 1)),
      dns: 'A',
      nodeWeight: weight,
      weight: { total: weight, available: state === 'HEALTHY' ? weight : 0, unavailable: state === 'HEALTHY' ? 0 : weight },
      addresses: [{ ip: '10.0.0.1', port: Number(address.slice(colon + 1)), weight, health: state }],
    },
  };
}

function page(data: unknown[], next: string | null = null): Record<string, unknown> {
  return next === null ? { data, next: null } : { data, offset: 'opaque', next };
}

/** One page of targets and one of health for the upstream `llm`. */
function kongWith(targets: unknown[], healthEntries: unknown[]): nock.Scope {
  return nock(ADMIN)
    .get('/upstreams/llm/targets')
    .query({ size: '1000' })
    .reply(200, page(targets))
    .get('/upstreams/llm/health')
    .query({ size: '1000' })
    .reply(200, { node_id: 'node-1', ...page(healthEntries) });
}

async function expectError(options: AdminApiOptions = OPTIONS): Promise<string> {
  const result = await readUpstreamReplicas(options);
  if (result.ok) throw new Error('expected the read to fail, got ' + JSON.stringify(result.replicas));
  expect(result.error).not.toContain('\n');
  return result.error;
}

async function unusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

beforeEach(() => {
  nock.disableNetConnect();
});

afterEach(() => {
  nock.cleanAll();
  nock.enableNetConnect();
});

describe('readUpstreamReplicas: reading and joining', () => {
  it('reads one page of targets and one of health into replicas keyed by host:port', async () => {
    const scope = kongWith(
      [target('10.0.0.2:8000', 50), target('10.0.0.1:8000')],
      [health('10.0.0.2:8000', 'HEALTHY', 50), health('10.0.0.1:8000', 'HEALTHY')],
    );
    const result = await readUpstreamReplicas(OPTIONS);
    expect(result).toEqual({
      ok: true,
      replicas: [
        { id: '10.0.0.1:8000', address: '10.0.0.1:8000', weight: 100, health: 'healthy' },
        { id: '10.0.0.2:8000', address: '10.0.0.2:8000', weight: 50, health: 'healthy' },
      ],
    });
    expect(scope.isDone()).toBe(true);
  });

  it('maps every Kong health value, and a target missing from the health list is healthy', async () => {
    kongWith(
      [target('a.internal:8000'), target('b.internal:8000'), target('c.internal:8000'), target('d.internal:8000'), target('[::1]:8000')],
      [
        health('a.internal:8000', 'HEALTHY'),
        health('b.internal:8000', 'UNHEALTHY'),
        health('c.internal:8000', 'HEALTHCHECKS_OFF'),
        health('d.internal:8000', 'DNS_ERROR'),
      ],
    );
    const result = await readUpstreamReplicas(OPTIONS);
    expect(result.ok && result.replicas.map((r) => [r.id, r.health])).toEqual([
      ['[::1]:8000', 'healthy'],
      ['a.internal:8000', 'healthy'],
      ['b.internal:8000', 'unhealthy'],
      ['c.internal:8000', 'healthy'],
      ['d.internal:8000', 'unhealthy'],
    ]);
  });

  it('keeps weight-0 targets (the core never picks them)', async () => {
    kongWith([target('10.0.0.1:8000', 0), target('10.0.0.2:8000', 65535)], []);
    const result = await readUpstreamReplicas(OPTIONS);
    expect(result.ok && result.replicas.map((r) => [r.id, r.weight])).toEqual([
      ['10.0.0.1:8000', 0],
      ['10.0.0.2:8000', 65535],
    ]);
  });

  it('keeps the newest entry (listed first) when Kong lists a target twice', async () => {
    kongWith(
      [target('10.0.0.1:8000', 7), target('10.0.0.2:8000'), target('10.0.0.1:8000', 100)],
      [health('10.0.0.1:8000', 'UNHEALTHY', 7), health('10.0.0.1:8000', 'HEALTHY')],
    );
    const result = await readUpstreamReplicas(OPTIONS);
    expect(result.ok && result.replicas).toEqual([
      { id: '10.0.0.1:8000', address: '10.0.0.1:8000', weight: 7, health: 'unhealthy' },
      { id: '10.0.0.2:8000', address: '10.0.0.2:8000', weight: 100, health: 'healthy' },
    ]);
  });

  it('an upstream without targets is a successful read of an empty list', async () => {
    kongWith([], []);
    expect(await readUpstreamReplicas(OPTIONS)).toEqual({ ok: true, replicas: [] });
  });

  it('URL-encodes the upstream name in the path', async () => {
    // '#' would otherwise end the path and a space would reach the wire raw.
    const scope = nock(ADMIN)
      .get('/upstreams/my%20llm%232/targets')
      .query({ size: '1000' })
      .reply(200, page([target('10.0.0.1:8000')]))
      .get('/upstreams/my%20llm%232/health')
      .query({ size: '1000' })
      .reply(200, page([]));
    const result = await readUpstreamReplicas({ ...OPTIONS, upstream: 'my llm#2' });
    expect(result.ok).toBe(true);
    expect(scope.isDone()).toBe(true);
  });
});

describe('readUpstreamReplicas: pages', () => {
  // Kong's `next` carries the offset but not `size`; the client adds size back to every page.
  function threePages(base: string, prefix: string): nock.Scope {
    return nock(base)
      .get(prefix + '/upstreams/llm/targets')
      .query({ size: '1000' })
      .reply(200, page([target('10.0.0.1:8000')], '/upstreams/llm/targets?offset=p2'))
      .get(prefix + '/upstreams/llm/targets')
      .query({ offset: 'p2', size: '1000' })
      .reply(200, page([target('10.0.0.2:8000')], '/upstreams/llm/targets?offset=p3'))
      .get(prefix + '/upstreams/llm/targets')
      .query({ offset: 'p3', size: '1000' })
      .reply(200, page([target('10.0.0.3:8000', 5)]))
      .get(prefix + '/upstreams/llm/health')
      .query({ size: '1000' })
      .reply(200, page([health('10.0.0.1:8000', 'HEALTHY')], '/upstreams/llm/health?offset=h2'))
      .get(prefix + '/upstreams/llm/health')
      .query({ offset: 'h2', size: '1000' })
      .reply(200, page([health('10.0.0.3:8000', 'UNHEALTHY', 5)]));
  }

  const EXPECTED = [
    { id: '10.0.0.1:8000', address: '10.0.0.1:8000', weight: 100, health: 'healthy' },
    { id: '10.0.0.2:8000', address: '10.0.0.2:8000', weight: 100, health: 'healthy' },
    { id: '10.0.0.3:8000', address: '10.0.0.3:8000', weight: 5, health: 'unhealthy' },
  ];

  it('follows `next` over three pages of targets and two of health', async () => {
    const scope = threePages(ADMIN, '');
    expect(await readUpstreamReplicas(OPTIONS)).toEqual({ ok: true, replicas: EXPECTED });
    expect(scope.isDone()).toBe(true);
  });

  it('keeps the admin URL path prefix on every `next` page (Kong does not know the prefix)', async () => {
    const scope = threePages('https://gateway.test', '/kong-admin');
    const result = await readUpstreamReplicas({ ...OPTIONS, adminUrl: 'https://gateway.test/kong-admin/' });
    expect(result).toEqual({ ok: true, replicas: EXPECTED });
    expect(scope.isDone()).toBe(true);
  });

  it(`stops with an error when \`next\` never ends (${MAX_PAGES} pages)`, async () => {
    const scope = nock(ADMIN)
      .get('/upstreams/llm/targets')
      .query(true)
      .times(MAX_PAGES + 1)
      .reply(200, page([target('10.0.0.1:8000')], '/upstreams/llm/targets?offset=again'));
    const error = await expectError();
    expect(error).toMatch(/^targets: .*after 100 pages/);
    // Exactly the bound: the 101st interceptor is still pending.
    expect(scope.pendingMocks()).toHaveLength(1);
  });

  it('does not follow a `next` that points at another origin (the token would go with it)', async () => {
    nock(ADMIN)
      .get('/upstreams/llm/targets')
      .query(true)
      .reply(200, page([target('10.0.0.1:8000')], 'http://elsewhere.test/upstreams/llm/targets?offset=x'));
    expect(await expectError()).toBe('targets page 1: "next" is not an Admin API path (got "http://elsewhere.test/upstreams/llm/targets?offset=x")');
  });
});

describe('readUpstreamReplicas: the admin token', () => {
  it('sends Kong-Admin-Token on every request when set', async () => {
    const scope = nock(ADMIN, { reqheaders: { 'kong-admin-token': 's3cret' } })
      .get('/upstreams/llm/targets')
      .query({ size: '1000' })
      .reply(200, page([target('10.0.0.1:8000')], '/upstreams/llm/targets?offset=p2'))
      .get('/upstreams/llm/targets')
      .query({ offset: 'p2', size: '1000' })
      .reply(200, page([]))
      .get('/upstreams/llm/health')
      .query({ size: '1000' })
      .reply(200, page([]));
    const result = await readUpstreamReplicas({ ...OPTIONS, token: 's3cret' });
    expect(result.ok).toBe(true);
    expect(scope.isDone()).toBe(true);
  });

  it('sends no Kong-Admin-Token when the token is null', async () => {
    const scope = nock(ADMIN, { badheaders: ['kong-admin-token'] })
      .get('/upstreams/llm/targets')
      .query({ size: '1000' })
      .reply(200, page([target('10.0.0.1:8000')]))
      .get('/upstreams/llm/health')
      .query({ size: '1000' })
      .reply(200, page([]));
    const result = await readUpstreamReplicas(OPTIONS);
    expect(result.ok).toBe(true);
    expect(scope.isDone()).toBe(true);
  });
});

describe('readUpstreamReplicas: failures are one line each', () => {
  it('HTTP 401 names the request, the status and Kong\'s message', async () => {
    nock(ADMIN).get('/upstreams/llm/targets').query(true).reply(401, { message: 'Invalid credentials. Token or User credentials required' });
    expect(await expectError()).toBe('GET /upstreams/llm/targets: HTTP 401 (Invalid credentials. Token or User credentials required)');
  });

  it('HTTP 500 on a later page names the page', async () => {
    nock(ADMIN)
      .get('/upstreams/llm/targets')
      .query({ size: '1000' })
      .reply(200, page([target('10.0.0.1:8000')], '/upstreams/llm/targets?offset=p2'))
      .get('/upstreams/llm/targets')
      .query({ offset: 'p2', size: '1000' })
      .reply(500, '<html>\n<h1>Internal Server Error</h1>\n</html>');
    expect(await expectError()).toBe('GET /upstreams/llm/targets (page 2): HTTP 500');
  });

  it('fails the read when targets succeed but health fails (a list without health could route to dead targets)', async () => {
    nock(ADMIN)
      .get('/upstreams/llm/targets')
      .query(true)
      .reply(200, page([target('10.0.0.1:8000')]))
      .get('/upstreams/llm/health')
      .query(true)
      .reply(503, { message: 'name resolution failed' });
    expect(await expectError()).toBe('GET /upstreams/llm/health: HTTP 503 (name resolution failed)');
  });

  it('malformed JSON', async () => {
    nock(ADMIN).get('/upstreams/llm/targets').query(true).reply(200, '{"data": [', { 'Content-Type': 'application/json' });
    expect(await expectError()).toMatch(/^GET \/upstreams\/llm\/targets: malformed JSON/);
  });

  it('a page without a data array', async () => {
    nock(ADMIN).get('/upstreams/llm/targets').query(true).reply(200, { next: null });
    expect(await expectError()).toBe('targets page 1: not an object with a "data" array');
  });

  it('a target that is not host:port, on page 2', async () => {
    nock(ADMIN)
      .get('/upstreams/llm/targets')
      .query({ size: '1000' })
      .reply(200, page([target('10.0.0.1:8000')], '/upstreams/llm/targets?offset=p2'))
      .get('/upstreams/llm/targets')
      .query({ offset: 'p2', size: '1000' })
      .reply(200, page([target('10.0.0.2:8000'), target('10.0.0.3:8000'), target('10.0.0.4:8000'), target('http://10.0.0.5')]));
    expect(await expectError()).toBe('targets page 2: data[3].target is not a "host:port" string (got "http://10.0.0.5")');
  });

  it('a weight that is not a number', async () => {
    nock(ADMIN).get('/upstreams/llm/targets').query(true).reply(200, page([target('10.0.0.1:8000', '100' as unknown as number)]));
    expect(await expectError()).toBe('targets page 1: data[0].weight is not an integer 0-65535 (got "100")');
  });

  it('a health value Kong does not document', async () => {
    kongWith([target('10.0.0.1:8000')], [health('10.0.0.1:8000', 'MAYBE')]);
    expect(await expectError()).toBe(
      'health page 1: data[0].health is not one of HEALTHY, HEALTHCHECKS_OFF, UNHEALTHY, DNS_ERROR (got "MAYBE")',
    );
  });

  it('a response slower than timeoutMs', async () => {
    nock(ADMIN).get('/upstreams/llm/targets').query(true).delay(1000).reply(200, page([]));
    expect(await expectError({ ...OPTIONS, timeoutMs: 50 })).toBe('GET /upstreams/llm/targets: timed out after 50 ms');
  });

  it('a body that stalls after the headers (the timeout covers the body too)', async () => {
    const stalled = new Readable({ read() {} });
    stalled.push('{"data": [');
    nock(ADMIN).get('/upstreams/llm/targets').query(true).reply(200, () => stalled);
    expect(await expectError({ ...OPTIONS, timeoutMs: 50 })).toBe('GET /upstreams/llm/targets: timed out after 50 ms');
  }, 5000);

  it('connection refused', async () => {
    nock.enableNetConnect('127.0.0.1');
    const port = await unusedPort();
    expect(await expectError({ ...OPTIONS, adminUrl: 'http://127.0.0.1:' + port })).toBe('GET /upstreams/llm/targets: connection refused');
  });

  it('an admin URL that is not a URL', async () => {
    expect(await expectError({ ...OPTIONS, adminUrl: 'kong:8001' })).toBe('admin URL "kong:8001" is not http:// or https://');
    expect(await expectError({ ...OPTIONS, adminUrl: 'not a url' })).toBe('admin URL "not a url" is not a URL');
  });
});
