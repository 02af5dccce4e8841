// Admission on NGINX through the real nginx + njs (2 workers) and a real backend: a saturated pool
// holds a request in the waiting room (plugins/nginx/admission.ts, waiting.ts) until a slot frees;
// its deadline answers the configured status as OpenAI-style JSON with Retry-After; an unsaturated
// pool never enters the room; a client that disconnects while queued leaves the queue and is never
// sent; bands go strictly first and sheddable ones are refused at once; the status page and
// Prometheus show all of it. Runs under the njs engine and QuickJS (build/test-nginx-targets.js).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderNginxConfig } from '../plugins/nginx/generator/generate';
import { loadBalancerFile } from '../plugins/nginx/generator/load';
import { bandOf } from '../plugins/nginx/admission';
import { configOf } from './helpers/core';
import { fakeRequest } from './helpers/njs-request';
import { startBackends } from './helpers/backends';
import type { Backend, Backends } from './helpers/backends';
import { readStatus, request, startBalancer, waitFor } from './helpers/nginx-balancer';
import type { Balancer, Reply } from './helpers/nginx-balancer';

interface AdmissionSection {
  scope: string;
  waiting: Array<{ band: number; waiting: number }>;
  admittedAfterWait: number;
  rejected: Record<string, number>;
  left: number;
}

async function admissionOf(b: Balancer): Promise<AdmissionSection> {
  return ((await readStatus(b)) as unknown as { admission: AdmissionSection }).admission;
}

function waitingNow(section: AdmissionSection): number {
  return section.waiting.reduce((sum, row) => sum + row.waiting, 0);
}

const MAX_WAIT_S = 2;

describe('admission on NGINX: a request\'s band', () => {
  const config = configOf({ admission: { enabled: true, priority: 2, consumer_priorities: [{ consumer: 'vip', priority: 9 }] } });
  it.each<[string, Record<string, string>, number, boolean]>([
    ['the variable when it holds a band', { band: '-7', who: 'vip' }, -7, false],
    ['the listed consumer when the variable is empty', { band: '', who: 'vip' }, 9, false],
    ['admission.priority for anyone else', { who: 'alice' }, 2, false],
    ['admission.priority, with a warning, for a value that is no band', { band: '150' }, 2, true],
    ['admission.priority, with a warning, for text', { band: 'gold' }, 2, true],
  ])('%s', (_, variables, band, warns) => {
    const warnings: string[] = [];
    const r = { ...fakeRequest(variables), warn: (m: string) => void warnings.push(m) };
    expect(bandOf(r, config, 'band', 'who')).toBe(band);
    expect(warnings.length > 0).toBe(warns);
  });
});

