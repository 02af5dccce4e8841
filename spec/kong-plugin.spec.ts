// The Kong plugin class against a scripted PDK (each method records its call). The real
// plugin-server protocol is exercised by spec/kong-bundle.spec.ts; this pins the adapter's own
// promises: it routes with set_target, answers 503 with an OpenAI-style body instead of failing
// open, and records outcomes so in-flight counts return to 0.
import { describe, expect, it, vi } from 'vitest';
import { IDLE_RELEASE_MS, Plugin, balancerStatus, releaseIdleStates } from '../plugins/kong/index';
import { runningHealthProbers } from '../plugins/kong/health-prober';
import { runningMetricsScrapers } from '../plugins/kong/metrics-scraper';
import type { KongPdk } from '../plugins/kong/pdk';

interface Call {
  method: string;
  args: unknown[];
}

function fakeKong(
  overrides: {
    headers?: Record<string, string>;
    status?: number;
    proxyMs?: number;
    failTarget?: boolean;
    tries?: unknown[];
    service?: { id: string; retries?: number; connect_timeout?: number; write_timeout?: number; read_timeout?: number };
    path?: string;
    query?: Record<string, string>;
    body?: string;
    source?: string;
    /** started_at of the log entry (ms since the epoch). */
    startedAt?: number;
  } = {},
) {
  const calls: Call[] = [];
  const shared: Record<string, unknown> = {};
  const record =
    <T>(method: string, result: T) =>
    async (...args: unknown[]): Promise<T> => {
      calls.push({ method, args });
      return result;
    };
  const kong: KongPdk = {
    request: {
      getHeaders: record<Record<string, string>>('request.getHeaders', overrides.headers ?? {}),
      getQuery: record<Record<string, string>>('request.getQuery', overrides.query ?? {}),
      getPath: record<string>('request.getPath', overrides.path ?? '/v1/chat/completions'),
      getMethod: record<string>('request.getMethod', 'POST'),
      getHeader: record<string | null>('request.getHeader', null),
      getRawBody: record<Uint8Array | null>('request.getRawBody', new TextEncoder().encode(overrides.body ?? '')),
    },
    client: { getIp: record('client.getIp', '192.0.2.1'), getConsumer: record<{ id?: string } | null>('client.getConsumer', null) },
    router: { getRoute: record<{ id?: string; name?: string } | null>('router.getRoute', { id: 'route-id', name: 'llm-route' }) },
    service: {
      setTarget: async (...args: unknown[]) => {
        calls.push({ method: 'service.setTarget', args });
        if (overrides.failTarget) throw new Error('rpc broke');
        return null;
      },
      setRetries: record('service.setRetries', null),
      setTimeouts: record('service.setTimeouts', null),
      request: { setRawBody: record('service.request.setRawBody', null) },
    },
    response: {
      exit: record('response.exit', null),
      getStatus: record('response.getStatus', overrides.status ?? 200),
      getSource: record('response.getSource', overrides.source ?? 'service'),
    },
    ctx: {
      shared: {
        get: async (key: string) => {
          calls.push({ method: 'ctx.shared.get', args: [key] });
          return shared[key];
        },
        set: async (key: string, value: unknown) => {
          shared[key] = value;
          return null;
        },
      },
    },
    log: {
      serialize: async () =>
        JSON.stringify({ response: { status: overrides.status ?? 200 }, upstream_status: String(overrides.status ?? 200), latencies: { proxy: overrides.proxyMs ?? 42 }, tries: overrides.tries, service: overrides.service, started_at: overrides.startedAt }),
      err: record('log.err', null),
      warn: record('log.warn', null),
      notice: record('log.notice', null),
    },
  };
  return { kong, calls };
}

const REPLICAS = [
  { address: '127.0.0.1:9001', weight: 1 },
  { address: '[::1]:9002', weight: 1 },
];

