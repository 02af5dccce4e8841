// Failover, health and bookkeeping through real nginx (2 worker processes, the generator's
// configuration, the built njs bundle) and real backends: in-flight counts return to exactly 0
// after load, aborts and errors; a killed backend is failed over, ejected, marked down by active
// checks and brought back; all down answers 503 JSON at once; state survives a HUP reload; the
// status endpoint speaks JSON and Prometheus. Assertions are on counts, states and bodies.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBackends } from './helpers/backends';
import type { Backends } from './helpers/backends';
import { createFleet, replicasOf } from './helpers/fleet';
import { drained, readStatus, request, stream, waitFor } from './helpers/nginx-balancer';
import type { Balancer, Reply, StatusRow } from './helpers/nginx-balancer';
import { STATE_KINDS } from '../shared/status-report';

let backends: Backends;
const fleet = createFleet('health');

beforeAll(async () => {
  backends = await startBackends(3);
});
afterEach(async () => {
  expect(await fleet.stopAll()).toEqual([]);
  for (const b of backends.list) await b.restart();
  backends.resetAll();
});
afterAll(async () => {
  await backends?.close();
});

const replicas = replicasOf;

/** Fast health settings so a test sees ejections, marks and recoveries within seconds. */
const FAST_HEALTH = {
  passive_health: { consecutive_failures: 2, base_ejection_s: 1, max_ejection_s: 2 },
  active_health: { enabled: true, path: '/health', interval_s: 1, timeout_s: 0.5, healthy_threshold: 1, unhealthy_threshold: 1 },
};

const balancer = (config: Record<string, unknown>) => fleet.start(config);
const stopLast = () => fleet.stopLast();

const URL_PATH = '/v1/chat/completions';

function row(rows: StatusRow[], id: string): StatusRow {
  const found = rows.find((r) => r.id === id);
  if (!found) throw new Error(`no status row ${id}`);
  return found;
}

async function rowOf(lb: Balancer, id: string): Promise<StatusRow> {
  return row((await readStatus(lb)).replicas, id);
}

async function totalPicks(lb: Balancer): Promise<number> {
  return (await readStatus(lb)).replicas.reduce((s, r) => s + r.picks, 0);
}

describe('in-flight counts return to exactly 0', () => {
  it('after concurrent load, client aborts (before the header and mid-stream) and backend errors', async () => {
    const lb = await balancer({ strategy: 'least-connections', retries: 1, replicas: replicas(backends.list) });
    // Concurrent load: 60 requests, 12 at a time, each taking a little while.
    for (const b of backends.list) b.behave({ latencyMs: 20 });
    for (let i = 0; i < 60; i += 12) {
      const replies = await Promise.all(Array.from({ length: 12 }, () => request(lb.nginx.url(URL_PATH), { body: '{"n":1}' })));
      expect(replies.map((r) => r.status)).toEqual(Array(12).fill(200));
    }
    await drained(lb);
    expect(await totalPicks(lb)).toBe(60);

    // Clients that leave while the replica holds the request (nginx logs 499).
    for (const b of backends.list) b.behave({ mode: 'hold' });
    const aborted = await Promise.all(Array.from({ length: 6 }, () => request(lb.nginx.url(URL_PATH), { abortAfterMs: 150 })));
    expect(aborted.map((r) => r.status)).toEqual(Array(6).fill(0));
    await drained(lb);

    // Clients that leave in the middle of a stream whose replica went quiet.
    for (const b of backends.list) b.behave({ mode: 'sse', chunks: 3, chunkDelayMs: 1, pauseAfterChunks: 1 });
    const streams = Array.from({ length: 3 }, () => stream(lb.nginx.url(URL_PATH)));
    await waitFor('the first event of every stream', () => streams.every((s) => s.received().includes('"chunk":0')));
    await waitFor('three streams in flight', async () => (await readStatus(lb)).replicas.reduce((s, r) => s + r.in_flight, 0) === 3);
    for (const s of streams) s.abort();
    await drained(lb);

    // Replica errors: 500 and 503 both fail over (retry_on); the last attempt's answer passes through.
    for (const b of backends.list) b.reset();
    backends.list[0].behave({ status: 500 });
    backends.list[1].behave({ status: 503 });
    const replies = await Promise.all(Array.from({ length: 12 }, () => request(lb.nginx.url(URL_PATH))));
    for (const reply of replies) expect([200, 500, 503]).toContain(reply.status);
    await drained(lb);
    // Every attempt that was started has ended: picks = requests + failovers, none left open.
    const rows = (await readStatus(lb)).replicas;
    expect(rows.every((r) => r.in_flight === 0)).toBe(true);
    expect(row(rows, 'b1').failures).toBeGreaterThan(0);
  });
});