describe('admission on NGINX: generated config', () => {
  const base = { replicas: [{ id: 'a', address: '127.0.0.1:9001' }], admission: { enabled: true, saturation: 'concurrency', max_concurrency: 2, fairness: 'none' } };
  function load(extra: Record<string, unknown>) {
    return loadBalancerFile(JSON.stringify({ ...base, ...extra }));
  }

  it('renders the waiting zone, the wait / admitted locations and the room server on its unix socket', () => {
    const loaded = load({});
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
    const text = renderNginxConfig({ config: loaded.config, nginx: { ...loaded.nginx, js_path: '/js', config_json: '/etc/llmb/c.json' }, source: 'spec' }, 'full');
    expect(text).toContain('js_shared_dict_zone zone=llm_balancer_waiting:1m type=number timeout=70s;');
    expect(text).toContain('js_content llm_balancer.route;');
    expect(text).toContain('location @llm_balancer_wait {');
    expect(text).toContain('error_page 409 = @llm_balancer_admitted;');
    expect(text).toContain('js_content llm_balancer.admitted;');
    expect(text).toContain('server "unix:/etc/llmb/c.json.sock";');
    expect(text).toContain('listen "unix:/etc/llmb/c.json.sock";');
    expect(text).toContain('js_content llm_balancer.wait;');
  });

  it('refuses bad waiting-room options with their field path', () => {
    const bad = load({ nginx: { waiting_room_socket: 'relative.sock', priority_variable: 'has-dash' } });
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    const paths = bad.errors.map((e) => e.path);
    expect(paths).toContain('nginx.waiting_room_socket');
    expect(paths).toContain('nginx.priority_variable');
    const long = load({ nginx: { waiting_room_socket: '/' + 'x'.repeat(120) } });
    expect(!long.ok && long.errors[0].message).toMatch(/at most 100 bytes/);
    const off = loadBalancerFile(JSON.stringify({ replicas: base.replicas, nginx: { priority_variable: 'p' } }));
    expect(!off.ok && off.errors[0]).toMatchObject({ path: 'nginx.priority_variable', message: expect.stringMatching(/only with admission.enabled/) });
  });

  it('refuses fairness or bands by consumer without a verified identity, and says how; route bands are Kong\'s', () => {
    const unverified = load({ admission: { ...base.admission, fairness: 'consumer' } });
    expect(!unverified.ok && unverified.errors[0]).toMatchObject({ path: 'admission.fairness', message: expect.stringMatching(/verified identity.*admission.fairness: none/) });
    const ranked = load({ admission: { ...base.admission, consumer_priorities: [{ consumer: 'vip', priority: 5 }] } });
    expect(!ranked.ok && ranked.errors[0]).toMatchObject({ path: 'admission.consumer_priorities', message: expect.stringMatching(/could name a listed consumer/) });
    const routes = load({ admission: { ...base.admission, route_priorities: [{ route: 'premium', priority: 5 }] } });
    expect(!routes.ok && routes.errors[0]).toMatchObject({ path: 'admission.route_priorities', message: expect.stringMatching(/Kong's.*nginx.priority_variable/) });
    expect(load({ admission: { ...base.admission, fairness: 'consumer' }, nginx: { consumer_variable_verified: true } }).ok).toBe(true);
  });
});

/** One replica behind real nginx whose pool saturates at one request in flight. */
async function oneSlotRoom(admission: Record<string, unknown>, nginx: Record<string, unknown>, label: string, httpDirectives?: string[]): Promise<{ backends: Backends; replica: Backend; b: Balancer }> {
  const backends = await startBackends(1);
  const replica = backends.list[0];
  const b = await startBalancer(
    {
      replicas: [{ id: 'a', address: replica.address }],
      strategy: 'least-connections',
      active_health: { enabled: false },
      admission: { enabled: true, saturation: 'concurrency', max_concurrency: 1, ...admission },
      nginx,
    },
    label,
    httpDirectives ? { httpDirectives } : {},
  );
  return { backends, replica, b };
}

describe('admission on NGINX: the waiting room in real nginx', () => {
  let backends: Backends;
  let replica: Backend;
  let b: Balancer;

  beforeAll(async () => {
    // The test's stand-in for an auth layer that sets the band (never a client header in production).
    ({ backends, replica, b } = await oneSlotRoom({ max_wait_s: MAX_WAIT_S, fairness: 'none' }, { priority_variable: 'llmb_priority' }, 'admission', ['  map $http_x_test_band $llmb_priority { default $http_x_test_band; }']));
  }, 30_000);

  afterAll(async () => {
    await b?.stop();
    await backends?.close();
  });

  const url = () => `http://127.0.0.1:${b.port}/v1/chat/completions`;
  const body = (tag: string) => JSON.stringify({ model: 'm', tag, messages: [{ role: 'user', content: tag }] });
  const send = (tag: string, headers: Record<string, string> = {}, extra: { abortAfterMs?: number } = {}): Promise<Reply> =>
    request(url(), { body: body(tag), headers: { 'content-type': 'application/json', ...headers }, timeoutMs: 15_000, ...extra });

  /** Holds the replica's one slot with a request it does not answer yet. */
  async function occupy(tag: string): Promise<{ reply: Promise<Reply> }> {
    replica.reset();
    replica.behave({ mode: 'hold' });
    const held = send(tag);
    await waitFor('the replica to hold the first request', () => replica.open === 1);
    // Wrapped: an async function returning the promise itself would wait for it.
    return { reply: held };
  }

  it('an unsaturated pool never enters the room', async () => {
    replica.reset();
    const before = await admissionOf(b);
    const reply = await send('quick');
    expect(reply.status).toBe(200);
    const after = await admissionOf(b);
    expect(after.admittedAfterWait).toBe(before.admittedAfterWait);
    expect(waitingNow(after)).toBe(0);
    expect(after.scope).toBe('this nginx, all its workers');
  });

  it('a saturated pool holds the request, sends nothing for it, and dispatches it when the slot frees', async () => {
    const first = (await occupy('first')).reply;
    const before = await admissionOf(b);
    const second = send('second');
    await waitFor('the second request to wait', async () => waitingNow(await admissionOf(b)) === 1);
    expect(replica.requests).toBe(1);
    replica.behave({ mode: 'json' });
    replica.release();
    expect((await first).status).toBe(200);
    const reply = await second;
    expect(reply.status).toBe(200);
    // The waiting request reached the replica with its body intact.
    expect(replica.bodies[1]).toBe(body('second'));
    expect(JSON.parse(reply.body)).toMatchObject({ backend: replica.name });
    const after = await admissionOf(b);
    expect(after.admittedAfterWait - before.admittedAfterWait).toBe(1);
    expect(waitingNow(after)).toBe(0);
  });

  it('past max_wait_s the request gets 429 JSON with Retry-After, and was never sent', async () => {
    const first = (await occupy('first')).reply;
    const before = await admissionOf(b);
    const started = Date.now();
    const reply = await send('late');
    const waited = Date.now() - started;
    expect(reply.status).toBe(429);
    expect(reply.headers['content-type']).toMatch(/application\/json/);
    expect(reply.headers['retry-after']).toBe(String(MAX_WAIT_S));
    expect(JSON.parse(reply.body)).toMatchObject({ error: { type: 'rate_limit_error', code: 'queue_timeout' } });
    // Its deadline bounds the wait (generous margins: a bound, not a speed).
    expect(waited).toBeGreaterThanOrEqual(MAX_WAIT_S * 1000 - 100);
    expect(waited).toBeLessThan(MAX_WAIT_S * 1000 + 3000);
    expect(replica.requests).toBe(1);
    expect((await admissionOf(b)).rejected.timeout - before.rejected.timeout).toBe(1);
    replica.behave({ mode: 'json' });
    replica.release();
    expect((await first).status).toBe(200);
  });

  it('a client that disconnects while queued leaves the queue and is never sent', async () => {
    const first = (await occupy('first')).reply;
    const before = await admissionOf(b);
    const gone = await send('gone', {}, { abortAfterMs: 400 });
    expect(gone.status).toBe(0);
    await waitFor('the room to see the client leave', async () => {
      const now = await admissionOf(b);
      return now.left - before.left === 1 && waitingNow(now) === 0;
    });
    replica.behave({ mode: 'json' });
    replica.release();
    expect((await first).status).toBe(200);
    // A later request goes at once: nothing of the one that left holds a place.
    expect((await send('after')).status).toBe(200);
    expect(replica.bodies.some((text) => text.includes('"gone"'))).toBe(false);
  });

  it('a higher band goes first; a sheddable band is refused at once', async () => {
    const first = (await occupy('first')).reply;
    const low = send('low', { 'x-test-band': '0' });
    await waitFor('the low band to wait', async () => waitingNow(await admissionOf(b)) === 1);
    const high = send('high', { 'x-test-band': '10' });
    await waitFor('both to wait', async () => waitingNow(await admissionOf(b)) === 2);
    expect((await admissionOf(b)).waiting).toEqual([
      { band: 10, waiting: 1 },
      { band: 0, waiting: 1 },
    ]);
    const shed = await send('shed', { 'x-test-band': '-5' });
    expect(shed.status).toBe(429);
    expect(JSON.parse(shed.body)).toMatchObject({ error: { code: 'shed' } });
    replica.behave({ mode: 'json' });
    replica.release();
    expect((await first).status).toBe(200);
    expect((await high).status).toBe(200);
    expect((await low).status).toBe(200);
    const order = replica.bodies.map((text) => (JSON.parse(text) as { tag: string }).tag);
    expect(order).toEqual(['first', 'high', 'low']);
  });

  it('Prometheus shows the waiting room, and the module logged no error', async () => {
    const text = (await request(`http://127.0.0.1:${b.port}/llm-balancer/metrics`)).body;
    expect(text).toMatch(/^llm_balancer_admission_waiting_total_now 0$/m);
    expect(text).toMatch(/^llm_balancer_admission_admitted_after_wait_total [1-9]\d*$/m);
    expect(text).toMatch(/^llm_balancer_admission_rejected_total\{reason="timeout"\} 1$/m);
    expect(text).toMatch(/^llm_balancer_admission_rejected_total\{reason="shed"\} 1$/m);
    expect(text).toMatch(/^llm_balancer_admission_left_total 1$/m);
    expect(b.moduleErrors()).toEqual([]);
  });
});

describe('admission on NGINX: turns across tenants', () => {
  let backends: Backends;
  let replica: Backend;
  let b: Balancer;

  beforeAll(async () => {
    // The test's stand-in for an auth layer that verified the tenant.
    ({ backends, replica, b } = await oneSlotRoom(
      { max_wait_s: 10, fairness: 'consumer', consumer_priorities: [{ consumer: 'vip', priority: 7 }] },
      { consumer_variable: 'http_x_test_tenant', consumer_variable_verified: true },
      'admission-fair',
    ));
  }, 30_000);

  afterAll(async () => {
    await b?.stop();
    await backends?.close();
  });

  it('a tenant with three waiting and one with one take turns (the quiet one goes second, not last); a listed consumer goes first', async () => {
    const url = `http://127.0.0.1:${b.port}/v1/chat/completions`;
    const send = (tag: string, tenant: string) =>
      request(url, { body: JSON.stringify({ model: 'm', tag, messages: [] }), headers: { 'content-type': 'application/json', 'x-test-tenant': tenant }, timeoutMs: 15_000 });
    replica.behave({ mode: 'hold' });
    const first = send('first', 'noisy');
    await waitFor('the replica to hold the first request', () => replica.open === 1);
    const waiting: Array<Promise<Reply>> = [];
    for (const [tag, tenant] of [['noisy-1', 'noisy'], ['noisy-2', 'noisy'], ['noisy-3', 'noisy'], ['quiet-1', 'quiet'], ['vip-1', 'vip']]) {
      const count = waiting.length + 1;
      waiting.push(send(tag, tenant));
      await waitFor(`${count} to wait`, async () => waitingNow(await admissionOf(b)) === count);
    }
    replica.behave({ mode: 'json' });
    replica.release();
    expect((await first).status).toBe(200);
    for (const reply of await Promise.all(waiting)) expect(reply.status).toBe(200);
    const order = replica.bodies.map((text) => (JSON.parse(text) as { tag: string }).tag);
    expect(order).toEqual(['first', 'vip-1', 'noisy-1', 'quiet-1', 'noisy-2', 'noisy-3']);
    expect(b.moduleErrors()).toEqual([]);
  });
});