describe('Kong plugin (PDK adapter)', () => {
  it('sets the target to the picked replica, host and port apart', async () => {
    const plugin = new Plugin({ __plugin_id: 'p-route', strategy: 'round-robin', replicas: REPLICAS });
    const first = fakeKong();
    const second = fakeKong();
    await plugin.access(first.kong);
    await plugin.access(second.kong);
    const targets = [first, second].map((k) => k.calls.find((c) => c.method === 'service.setTarget')?.args);
    expect(targets).toEqual([
      ['127.0.0.1', 9001],
      ['::1', 9002],
    ]);
  });

  it('keys stickiness on the header the config names', async () => {
    const plugin = new Plugin({ __plugin_id: 'p-sticky', strategy: 'consistent-hash', hash_key: { source: 'header', name: 'X-Session' }, replicas: REPLICAS });
    const targets = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const { kong, calls } = fakeKong({ headers: { 'X-Session': 'abc' } });
      await plugin.access(kong);
      targets.add(JSON.stringify(calls.find((c) => c.method === 'service.setTarget')?.args));
      // Each request completes before the next: with requests piling up, the bounded load
      // (balance_factor 1.25) would rightly move the key.
      await plugin.log(kong);
    }
    expect(targets.size).toBe(1);
  });

  it('answers 503 with an OpenAI-style JSON error when no replica is healthy (never proxies)', async () => {
    // One replica, ejected by its first failure: nothing is left to route to. (A list whose every
    // weight is 0 is refused by the validator, so it cannot stand in for "none healthy".)
    const plugin = new Plugin({ __plugin_id: 'p-empty', strategy: 'least-connections', replicas: [{ address: '127.0.0.1:1' }], passive_health: { consecutive_failures: 1 } });
    const failing = fakeKong({ status: 502 });
    await plugin.access(failing.kong);
    await plugin.log(failing.kong);
    expect(failing.calls.find((c) => c.method === 'service.setTarget')).toBeDefined();
    const { kong, calls } = fakeKong();
    await plugin.access(kong);
    expect(calls.find((c) => c.method === 'service.setTarget')).toBeUndefined();
    const exit = calls.find((c) => c.method === 'response.exit');
    expect(exit?.args[0]).toBe(503);
    expect(JSON.parse(exit?.args[1] as string)).toMatchObject({ error: { type: 'service_unavailable', code: 'no_healthy_replica' } });
    // A retry can help once the ejection ends (base_ejection_s, 30 s): Retry-After says when.
    expect(exit?.args[2]).toEqual({ 'Content-Type': 'application/json', 'Retry-After': '30' });
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['the only replica ejected for 30 s: retry when the ejection ends', {}, '30'],
    ['... unless an active probe may bring it back sooner (every 5 s)', { active_health: { enabled: true, interval_s: 5, timeout_s: 1 } }, '5'],
  ])('Retry-After: %s', async (what, extra, retryAfter) => {
    // Port 1: nothing listens, so the active probes (when on) fail and change nothing here.
    const plugin = new Plugin(Object.assign({ __plugin_id: 'p-retry-after-' + what, strategy: 'round-robin', replicas: [{ address: '127.0.0.1:1' }], passive_health: { consecutive_failures: 1, base_ejection_s: 30 } }, extra));
    const failing = fakeKong({ status: 500 });
    await plugin.access(failing.kong);
    await plugin.log(failing.kong);
    const { kong, calls } = fakeKong();
    await plugin.access(kong);
    const exit = calls.find((c) => c.method === 'response.exit');
    expect(exit?.args[0]).toBe(503);
    expect(JSON.parse(exit?.args[1] as string)).toMatchObject({ error: { type: 'service_unavailable', code: 'no_healthy_replica' } });
    expect((exit?.args[2] as Record<string, string>)['Retry-After']).toBe(retryAfter);
  });

  it('answers 503 for an invalid configuration and logs the field errors', async () => {
    const plugin = new Plugin({ __plugin_id: 'p-bad', strategy: 'least-conn', replicas: REPLICAS });
    const { kong, calls } = fakeKong();
    await plugin.access(kong);
    const exit = calls.find((c) => c.method === 'response.exit');
    expect(exit?.args[0]).toBe(503);
    expect(JSON.parse(exit?.args[1] as string)).toMatchObject({ error: { message: expect.stringContaining('invalid plugin configuration'), type: 'service_unavailable', code: 'internal_error' } });
    // Retrying cannot help until the configuration is fixed: no Retry-After.
    expect(exit?.args[2]).toEqual({ 'Content-Type': 'application/json' });
    expect(String(calls.find((c) => c.method === 'log.err')?.args[0])).toContain('strategy: must be one of');
  });

  it('turns an internal failure into a 503 instead of letting Kong fail open to the default host', async () => {
    const plugin = new Plugin({ __plugin_id: 'p-throw', replicas: REPLICAS });
    const { kong, calls } = fakeKong({ failTarget: true });
    await expect(plugin.access(kong)).resolves.toBeUndefined();
    const exit = calls.find((c) => c.method === 'response.exit');
    expect(exit?.args[0]).toBe(503);
    expect(JSON.parse(exit?.args[1] as string)).toMatchObject({ error: { type: 'service_unavailable', code: 'internal_error' } });
    expect((exit?.args[2] as Record<string, string>)['Retry-After']).toBe('1');
  });

  it('records the outcome in the log phase: least-connections sees the load go and come back', async () => {
    const plugin = new Plugin({ __plugin_id: 'p-log', strategy: 'least-connections', replicas: REPLICAS });
    const open = [fakeKong(), fakeKong(), fakeKong()];
    for (const request of open) await plugin.access(request.kong);
    const picked = open.map((r) => JSON.stringify(r.calls.find((c) => c.method === 'service.setTarget')?.args));
    // Three requests over two idle replicas: 2 + 1.
    expect(new Set(picked).size).toBe(2);
    for (const request of open) await plugin.log(request.kong);
    // All ended: both replicas are idle again, so the next two requests split evenly.
    const next = [fakeKong(), fakeKong()];
    for (const request of next) await plugin.access(request.kong);
    const after = next.map((r) => JSON.stringify(r.calls.find((c) => c.method === 'service.setTarget')?.args));
    expect(new Set(after).size).toBe(2);
  });

  it("finds the pick from Kong's try when its address names one replica, without a ctx.shared round trip", async () => {
    const plugin = new Plugin({ __plugin_id: 'p-tries', strategy: 'least-connections', replicas: REPLICAS });
    const first = fakeKong({ tries: [{ ip: '127.0.0.1', port: 9001 }] });
    await plugin.access(first.kong);
    const target = first.calls.find((c) => c.method === 'service.setTarget')?.args;
    // Whatever was picked, the log phase is told the try went to 127.0.0.1:9001 or [::1]:9002.
    const tried = target?.[0] === '::1' ? { ip: '::1', port: 9002 } : { ip: '127.0.0.1', port: 9001 };
    const log = fakeKong({ tries: [tried] });
    await plugin.log(log.kong);
    expect(log.calls.map((c) => c.method)).not.toContain('ctx.shared.get');
  });

  it('asks ctx.shared for the pick when no try reached a replica, and still ends the attempt', async () => {
    const plugin = new Plugin({ __plugin_id: 'p-notry', strategy: 'least-connections', replicas: REPLICAS });
    const request = fakeKong({ status: 429 });
    await plugin.access(request.kong);
    await plugin.log(request.kong);
    expect(request.calls.map((c) => c.method)).toContain('ctx.shared.get');
    // Ended: both replicas idle again, so two new requests split over both.
    const next = [fakeKong(), fakeKong()];
    for (const r of next) await plugin.access(r.kong);
    expect(new Set(next.map((r) => JSON.stringify(r.calls.find((c) => c.method === 'service.setTarget')?.args))).size).toBe(2);
  });

  it('skips set_retries while the one Service it serves already has the wanted retries, and not otherwise', async () => {
    const plugin = new Plugin({ __plugin_id: 'p-retries', strategy: 'round-robin', replicas: REPLICAS });
    const setRetries = async (service?: { id: string; retries: number }) => {
      const r = fakeKong({ service });
      await plugin.access(r.kong);
      await plugin.log(r.kong);
      return r.calls.filter((c) => c.method === 'service.setRetries').map((c) => c.args[0]);
    };
    // Nothing known yet, then a Service with Kong's default 5 retries: called every time.
    expect(await setRetries({ id: 'svc-1', retries: 5 })).toEqual([0]);
    expect(await setRetries({ id: 'svc-1', retries: 0 })).toEqual([0]);
    // The last entry showed retries 0 on the one Service: the call would change nothing.
    expect(await setRetries({ id: 'svc-1', retries: 0 })).toEqual([]);
    // The Service was edited back to 5: the next request after that entry calls it again.
    expect(await setRetries({ id: 'svc-1', retries: 5 })).toEqual([]);
    expect(await setRetries({ id: 'svc-1', retries: 0 })).toEqual([0]);
    // A second Service behind the same plugin (a global plugin): always called from then on.
    expect(await setRetries({ id: 'svc-2', retries: 0 })).toEqual([]);
    expect(await setRetries({ id: 'svc-1', retries: 0 })).toEqual([0]);
    expect(await setRetries({ id: 'svc-1', retries: 0 })).toEqual([0]);
    // An entry without a Service: called.
    const other = new Plugin({ __plugin_id: 'p-retries-none', strategy: 'round-robin', replicas: REPLICAS });
    const r = fakeKong();
    await other.access(r.kong);
    await other.log(r.kong);
    const again = fakeKong();
    await other.access(again.kong);
    expect(again.calls.filter((c) => c.method === 'service.setRetries')).toHaveLength(1);
  });
});