describe('failover', () => {
  it('a killed backend: requests keep succeeding through failover, and passive detection ejects it', async () => {
    const lb = await balancer({
      strategy: 'round-robin',
      retries: 1,
      replicas: replicas(backends.list),
      passive_health: { consecutive_failures: 2, base_ejection_s: 60, max_ejection_s: 60 },
    });
    const dead = backends.list[0];
    await dead.kill();
    const replies: Reply[] = [];
    for (let i = 0; i < 12; i++) replies.push(await request(lb.nginx.url(URL_PATH)));
    expect(replies.map((r) => r.status)).toEqual(Array(12).fill(200));
    for (const reply of replies) expect(['b1', 'b2']).toContain(JSON.parse(reply.body).backend);
    const b0 = await rowOf(lb, 'b0');
    // Two connect errors in a row eject it; after that it is no longer tried.
    expect(b0.failures).toBe(2);
    expect(b0.picks).toBe(2);
    expect(b0.ejections).toBe(1);
    expect(b0.state).toBe('ejected');
    expect(b0.ejected_until).not.toBeNull();
    await drained(lb);
  });

  it('active checks mark a killed backend down and bring it back when it returns', async () => {
    // (js_periodic runs once when the worker starts, then every interval.)
    const lb = await balancer(Object.assign({ strategy: 'round-robin', retries: 1, replicas: replicas(backends.list) }, FAST_HEALTH));
    const dead = backends.list[0];
    await dead.kill();
    await waitFor('b0 marked unhealthy by the active check', async () => (await rowOf(lb, 'b0')).state === 'unhealthy');
    for (let i = 0; i < 6; i++) {
      const reply = await request(lb.nginx.url(URL_PATH));
      expect(reply.status).toBe(200);
      expect(JSON.parse(reply.body).backend).not.toBe('b0');
    }
    await dead.restart();
    await waitFor('b0 passing its health check again', async () => (await rowOf(lb, 'b0')).state !== 'unhealthy');
    const before = dead.requests;
    await waitFor(
      'traffic back on b0',
      async () => {
        expect((await request(lb.nginx.url(URL_PATH))).status).toBe(200);
        return dead.requests > before;
      },
      10_000,
    );
    await waitFor('b0 healthy', async () => (await rowOf(lb, 'b0')).state === 'healthy');
    expect(dead.healthChecks).toBeGreaterThan(0);
    await drained(lb);
  });

  it('a read timeout fails over to the next replica and counts against the first', async () => {
    const lb = await balancer({ strategy: 'round-robin', retries: 1, replicas: replicas(backends.list.slice(0, 2)), timeouts: { response_s: 1 } });
    backends.list[0].behave({ mode: 'hold' });
    const replies = await Promise.all([request(lb.nginx.url(URL_PATH)), request(lb.nginx.url(URL_PATH))]);
    expect(replies.map((r) => r.status)).toEqual([200, 200]);
    expect(replies.map((r) => JSON.parse(r.body).backend)).toEqual(['b1', 'b1']);
    await drained(lb);
    const b0 = await rowOf(lb, 'b0');
    expect(b0.failures).toBe(1);
    expect(b0.picks).toBe(1);
    expect((await rowOf(lb, 'b1')).picks).toBe(2);
  });

  it('a replica 503 is retried elsewhere with the same body; the last attempt passes the replica answer through', async () => {
    const lb = await balancer({ strategy: 'round-robin', retries: 1, replicas: replicas(backends.list.slice(0, 2)) });
    backends.list[0].behave({ status: 503 });
    const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(5000) }] });
    const first = await request(lb.nginx.url(URL_PATH), { body });
    const second = await request(lb.nginx.url(URL_PATH), { body });
    for (const reply of [first, second]) {
      expect(reply.status).toBe(200);
      expect(JSON.parse(reply.body)).toMatchObject({ backend: 'b1', method: 'POST', bodyBytes: body.length });
    }
    expect(backends.list[1].bodies).toEqual([body, body]);
    // Both replicas answer 503: two attempts, and the client gets the last replica's own 503.
    backends.list[1].behave({ status: 503 });
    const before = backends.counts();
    const failed = await request(lb.nginx.url(URL_PATH), { body });
    expect(failed.status).toBe(503);
    expect(JSON.parse(failed.body)).toHaveProperty('backend');
    expect(backends.counts().map((n, i) => n - before[i])).toEqual([1, 1, 0]);
    await drained(lb);
  });

  it('with every backend down: 502 JSON while they are tried, then 503 JSON at once without touching them', async () => {
    const lb = await balancer({
      strategy: 'least-connections',
      retries: 1,
      replicas: replicas(backends.list),
      passive_health: { consecutive_failures: 1, base_ejection_s: 60, max_ejection_s: 60, max_ejected_percent: 100 },
    });
    for (const b of backends.list) await b.kill();
    const tried: Reply[] = [];
    for (let i = 0; i < 5; i++) {
      const reply = await request(lb.nginx.url(URL_PATH));
      if (reply.status !== 502) break;
      tried.push(reply);
      // The last attempt is recorded in the log phase, just after the client got the answer.
      await drained(lb);
    }
    // Three replicas, two attempts per request: two requests try them all.
    expect(tried.length).toBe(2);
    for (const reply of tried) {
      expect(reply.headers['content-type']).toContain('application/json');
      expect(JSON.parse(reply.body)).toMatchObject({ error: { type: 'bad_gateway', code: 'replicas_unreachable' } });
    }
    await drained(lb);
    expect((await readStatus(lb)).replicas.map((r) => r.state)).toEqual(['ejected', 'ejected', 'ejected']);
    const picks = await totalPicks(lb);
    expect(picks).toBe(3);
    const refused = await request(lb.nginx.url(URL_PATH), { body: '{}' });
    expect(refused.status).toBe(503);
    expect(refused.headers['content-type']).toContain('application/json');
    expect(JSON.parse(refused.body)).toEqual({
      error: {
        message: expect.stringContaining('none of the 3 replicas is available'),
        type: 'service_unavailable',
        code: 'no_healthy_replica',
        param: null,
      },
    });
    expect(await totalPicks(lb)).toBe(picks);
  });

  it('no replica can serve: 503 JSON from the js_set path and from the body-reading route', async () => {
    // Every backend down and ejected by its first failure: one request tries all three (retries 2),
    // after that nothing is left to pick. (A list whose every weight is 0 is refused by the validator.)
    const ejectAll = { retries: 2, passive_health: { consecutive_failures: 1, base_ejection_s: 60, max_ejection_s: 60, max_ejected_percent: 100 } };
    for (const b of backends.list) await b.kill();
    for (const config of [
      { strategy: 'least-connections', ...ejectAll, replicas: replicas(backends.list) },
      { strategy: 'consistent-hash', hash_key: { source: 'body', name: 'user' }, ...ejectAll, replicas: replicas(backends.list) },
    ]) {
      const lb = await balancer(config);
      expect((await request(lb.nginx.url(URL_PATH), { body: '{"user":"u"}' })).status).toBe(502);
      await drained(lb);
      const picks = await totalPicks(lb);
      const reply = await request(lb.nginx.url(URL_PATH), { body: '{"user":"u"}' });
      expect(reply.status).toBe(503);
      expect(reply.headers['content-type']).toContain('application/json');
      expect(JSON.parse(reply.body).error).toMatchObject({ type: 'service_unavailable', code: 'no_healthy_replica' });
      expect(await totalPicks(lb)).toBe(picks);
      await stopLast();
    }
    expect(backends.counts()).toEqual([0, 0, 0]);
  });

  it('without retries a dead replica answers 502 JSON and counts as a failure', async () => {
    const lb = await balancer({ strategy: 'round-robin', retries: 0, replicas: replicas(backends.list.slice(0, 1)) });
    await backends.list[0].kill();
    const reply = await request(lb.nginx.url(URL_PATH));
    expect(reply.status).toBe(502);
    expect(JSON.parse(reply.body).error).toMatchObject({ type: 'bad_gateway', code: 'replicas_unreachable' });
    await drained(lb);
    expect((await rowOf(lb, 'b0')).failures).toBe(1);
  });

  it('a replica whose health endpoint hangs is marked down (its probe times out)', async () => {
    const lb = await balancer(Object.assign({ strategy: 'round-robin', replicas: replicas(backends.list) }, FAST_HEALTH));
    backends.list[2].behave({ healthHangs: true });
    await waitFor('b2 marked unhealthy', async () => (await rowOf(lb, 'b2')).state === 'unhealthy', 10_000);
    expect((await rowOf(lb, 'b0')).state).toBe('healthy');
    const names = new Set<string>();
    for (let i = 0; i < 6; i++) names.add(JSON.parse((await request(lb.nginx.url(URL_PATH))).body).backend);
    expect([...names].sort()).toEqual(['b0', 'b1']);
  });
});

