// NGINX Plus's upstream API as the replica source (nginx.plus_api), through real nginx (2 worker
// processes, the generator's configuration, the built njs bundle), real backends, and a fake Plus
// API serving the documented JSON (spec/helpers/plus-api.ts). `js_periodic syncPeers` reads it
// (at worker start, then every interval_s = 1 s) into the string zone every worker routes on.
// Waits are bounded polls of the status endpoint (its `peers.synced_at` and replica rows) or of the
// error log; assertions are on counts, states and bodies, never on durations.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NGINX_OUTFILE } from '../build/build.js';
import { startBackends } from './helpers/backends';
import type { Backend, Backends } from './helpers/backends';
import { drained, readStatus, render, request, waitFor } from './helpers/nginx-balancer';
import { createFleet, replicasOf } from './helpers/fleet';
import type { Balancer, Reply, StatusDocument, StatusRow } from './helpers/nginx-balancer';
import { runWithBundle } from './helpers/nginx-env';
import { startFakePlusApi } from './helpers/plus-api';
import type { FakePlusApi, PeerSpec } from './helpers/plus-api';

const UPSTREAM = 'llm-peers';
const URL_PATH = '/v1/chat/completions';

let backends: Backends;
let api: FakePlusApi;
const fleet = createFleet('plus');

beforeAll(async () => {
  backends = await startBackends(4);
  api = await startFakePlusApi();
});
afterEach(async () => {
  for (const b of backends.list) b.release();
  expect(await fleet.stopAll()).toEqual([]);
  for (const b of backends.list) await b.restart();
  backends.resetAll();
  api.failWith('none');
});
afterAll(async () => {
  await api?.close();
  await backends?.close();
});

type PlusStatus = StatusDocument & { peers?: { source: string; upstream: string; synced_at: string | null } };

const staticReplicas = replicasOf;

/** A balancer whose replicas come from the fake API's UPSTREAM; `replicas` are the static ones. */
async function balancer(config: Record<string, unknown>): Promise<Balancer> {
  const nginx = Object.assign({ plus_api: { url: api.url, upstream: UPSTREAM, interval_s: 1 } }, (config.nginx as object | undefined) ?? {});
  // warn: the peer sync's warnings reach the error log (nginx's default level is error).
  return fleet.start(Object.assign({}, config, { nginx }), { errorLogLevel: 'warn' });
}

async function status(lb: Balancer): Promise<PlusStatus> {
  return (await readStatus(lb)) as PlusStatus;
}

function peer(b: Backend, more: Partial<PeerSpec> = {}): PeerSpec {
  return Object.assign({ server: b.address }, more);
}

/** Waits until the status page shows a sync newer than `after` whose replica rows satisfy `check`. */
async function synced(lb: Balancer, what: string, check: (rows: StatusRow[]) => boolean, after: string | null = null): Promise<PlusStatus> {
  let doc: PlusStatus | null = null;
  await waitFor(
    what,
    async () => {
      doc = await status(lb);
      const at = doc.peers?.synced_at ?? null;
      return at !== null && (after === null || at > after) && check(doc.replicas);
    },
    5_000,
  );
  return doc as unknown as PlusStatus;
}

const ids = (rows: StatusRow[]) => rows.map((r) => r.id);

function servedBy(reply: Reply): string {
  expect(reply.status, reply.body).toBe(200);
  return (JSON.parse(reply.body) as { backend: string }).backend;
}

async function sequential(lb: Balancer, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(servedBy(await request(lb.nginx.url(URL_PATH))));
  return out;
}

function tally(names: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const n of names) counts[n] = (counts[n] ?? 0) + 1;
  return counts;
}

/** Error-log lines of the peer sync's warnings containing `text`. */
function syncWarnings(lb: Balancer, text: string): string[] {
  return lb.nginx
    .stderr()
    .split('\n')
    .filter((line) => line.includes('[warn]') && line.includes('NGINX Plus peer sync') && line.includes(text));
}