describe('timeouts (kong.service.set_timeouts)', () => {
  const timeoutsOf = (calls: Call[]) => calls.filter((c) => c.method === 'service.setTimeouts').map((c) => c.args);
  const streaming = JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] });
  const whole = JSON.stringify({ model: 'm', stream: false, messages: [{ role: 'user', content: 'hi' }] });

  it.each<[string, Record<string, unknown>, string | undefined, unknown[]]>([
    ['defaults, a strategy that reads no body: the body is read (kong.stream_timeouts), stream_idle_s', { strategy: 'round-robin' }, streaming, [3000, 60000, 60000]],
    ['kong.stream_timeouts off, a strategy that reads no body: response_s for all', { strategy: 'round-robin', kong: { stream_timeouts: false } }, streaming, [3000, 300000, 300000]],
    ['a body-reading strategy and "stream": true: stream_idle_s', { strategy: 'least-tokens' }, streaming, [3000, 60000, 60000]],
    ['a body-reading strategy, "stream": false: response_s', { strategy: 'least-tokens' }, whole, [3000, 300000, 300000]],
    ['kong.stream_timeouts reads the body for any strategy', { strategy: 'round-robin', kong: { stream_timeouts: true } }, streaming, [3000, 60000, 60000]],
    ['kong.stream_timeouts, no body', { strategy: 'round-robin', kong: { stream_timeouts: true } }, undefined, [3000, 300000, 300000]],
    ['configured seconds become whole milliseconds', { strategy: 'least-tokens', timeouts: { connect_s: 0.25, response_s: 20, stream_idle_s: 2.5 } }, streaming, [250, 2500, 2500]],
  ])('%s', async (what, config, body, expected) => {
    const plugin = new Plugin(Object.assign({ __plugin_id: 'p-timeouts-' + what, replicas: REPLICAS }, config));
    const { kong, calls } = fakeKong({ body });
    await plugin.access(kong);
    expect(timeoutsOf(calls)).toEqual([expected]);
    // set_target stays the last call: Kong proxies once access returns.
    expect(calls[calls.length - 1].method).toBe('service.setTarget');
  });

  it('never reads the body only for timeouts when kong.stream_timeouts is off', async () => {
    const plugin = new Plugin({ __plugin_id: 'p-timeouts-nobody', strategy: 'least-connections', replicas: REPLICAS, kong: { stream_timeouts: false } });
    const { kong, calls } = fakeKong({ body: streaming });
    await plugin.access(kong);
    expect(calls.map((c) => c.method)).not.toContain('request.getRawBody');
  });

  it('skips set_timeouts while the one Service it serves already has these timeouts', async () => {
    const plugin = new Plugin({ __plugin_id: 'p-timeouts-skip', strategy: 'least-tokens', replicas: REPLICAS });
    const service = { id: 'svc-1', retries: 0, connect_timeout: 3000, write_timeout: 300000, read_timeout: 300000 };
    const run = async (body: string, svc = service) => {
      const r = fakeKong({ body, service: svc });
      await plugin.access(r.kong);
      await plugin.log(r.kong);
      return timeoutsOf(r.calls);
    };
    // Nothing known yet: called. Then the Service's values match a non-streaming request: skipped.
    expect(await run(whole)).toEqual([[3000, 300000, 300000]]);
    expect(await run(whole)).toEqual([]);
    // A streaming request wants another read timeout than the Service's: called.
    expect(await run(streaming)).toEqual([[3000, 60000, 60000]]);
    // The Service edited (Kong's default 60 s): called again after its first entry.
    expect(await run(whole, Object.assign({}, service, { read_timeout: 60000 }))).toEqual([]);
    expect(await run(whole)).toEqual([[3000, 300000, 300000]]);
  });
});