describe("nginx's own access checks come first", () => {
  it('a request refused by deny or limit_req is never picked: no pick counted, no replica touched', async () => {
    const lb = await fleet.start(
      { strategy: 'round-robin', replicas: replicas(backends.list.slice(0, 2)) },
      {
        httpDirectives: ['  limit_req_zone $binary_remote_addr zone=llm_test:1m rate=1r/m;'],
        locationDirectives: ['      limit_req zone=llm_test nodelay;', '      limit_req_status 429;'],
      },
    );
    // The first request per minute passes the rate limit; the next ones are refused with 429.
    const replies = [];
    for (let i = 0; i < 4; i++) replies.push((await request(lb.nginx.url(URL_PATH))).status);
    expect(replies).toEqual([200, 429, 429, 429]);
    await drained(lb);
    const rows = (await readStatus(lb)).replicas;
    expect(rows.reduce((sum, r) => sum + r.picks, 0)).toBe(1);
    expect(backends.list[0].requests + backends.list[1].requests).toBe(1);

    const denied = await fleet.start({ strategy: 'round-robin', replicas: replicas(backends.list.slice(0, 2)) }, { locationDirectives: ['      deny all;'] });
    expect((await request(denied.nginx.url(URL_PATH))).status).toBe(403);
    expect((await readStatus(denied)).replicas.map((r) => r.picks)).toEqual([0, 0]);
  });
});