describe('NGINX Plus peers as the replicas', () => {
  it('routes only to up peers; draining/down peers stop and a new peer (by bare address) starts after the next sync', async () => {
    const [b0, b1, b2, b3] = backends.list;
    api.setPeers(UPSTREAM, [peer(b0), peer(b1), peer(b2, { state: 'down' }), peer(b3, { backup: true })]);
    const lb = await balancer({ strategy: 'round-robin', retries: 1, replicas: staticReplicas([b0, b1, b2]) });
    // js_periodic runs when the worker starts: the first sync is (nearly) immediate.
    const first = await synced(lb, 'the first sync', (rows) => ids(rows).join() === 'b0,b1,b2');
    expect(first.peers).toMatchObject({ source: 'nginx-plus-api', upstream: UPSTREAM });
    expect(first.replicas.map((r) => [r.id, r.address, r.upstream, r.state])).toEqual([
      ['b0', b0.address, 'llm_balancer_0', 'healthy'],
      ['b1', b1.address, 'llm_balancer_1', 'healthy'],
      ['b2', b2.address, 'llm_balancer_2', 'unhealthy'],
    ]);
    expect(tally(await sequential(lb, 6))).toEqual({ b0: 3, b1: 3 });

    // b1 drains, b3 joins (not a static replica: routed to by its bare ip:port, no upstream block).
    api.setPeers(UPSTREAM, [peer(b0), peer(b1, { state: 'draining' }), peer(b2, { state: 'down' }), peer(b3)]);
    const second = await synced(lb, 'the sync that adds b3', (rows) => rows.length === 4, first.peers?.synced_at ?? null);
    expect(second.replicas.map((r) => [r.id, r.address, r.upstream, r.state])).toEqual([
      ['b0', b0.address, 'llm_balancer_0', 'healthy'],
      ['b1', b1.address, 'llm_balancer_1', 'draining'],
      ['b2', b2.address, 'llm_balancer_2', 'unhealthy'],
      [b3.address, b3.address, b3.address, 'healthy'],
    ]);
    expect(tally(await sequential(lb, 6))).toEqual({ b0: 3, b3: 3 });
    await drained(lb);
    const rows = (await status(lb)).replicas;
    expect(rows.map((r) => r.picks)).toEqual([6, 3, 0, 3]);
    expect(backends.counts()).toEqual([6, 3, 0, 3]);

    // The metrics endpoint lists the same peer replicas, and when they were read.
    const metrics = (await request(lb.nginx.url('/llm-balancer/metrics'))).body.split('\n');
    expect(metrics).toContain(`llm_balancer_replica_picks_total{replica="${b3.address}",address="${b3.address}"} 3`);
    expect(metrics).toContain(`llm_balancer_replica_state{replica="b1",address="${b1.address}",state="draining"} 1`);
    expect(metrics.some((l) => /^llm_balancer_peers_synced_timestamp_seconds [0-9]+$/.test(l))).toBe(true);
    expect(api.paths.every((p) => p === `/api/9/http/upstreams/${UPSTREAM}`)).toBe(true);
  });

  it("honours the API's weights (weighted-round-robin shares over whole windows, sequential and concurrent)", async () => {
    const [b0, b1, b2] = backends.list;
    // Static weights 1/1; the API says 3/1 and adds b2 with 2. Many backup peers make the
    // document ~60 KB (several fetch buffers); backups are left out of the replicas.
    const backups: PeerSpec[] = Array.from({ length: 120 }, (_, i) => ({ server: `127.0.0.2:${20000 + i}`, backup: true }));
    api.setPeers(UPSTREAM, [peer(b0, { weight: 3 }), peer(b1, { weight: 1 }), peer(b2, { weight: 2 })].concat(backups));
    expect(JSON.stringify(api.document(UPSTREAM)).length).toBeGreaterThan(48 * 1024);
    const lb = await balancer({ strategy: 'weighted-round-robin', replicas: staticReplicas([b0, b1]) });
    const doc = await synced(lb, 'the first sync', (rows) => rows.length === 3);
    expect(doc.replicas.map((r) => [r.id, r.weight, r.upstream])).toEqual([
      ['b0', 3, 'llm_balancer_0'],
      ['b1', 1, 'llm_balancer_1'],
      [b2.address, 2, b2.address],
    ]);
    const names = await sequential(lb, 12);
    for (let i = 0; i < 12; i += 6) expect(tally(names.slice(i, i + 6))).toEqual({ b0: 3, b1: 1, b2: 2 });
    // Concurrent requests over both workers: the shared cursor keeps whole windows exact.
    for (let i = 0; i < 24; i += 8) {
      const replies = await Promise.all(Array.from({ length: 8 }, () => request(lb.nginx.url(URL_PATH), { body: '{}' })));
      for (const reply of replies) names.push(servedBy(reply));
    }
    expect(tally(names)).toEqual({ b0: 18, b1: 6, b2: 12 });
    await drained(lb);
  });

  it('routes on the static replicas until the first sync, then keeps the last list while the API fails, is malformed or hangs', async () => {
    const [b0, b1, b2] = backends.list;
    const modesBefore = api.byMode();
    api.failWith(500);
    const lb = await balancer({ strategy: 'round-robin', replicas: staticReplicas([b0, b1]) });
    await waitFor('a failed first sync logged', () => syncWarnings(lb, 'answered HTTP 500').length > 0);
    const before = await status(lb);
    expect(before.peers?.synced_at).toBeNull();
    expect(before.replicas.map((r) => [r.id, r.upstream])).toEqual([
      ['b0', 'llm_balancer_0'],
      ['b1', 'llm_balancer_1'],
    ]);
    expect(tally(await sequential(lb, 4))).toEqual({ b0: 2, b1: 2 });

    // The API recovers with b2 as the only peer.
    api.setPeers(UPSTREAM, [peer(b2)]);
    api.failWith('none');
    const good = await synced(lb, 'the first good sync', (rows) => ids(rows).join() === b2.address);
    const syncedAt = good.peers?.synced_at ?? null;
    expect(await sequential(lb, 3)).toEqual(['b2', 'b2', 'b2']);

    // Every other kind of failure keeps that list too; the changed peers behind the failing API are not seen.
    api.setPeers(UPSTREAM, [peer(b0)]);
    for (const [mode, words] of [
      ['malformed', 'answered with a body that is not JSON'],
      ['hang', 'gave no answer within 750 ms'],
    ] as const) {
      const seen = syncWarnings(lb, words).length;
      api.failWith(mode);
      await waitFor(`a ${mode} sync logged`, () => syncWarnings(lb, words).length > seen);
      expect(await sequential(lb, 3)).toEqual(['b2', 'b2', 'b2']);
      const now = await status(lb);
      expect(now.peers?.synced_at).toBe(syncedAt);
      expect(ids(now.replicas)).toEqual([b2.address]);
    }
    const hung = api.byMode().hang;

    // After the hang (its runs killed at the next beat) the next good read is taken.
    api.failWith('none');
    await synced(lb, 'a good sync after the hang', (rows) => ids(rows).join() === 'b0', syncedAt);
    expect(await sequential(lb, 2)).toEqual(['b0', 'b0']);
    // One warning per failed read, and nothing else (no exception, no error from the module).
    const modes = api.byMode();
    expect(syncWarnings(lb, 'answered HTTP 500').length).toBe(modes['500'] - modesBefore['500']);
    expect(syncWarnings(lb, 'not JSON').length).toBe(modes.malformed - modesBefore.malformed);
    expect(syncWarnings(lb, 'gave no answer').length).toBeGreaterThanOrEqual(1);
    expect(syncWarnings(lb, 'gave no answer').length).toBeLessThanOrEqual(hung - modesBefore.hang);
    expect(syncWarnings(lb, '').length).toBe(syncWarnings(lb, 'answered HTTP 500').length + syncWarnings(lb, 'not JSON').length + syncWarnings(lb, 'gave no answer').length);
    await drained(lb);
  });

  it('keeps one start and one end per attempt when the list changes between pick, retry and outcome', async () => {
    const [b0, b1, b2] = backends.list;
    api.setPeers(UPSTREAM, [peer(b0), peer(b1), peer(b2)]);
    const lb = await balancer({ strategy: 'round-robin', retries: 2, replicas: staticReplicas([b0, b1, b2]) });
    const first = await synced(lb, 'the first sync', (rows) => rows.length === 3);

    // Outcome after the replica left the list: a request held by b0 while b0 is removed.
    b0.behave({ mode: 'hold' });
    const held = request(lb.nginx.url(URL_PATH));
    await waitFor('b0 holding the request', () => b0.open === 1);
    api.setPeers(UPSTREAM, [peer(b1), peer(b2)]);
    const without = await synced(lb, 'b0 removed', (rows) => ids(rows).join() === 'b1,b2', first.peers?.synced_at ?? null);
    b0.release();
    expect(servedBy(await held)).toBe('b0');
    api.setPeers(UPSTREAM, [peer(b0), peer(b1), peer(b2)]);
    const back = await synced(lb, 'b0 back', (rows) => rows.length === 3, without.peers?.synced_at ?? null);
    await drained(lb);
    expect((await status(lb)).replicas.map((r) => [r.id, r.picks, r.samples, r.in_flight])).toEqual([
      ['b0', 1, 1, 0],
      ['b1', 0, 0, 0],
      ['b2', 0, 0, 0],
    ]);

    // A retry after a sync skips the plan's replica that went down meanwhile. Round-robin plans
    // [X, X+1, X+2] over the list: hold every backend to see X, mark X+1 down, then kill X.
    for (const b of [b0, b1, b2]) b.behave({ mode: 'hold' });
    const failing = request(lb.nginx.url(URL_PATH));
    await waitFor('one backend holding the request', () => b0.open + b1.open + b2.open === 1);
    const x = [b0, b1, b2].findIndex((b) => b.open === 1);
    const skipped = [b0, b1, b2][(x + 1) % 3];
    const fallback = [b0, b1, b2][(x + 2) % 3];
    fallback.behave({ mode: 'json' });
    api.setPeers(
      UPSTREAM,
      [b0, b1, b2].map((b) => peer(b, { state: b === skipped ? 'down' : 'up' })),
    );
    await synced(lb, `${skipped.name} down`, (rows) => rows.some((r) => r.address === skipped.address && r.state === 'unhealthy'), back.peers?.synced_at ?? null);
    await [b0, b1, b2][x].kill();
    expect(servedBy(await failing)).toBe(fallback.name);
    expect(skipped.requests).toBe(0);
    await drained(lb);
    const rows = (await status(lb)).replicas;
    expect(rows.map((r) => r.in_flight)).toEqual([0, 0, 0]);
    expect(rows[x].failures).toBe(1);
    expect(rows.map((r) => r.picks).reduce((a, b) => a + b, 0)).toBe(3);
  });

  it('every llm_balancer.<handler> the Plus configuration renders is a function of the bundle', async () => {
    const conf = render(
      { strategy: 'least-connections', retries: 1, replicas: staticReplicas(backends.list), nginx: { plus_api: { url: api.url, upstream: UPSTREAM } } },
      8080,
      '/tmp/unused.json',
    ).conf;
    expect(conf).toContain('js_shared_dict_zone zone=llm_balancer_peers:1m type=string;');
    const names = new Set<string>();
    for (const m of conf.matchAll(/llm_balancer\.([A-Za-z_]+)/g)) if (m[1] !== 'js') names.add(m[1]);
    expect(names.has('syncPeers')).toBe(true);
    const r = await runWithBundle(NGINX_OUTFILE, `console.log(${JSON.stringify([...names])}.filter(function (n) { return typeof m[n] !== 'function'; }).join(','));`);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('');
  });
});