describe("the log phase tells nginx's 502/504 from the replica's (kong.response.get_source)", () => {
  // Real Kong records a try's failure only when it starts another: with retries 0 the only try of
  // a refused attempt carries no state, and upstream_status holds nginx's 502.
  const config = { strategy: 'round-robin', replicas: REPLICAS, passive_health: { consecutive_failures: 1, failure_kinds: ['connect-error', 'timeout'], max_ejected_percent: 50 } };

  it.each<[string, number, string, string]>([
    ['nginx could not connect (source "error"): a connect error, the replica is ejected', 502, 'error', 'ejected'],
    ['nginx timed out (source "error"): a timeout, ejected', 504, 'error', 'ejected'],
    ["the replica's own 502 (source \"service\"): a 5xx, not a connect error", 502, 'service', 'healthy'],
  ])('%s', async (what, status, source, state) => {
    const pluginId = 'p-source-' + what;
    const plugin = new Plugin(Object.assign({ __plugin_id: pluginId }, config));
    const request = fakeKong();
    await plugin.access(request.kong);
    const target = request.calls.find((c) => c.method === 'service.setTarget')?.args;
    const tried = target?.[0] === '::1' ? { ip: '::1', port: 9002 } : { ip: '127.0.0.1', port: 9001 };
    const log = fakeKong({ status, source, tries: [tried] });
    await plugin.log(log.kong);
    expect(log.calls.map((c) => c.method)).toContain('response.getSource');
    const id = target?.[0] === '::1' ? '[::1]:9002' : '127.0.0.1:9001';
    expect(balancerStatus(pluginId)?.find((r) => r.id === id)?.state).toBe(state);
  });

  it('a 200 whose request began before the replica refused a connection (a stream its crash cut) is neutral: refusals around it still eject', async () => {
    const run = async (pluginId: string, stale: boolean) => {
      const plugin = new Plugin({ __plugin_id: pluginId, strategy: 'round-robin', replicas: [REPLICAS[0]], passive_health: { consecutive_connect_errors: 2 } });
      const tried = [{ ip: '127.0.0.1', port: 9001 }];
      const stream = fakeKong();
      await plugin.access(stream.kong);
      const began = Date.now() - 5_000;
      const refused = fakeKong({ status: 502, source: 'error', tries: tried });
      await plugin.access(refused.kong);
      await plugin.log(refused.kong);
      // The stream that was on the replica when it died: cut after its headers, logged with its 200.
      await plugin.log(fakeKong({ status: 200, tries: tried, startedAt: stale ? began : Date.now() + 1_000 }).kong);
      const again = fakeKong({ status: 502, source: 'error', tries: tried });
      await plugin.access(again.kong);
      await plugin.log(again.kong);
      return balancerStatus(pluginId)?.[0].state;
    };
    expect(await run('p-stale-answer', true)).toBe('ejected');
    // An answer to a request that began after the refusal does show the replica answering.
    expect(await run('p-fresh-answer', false)).toBe('healthy');
  });

  it('asks for the source only for a 502 or 504', async () => {
    const plugin = new Plugin({ __plugin_id: 'p-source-200', strategy: 'round-robin', replicas: REPLICAS });
    for (const status of [200, 500, 503, 429]) {
      const request = fakeKong({ status });
      await plugin.access(request.kong);
      await plugin.log(request.kong);
      expect(request.calls.map((c) => c.method)).not.toContain('response.getSource');
    }
  });
});