describe('state across reloads', () => {
  it('survives `nginx -s reload` (HUP): counters, rotation cursor and ejections', async () => {
    const config = Object.assign({ strategy: 'round-robin', retries: 1, replicas: replicas(backends.list) }, FAST_HEALTH, {
      passive_health: { consecutive_failures: 1, base_ejection_s: 60, max_ejection_s: 60 },
      active_health: { enabled: false },
    });
    const lb = await balancer(config);
    const names: string[] = [];
    for (let i = 0; i < 4; i++) names.push(JSON.parse((await request(lb.nginx.url(URL_PATH))).body).backend);
    const before = (await readStatus(lb)).replicas.map((r) => r.picks);
    const workers = lb.nginx.workerPids();
    await lb.reconfigure(config);
    expect(lb.nginx.workerPids().some((p) => workers.includes(p))).toBe(false);
    expect((await readStatus(lb)).replicas.map((r) => r.picks)).toEqual(before);
    for (let i = 0; i < 5; i++) names.push(JSON.parse((await request(lb.nginx.url(URL_PATH))).body).backend);
    // One rotation cursor across the reload: 9 requests, 3 each (a reset cursor would give 4/3/2).
    expect(names.filter((n) => n === 'b0').length).toBe(3);
    expect(names.filter((n) => n === 'b1').length).toBe(3);
    expect(names.filter((n) => n === 'b2').length).toBe(3);
    // An ejection made before a reload holds after it.
    await backends.list[0].kill();
    for (let i = 0; i < 3; i++) expect((await request(lb.nginx.url(URL_PATH))).status).toBe(200);
    expect((await rowOf(lb, 'b0')).state).toBe('ejected');
    await lb.reconfigure(config);
    expect((await rowOf(lb, 'b0')).state).toBe('ejected');
    await drained(lb);
  });
});