describe('kong.status_path', () => {
  it('answers the status as JSON or Prometheus text on its path, proxies everything else, and costs no PDK call when unset', async () => {
    const plugin = new Plugin({ __plugin_id: 'p-status', strategy: 'least-tokens', replicas: REPLICAS, kong: { status_path: '/llm-balancer/status' } });
    // One request in flight first, so the status has something to show.
    const proxied = fakeKong({ path: '/v1/chat/completions' });
    await plugin.access(proxied.kong);
    expect(proxied.calls.some((c) => c.method === 'service.setTarget')).toBe(true);
    const json = fakeKong({ path: '/llm-balancer/status' });
    await plugin.access(json.kong);
    expect(json.calls.some((c) => c.method === 'service.setTarget')).toBe(false);
    const exit = json.calls.find((c) => c.method === 'response.exit');
    expect(exit?.args[0]).toBe(200);
    expect(exit?.args[2]).toEqual({ 'Content-Type': 'application/json' });
    const doc = JSON.parse(String(exit?.args[1]));
    expect(doc.strategy).toBe('least-tokens');
    expect(doc.replicas.map((r: { address: string }) => r.address)).toEqual(['127.0.0.1:9001', '[::1]:9002']);
    expect(doc.replicas.reduce((sum: number, r: { in_flight: number }) => sum + r.in_flight, 0)).toBe(1);
    expect(doc.replicas[0]).not.toHaveProperty('upstream');
    // The request above had no OpenAI body: counted, and shown.
    expect(doc.requests_without_llm_body).toBe(1);
    const prom = fakeKong({ path: '/llm-balancer/status', query: { format: 'prometheus' } });
    await plugin.access(prom.kong);
    const text = prom.calls.find((c) => c.method === 'response.exit');
    expect(String(text?.args[1])).toContain('llm_balancer_replica_in_flight{replica="127.0.0.1:9001",address="127.0.0.1:9001"}');
    expect(String(text?.args[1])).toContain('llm_balancer_requests_without_llm_body_total 1');
    expect((text?.args[2] as Record<string, string>)['Content-Type']).toContain('text/plain; version=0.0.4');
    // Off by default, and with model discovery off too (it answers GET .../models): not even the path is asked for.
    const plain = new Plugin({ __plugin_id: 'p-status-off', strategy: 'round-robin', replicas: REPLICAS, models: { discovery: false } });
    const off = fakeKong({ path: '/llm-balancer/status' });
    await plain.access(off.kong);
    expect(off.calls.some((c) => c.method === 'request.getPath')).toBe(false);
    expect(off.calls.some((c) => c.method === 'service.setTarget')).toBe(true);
  });
});