describe('status endpoint', () => {
  it('answers only the addresses in nginx.status_allow (localhost by default): others get 403', async () => {
    const open = await balancer({ strategy: 'round-robin', replicas: replicas(backends.list.slice(0, 1)) });
    expect((await request(open.nginx.url('/llm-balancer/status'))).status).toBe(200);
    // The test client is 127.0.0.1: with only another address allowed, it must be refused.
    const closed = await balancer({ strategy: 'round-robin', replicas: replicas(backends.list.slice(0, 1)), nginx: { status_allow: ['192.0.2.10'] } });
    expect((await request(closed.nginx.url('/llm-balancer/status'))).status).toBe(403);
    expect((await request(closed.nginx.url('/llm-balancer/metrics'))).status).toBe(403);
    // The balanced location itself is not restricted.
    expect((await request(closed.nginx.url(URL_PATH))).status).toBe(200);
  });

  it('JSON per replica, and the same numbers as Prometheus text', async () => {
    const lb = await balancer({ strategy: 'weighted-round-robin', replicas: replicas(backends.list, [2, 1, 1]) });
    for (let i = 0; i < 8; i++) expect((await request(lb.nginx.url(URL_PATH))).status).toBe(200);
    await drained(lb);
    const reply = await request(lb.nginx.url('/llm-balancer/status'));
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('application/json');
    const doc = JSON.parse(reply.body);
    expect(doc.strategy).toBe('weighted-round-robin');
    // Which state is shared: on NGINX every count is this node's own (its workers share it).
    expect(doc.shared_state).toEqual({ redis: false, shared: [], local: STATE_KINDS, mode: 'local', scope: 'this nginx, all its workers', prefix_placement: 'rendezvous' });
    expect(Number.isNaN(Date.parse(doc.generated_at))).toBe(false);
    expect(doc.replicas.map((r: StatusRow) => [r.id, r.address, r.upstream, r.weight, r.state, r.picks, r.in_flight, r.failures])).toEqual([
      ['b0', backends.list[0].address, 'llm_balancer_0', 2, 'healthy', 4, 0, 0],
      ['b1', backends.list[1].address, 'llm_balancer_1', 1, 'healthy', 2, 0, 0],
      ['b2', backends.list[2].address, 'llm_balancer_2', 1, 'healthy', 2, 0, 0],
    ]);
    for (const r of doc.replicas as StatusRow[]) {
      expect(r.samples).toBe(r.picks);
      expect(r.latency_ewma_ms).toBeGreaterThanOrEqual(0);
    }

    const metrics = await request(lb.nginx.url('/llm-balancer/metrics'));
    expect(metrics.status).toBe(200);
    expect(metrics.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    const labels = (i: number) => `replica="b${i}",address="${backends.list[i].address}"`;
    const lines = metrics.body.split('\n');
    expect(lines).toContain('# TYPE llm_balancer_replica_picks_total counter');
    expect(lines).toContain(`llm_balancer_replica_picks_total{${labels(0)}} 4`);
    expect(lines).toContain(`llm_balancer_replica_in_flight{${labels(1)}} 0`);
    expect(lines).toContain(`llm_balancer_replica_healthy{${labels(2)}} 1`);
    expect(lines).toContain(`llm_balancer_replica_ejected{${labels(2)}} 0`);
    expect(lines).toContain(`llm_balancer_replica_state{${labels(0)},state="healthy"} 1`);
    // Nothing is shared with other nginx nodes: every kind of state says 0.
    for (const kind of STATE_KINDS) expect(lines).toContain(`llm_balancer_state_shared{state="${kind}"} 0`);
    const viaQuery = await request(lb.nginx.url('/llm-balancer/status?format=prometheus'));
    expect(viaQuery.headers['content-type']).toBe(metrics.headers['content-type']);
    // The same text but for the time-decayed latency gauges, which move between the two reads.
    const steady = (body: string) => body.split('\n').filter((line) => !/_ewma_ms\{/.test(line));
    expect(steady(viaQuery.body)).toEqual(steady(metrics.body));
  });
});