describe('plugin state of a plugin no longer used (Kong never says it was deleted)', () => {
  it('is released, scraper and all, after IDLE_RELEASE_MS without a phase; a used one is kept', async () => {
    const before = runningMetricsScrapers();
    // llm reads the replicas' /metrics: its state owns a scraper (port 1: nothing answers; harmless).
    const probers = runningHealthProbers();
    // ... and active_health: a prober too.
    const gone = new Plugin({ __plugin_id: 'p-gone', strategy: 'llm', replicas: [{ address: '127.0.0.1:1' }], replica_metrics: { interval_s: 60 }, active_health: { enabled: true, interval_s: 60, timeout_s: 1 } });
    const kept = new Plugin({ __plugin_id: 'p-kept', strategy: 'round-robin', replicas: REPLICAS });
    expect(gone).toBeDefined();
    expect(runningMetricsScrapers()).toBe(before + 1);
    expect(runningHealthProbers()).toBe(probers + 1);
    expect(balancerStatus('p-gone')).not.toBeNull();
    // Nothing is idle yet.
    expect(releaseIdleStates()).toEqual([]);
    // Time passes (only Date is faked: timers run as they do); only p-kept keeps serving.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() + IDLE_RELEASE_MS);
      await kept.access(fakeKong().kong);
      const released = releaseIdleStates();
      // The other specs' plugins went idle too: all but the one in use.
      expect(released).toContain('p-gone');
      expect(released).not.toContain('p-kept');
    } finally {
      vi.useRealTimers();
    }
    expect(balancerStatus('p-gone')).toBeNull();
    expect(balancerStatus('p-kept')).not.toBeNull();
    expect(runningMetricsScrapers()).toBe(before);
    // Every other state went idle too (only p-kept, without active checks, is in use).
    expect(runningHealthProbers()).toBe(0);
    // A released plugin that comes back starts fresh and works.
    const back = fakeKong();
    await gone.access(back.kong);
    expect(back.calls.find((c) => c.method === 'service.setTarget')?.args).toEqual(['127.0.0.1', 1]);
    expect(balancerStatus('p-gone')).not.toBeNull();
    expect(runningMetricsScrapers()).toBe(before + 1);
    releaseIdleStates(Date.now() + 10 * IDLE_RELEASE_MS);
    expect(runningMetricsScrapers()).toBe(before);
  });
});
