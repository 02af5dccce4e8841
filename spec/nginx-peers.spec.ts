// NGINX Plus peers in the njs module, in Node with a fake njs host (globalThis.ngx and the
// preloaded object): the plan/tried encoding (plan.ts), the peer list store and its failures
// (peers.ts: syncPeers never throws, keeps the last good list, warns once per failed read), and
// the handlers routing on it (context, pick, retry, outcome) when the list changes between a
// request's pick, its retry and its log phase. Each nginx VM is a fresh module instance here
// (vi.resetModules), as each njs request VM evaluates the module afresh.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { preloadedConfig } from '../plugins/nginx/generator/generate';
import { loadBalancerFile } from '../plugins/nginx/generator/load';
import { joinIds, joinIdsOf, nextInPlan, parseIds, singleId } from '../plugins/nginx/plan';
import { linkPeers, parseStoredPeers, peersUrl, syncTimeoutMs, uniqueReplicas } from '../plugins/nginx/peers';
import type { FetchReply } from '../plugins/nginx/runtime';
import type { Replica } from '../shared/types';
import { documentedPeer } from './helpers/plus-api';
import { fakeRequest } from './helpers/njs-request';

describe('plan/tried variables hold replica ids', () => {
  it.each<[string[]]>([[[]], [['gpu-a']], [['gpu-a', '10.0.0.7:8000', '[::1]:9000']], [['a,b', 'c%d', 'ü e']]])('joinIds/parseIds round trip %j', (ids) => {
    expect(parseIds(joinIds(ids))).toEqual(ids);
  });

  it('encodes commas so an id never splits', () => {
    expect(joinIds(['a,b', 'c'])).toBe('a%2Cb,c');
    expect(parseIds(undefined)).toEqual([]);
    expect(parseIds('')).toEqual([]);
    expect(parseIds('a,,b,%E0%A4%A')).toEqual(['a', 'b']);
  });

  it.each<[string[]]>([[[]], [['gpu-a']], [['a,b', 'c%d', 'ü e']]])('joinIdsOf(replicas) is joinIds of their ids %j', (ids) => {
    expect(joinIdsOf(ids.map((id) => ({ id: id, address: 'x' })))).toBe(joinIds(ids));
  });

  it('singleId: the one entry of a one-attempt list, null where parseIds must say', () => {
    expect(singleId(joinIds(['a,b ü']))).toBe('a,b ü');
    expect(singleId('gpu-a')).toBe('gpu-a');
    for (const list of [undefined, '', 'a,b', 'a,', '%E0%A4%A']) expect(singleId(list)).toBeNull();
  });

  const all = () => true;
  it.each<[string, string[], string[], (id: string) => boolean, string | null]>([
    ['the next entry', ['a', 'b', 'c'], ['a'], all, 'b'],
    ['after the last tried', ['a', 'b', 'c'], ['a', 'b'], all, 'c'],
    ['none left', ['a', 'b'], ['a', 'b'], all, null],
    ['skips an unusable entry', ['a', 'b', 'c'], ['a'], (id) => id !== 'b', 'c'],
    ['nothing usable', ['a', 'b', 'c'], ['a'], () => false, null],
    ['after a skipped entry', ['a', 'b', 'c', 'd'], ['a', 'c'], all, 'd'],
    ['nothing tried', ['a', 'b'], [], all, null],
    ['last tried not in the plan: by count, never a tried one', ['a', 'b', 'c'], ['x'], all, 'b'],
  ])('nextInPlan: %s', (_what, plan, tried, usable, expected) => {
    expect(nextInPlan(plan, tried, usable)).toBe(expected);
  });
});

describe('peer list helpers', () => {
  it('builds the API URL (trailing slashes ignored, upstream encoded)', () => {
    expect(peersUrl({ url: 'http://127.0.0.1:8080/api/9', upstream: 'llm', interval_s: 1 })).toBe('http://127.0.0.1:8080/api/9/http/upstreams/llm');
    expect(peersUrl({ url: 'http://plus/api/9//', upstream: 'a b/c', interval_s: 1 })).toBe('http://plus/api/9/http/upstreams/a%20b%2Fc');
  });

  it.each([
    [1, 750],
    [2, 1750],
    [0.3, 250],
  ])('a sync with interval %s s waits at most %s ms (it must end before the next beat kills it)', (interval, ms) => {
    expect(syncTimeoutMs(interval)).toBe(ms);
  });

  it('parses the stored list, or null for anything else', () => {
    const list = [
      { id: 'a', address: '10.0.0.1:80', weight: 2, health: 'draining', target: 'llm_balancer_0' },
      { id: 'x', address: '10.0.0.2:80', weight: 1, health: 'bogus' },
    ];
    expect(parseStoredPeers(JSON.stringify(list))).toEqual([
      { id: 'a', address: '10.0.0.1:80', weight: 2, health: 'draining' },
      { id: 'x', address: '10.0.0.2:80', weight: 1 },
    ]);
    expect(parseStoredPeers('[]')).toEqual([]);
    for (const bad of [undefined, '', 'not json', '{}', '[null]', '[{"id":"a","address":"b"}]', '[{"id":1,"address":"b","weight":1}]']) {
      expect(parseStoredPeers(bad)).toBeNull();
    }
  });

  it('links peers to configured replicas: their upstream block when id and address match, their keys when the id does', () => {
    const keysA = { inFlight: 'r:a:if' } as unknown as Replica['keys'];
    const configured: Replica[] = [
      { id: 'a', address: '10.0.0.1:80', weight: 1, keys: keysA },
      { id: 'b', address: '10.0.0.2:80', weight: 1 },
    ];
    const peers: Replica[] = [
      { id: '10.0.0.9:80', address: '10.0.0.9:80', weight: 1 },
      { id: 'b', address: '10.0.0.3:80', weight: 1 },
      { id: 'a', address: '10.0.0.1:80', weight: 1 },
    ];
    expect(linkPeers(peers, configured, ['llm_balancer_0', 'llm_balancer_1'])).toEqual(['10.0.0.9:80', '10.0.0.3:80', 'llm_balancer_0']);
    expect(peers[2].keys).toBe(keysA);
    expect(peers[0].keys).toBeUndefined();
  });

  it('keeps the first replica of a repeated id', () => {
    const r = (id: string, weight: number) => ({ id, address: id, weight, target: id });
    expect(uniqueReplicas([r('a', 1), r('b', 1), r('a', 5)])).toEqual([r('a', 1), r('b', 1)]);
  });
});

// ---- a fake njs host ----

interface FakeHost {
  numbers: Map<string, number>;
  strings: Map<string, string>;
  logs: string[];
  fetched: string[];
  /** What the next fetches do. */
  answer: () => Promise<FetchReply>;
  /** Makes dict.set of the string zone throw (a full zone). */
  full: boolean;
}

let fake: FakeHost;
const globals = globalThis as unknown as Record<string, unknown>;

function reply(status: number, body: string): Promise<FetchReply> {
  return Promise.resolve({ status, text: () => Promise.resolve(body) });
}

function installHost(): FakeHost {
  const host: FakeHost = { numbers: new Map(), strings: new Map(), logs: [], fetched: [], answer: () => reply(200, '{"peers":[]}'), full: false };
  globals.ngx = {
    INFO: 6,
    WARN: 5,
    ERR: 4,
    log: (level: number, message: string) => host.logs.push(level + ' ' + message),
    fetch: (url: string) => {
      host.fetched.push(url);
      return host.answer();
    },
    shared: {
      llm_balancer: {
        get: (k: string) => host.numbers.get(k),
        set: (k: string, v: number) => host.numbers.set(k, v),
        incr: (k: string, d: number, init: number) => {
          const next = (host.numbers.has(k) ? (host.numbers.get(k) as number) : init) + d;
          host.numbers.set(k, next);
          return next;
        },
        delete: (k: string) => host.numbers.delete(k),
      },
      llm_balancer_peers: {
        get: (k: string) => host.strings.get(k),
        set: (k: string, v: string) => {
          if (host.full) throw new Error('SharedMemoryError: no memory');
          host.strings.set(k, v);
        },
        delete: (k: string) => host.strings.delete(k),
      },
    },
  };
  return host;
}

const STATIC = [
  { id: 'a', address: '10.0.0.1:8000' },
  { id: 'b', address: '10.0.0.2:8000' },
  { id: 'c', address: '10.0.0.3:8000' },
];

function preload(plus: boolean, strategy = 'round-robin', retries = 2): void {
  const loaded = loadBalancerFile(
    JSON.stringify({
      strategy,
      retries,
      replicas: STATIC,
      nginx: plus ? { plus_api: { url: 'http://127.0.0.1:8080/api/9/', upstream: 'llm', interval_s: 1 } } : {},
    }),
  );
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  // A JSON round trip, as nginx reads the file.
  globals.llm_balancer_config = JSON.parse(JSON.stringify(preloadedConfig(loaded.config, loaded.nginx)));
}

/** A fresh njs VM: the module evaluated again (nothing at module level survives). */
async function vm() {
  vi.resetModules();
  const handlers = await import('../plugins/nginx/handlers');
  const peers = await import('../plugins/nginx/peers');
  return { handlers, syncPeers: peers.syncPeers };
}

function plusDocument(peers: { server: string; state?: 'up' | 'down' | 'draining'; weight?: number; backup?: boolean }[]): string {
  return JSON.stringify({ peers: peers.map((p, i) => documentedPeer(i, p)), keepalive: 0, zombies: 0, zone: 'llm' });
}


beforeEach(() => {
  fake = installHost();
});
afterEach(() => {
  delete globals.ngx;
  delete globals.llm_balancer_config;
  vi.useRealTimers();
});

describe('syncPeers (js_periodic)', () => {
  it('does nothing without nginx.plus_api', async () => {
    preload(false);
    await (await vm()).syncPeers();
    expect(fake.fetched).toEqual([]);
    expect(fake.strings.size).toBe(0);
  });

  it('stores the mapped peers (backups left out, configured ones by id) and when it read them', async () => {
    preload(true);
    fake.answer = () => reply(200, plusDocument([{ server: '10.0.0.2:8000', weight: 3 }, { server: '10.0.0.9:8000', state: 'draining' }, { server: '10.0.0.8:8000', backup: true }]));
    const before = Date.now();
    await (await vm()).syncPeers();
    expect(fake.fetched).toEqual(['http://127.0.0.1:8080/api/9/http/upstreams/llm']);
    expect(JSON.parse(fake.strings.get('peers') as string)).toEqual([
      { id: 'b', address: '10.0.0.2:8000', weight: 3, health: 'healthy', target: 'llm_balancer_1' },
      { id: '10.0.0.9:8000', address: '10.0.0.9:8000', weight: 1, health: 'draining', target: '10.0.0.9:8000' },
    ]);
    expect(Number(fake.strings.get('synced_at'))).toBeGreaterThanOrEqual(before);
    expect(fake.logs).toEqual([]);
  });

  it.each<[string, () => Promise<FetchReply>, string]>([
    ['HTTP 500', () => reply(500, '{"error":{}}'), 'answered HTTP 500'],
    ['HTTP 404 (no such upstream)', () => reply(404, '{"error":{}}'), 'answered HTTP 404'],
    ['a body that is not JSON', () => reply(200, '{"peers": ['), 'answered with a body that is not JSON'],
    ['JSON without peers', () => reply(200, '{"zone":"llm"}'), 'without the documented {peers: [{server, ...}]} shape'],
    ['a rejected fetch', () => Promise.reject(new Error('connect() failed (111: Connection refused)')), 'could not be read (connect() failed'],
    ['a body that cannot be read', () => Promise.resolve({ status: 200, text: () => Promise.reject(new Error('too large')) }), 'could not be read (too large)'],
  ])('%s: keeps the last list, one warning, no throw', async (_what, answer, words) => {
    preload(true);
    fake.answer = () => reply(200, plusDocument([{ server: '10.0.0.1:8000' }]));
    await (await vm()).syncPeers();
    const good = fake.strings.get('peers');
    const at = fake.strings.get('synced_at');
    fake.answer = answer;
    await expect((await vm()).syncPeers()).resolves.toBeUndefined();
    expect(fake.strings.get('peers')).toBe(good);
    expect(fake.strings.get('synced_at')).toBe(at);
    expect(fake.logs.length).toBe(1);
    expect(fake.logs[0]).toMatch(/^5 llm-balancer: NGINX Plus peer sync: GET http:\/\/127\.0\.0\.1:8080\/api\/9\/http\/upstreams\/llm /);
    expect(fake.logs[0]).toContain(words);
    expect(fake.logs[0]).toContain('routing on the last peer list (1 replicas, read at ');
  });

  it('gives up on a hanging API before the next beat, and says it routes on the static replicas before any sync', async () => {
    preload(true);
    vi.useFakeTimers();
    fake.answer = () => new Promise<FetchReply>(() => undefined);
    const run = (await vm()).syncPeers();
    await vi.advanceTimersByTimeAsync(749);
    expect(fake.logs).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await run;
    expect(fake.logs).toEqual(['5 llm-balancer: NGINX Plus peer sync: GET http://127.0.0.1:8080/api/9/http/upstreams/llm gave no answer within 750 ms; routing on the static replicas']);
    expect(fake.strings.size).toBe(0);
  });

  it("never clears a timer that already fired (QuickJS's clearTimeout throws on one; in a js_periodic run that crashed nginx 1.30's worker)", async () => {
    preload(true);
    const realSet = globalThis.setTimeout;
    const realClear = globalThis.clearTimeout;
    const fired = new Set<unknown>();
    const strictSet = (fn: () => void, ms?: number) => {
      const timer: unknown = realSet(() => {
        fired.add(timer);
        fn();
      }, ms);
      return timer;
    };
    const strictClear = (timer: unknown) => {
      if (fired.has(timer)) throw new ReferenceError('failed to find timer');
      realClear(timer as ReturnType<typeof setTimeout>);
    };
    Object.assign(globalThis, { setTimeout: strictSet, clearTimeout: strictClear });
    try {
      fake.answer = () => new Promise<FetchReply>(() => undefined);
      await (await vm()).syncPeers();
    } finally {
      Object.assign(globalThis, { setTimeout: realSet, clearTimeout: realClear });
    }
    expect(fake.logs).toEqual(['5 llm-balancer: NGINX Plus peer sync: GET http://127.0.0.1:8080/api/9/http/upstreams/llm gave no answer within 750 ms; routing on the static replicas']);
  });

  it('a full zone is a warning, not a throw', async () => {
    preload(true);
    fake.full = true;
    fake.answer = () => reply(200, plusDocument([{ server: '10.0.0.1:8000' }]));
    await expect((await vm()).syncPeers()).resolves.toBeUndefined();
    expect(fake.logs.length).toBe(1);
    expect(fake.logs[0]).toContain('SharedMemoryError');
  });
});

describe('handlers on the peer list', () => {
  async function sync(peers: Parameters<typeof plusDocument>[0]): Promise<void> {
    fake.answer = () => reply(200, plusDocument(peers));
    await (await vm()).syncPeers();
    expect(fake.logs).toEqual([]);
  }
  const inFlight = (id: string) => fake.numbers.get('r:' + id + ':if') ?? 0;
  const picks = (id: string) => fake.numbers.get('r:' + id + ':pk') ?? 0;

  it('routes on the static replicas until the first sync, then on the peers (by block or bare address)', async () => {
    preload(true);
    let ctx = (await vm()).handlers.context();
    expect(ctx.replicas.map((r) => r.id)).toEqual(['a', 'b', 'c']);
    expect(ctx.upstreams).toEqual(['llm_balancer_0', 'llm_balancer_1', 'llm_balancer_2']);
    expect(ctx.peers).toEqual({ upstream: 'llm', syncedAt: null });
    expect(ctx.replicas[0].keys?.inFlight).toBe('r:a:if');

    await sync([{ server: '10.0.0.3:8000', weight: 2 }, { server: '10.0.0.7:8000' }]);
    ctx = (await vm()).handlers.context();
    expect(ctx.replicas.map((r) => [r.id, r.weight, r.health])).toEqual([
      ['c', 2, 'healthy'],
      ['10.0.0.7:8000', 1, 'healthy'],
    ]);
    expect(ctx.upstreams).toEqual(['llm_balancer_2', '10.0.0.7:8000']);
    expect(ctx.replicas[0].keys?.inFlight).toBe('r:c:if');
    expect(ctx.peers?.syncedAt).toBe(Number(fake.strings.get('synced_at')));
    const r = fakeRequest();
    expect((await vm()).handlers.pick(r)).toBe('llm_balancer_2');
    expect(r.variables.llm_balancer_plan).toBe('c,10.0.0.7%3A8000');
    expect(r.variables.llm_balancer_tried).toBe('c');
  });

  it('without plus_api nothing reads the peer zone', async () => {
    preload(false);
    fake.strings.set('peers', '[{"id":"zz","address":"1.2.3.4:5","weight":1}]');
    const ctx = (await vm()).handlers.context();
    expect(ctx.replicas.map((r) => r.id)).toEqual(['a', 'b', 'c']);
    expect(ctx.peers).toBeNull();
  });

  it('a retry after a sync skips plan entries that left or went down; every attempt starts and ends once', async () => {
    preload(true);
    await sync([{ server: '10.0.0.1:8000' }, { server: '10.0.0.2:8000' }, { server: '10.0.0.3:8000' }, { server: '10.0.0.4:8000' }]);
    const r = fakeRequest();
    expect((await vm()).handlers.pick(r)).toBe('llm_balancer_0');
    expect(r.variables.llm_balancer_plan).toBe('a,b,c');
    // The sync reorders the list, takes b down and removes c (the plan's alternates).
    await sync([{ server: '10.0.0.4:8000' }, { server: '10.0.0.2:8000', state: 'down' }, { server: '10.0.0.1:8000' }]);
    // The first attempt failed (connection refused): the retry location's js_set, in a new VM.
    r.variables.upstream_status = '502';
    r.variables.upstream_response_time = '0.000';
    r.variables.upstream_header_time = '-';
    expect((await vm()).handlers.retry(r)).toBe('');
    expect(JSON.parse(r.variables.llm_balancer_error as string).error.code).toBe('replicas_unreachable');
    expect(r.variables.llm_balancer_tried).toBe('a');
    // The log phase ends the last (only) attempt.
    r.variables.status = '502';
    r.variables.request_completion = 'OK';
    expect((await vm()).handlers.outcome(r)).toBe('a connect-error');
    expect([inFlight('a'), picks('a'), picks('b'), picks('c')]).toEqual([0, 1, 0, 0]);
    expect(r.errors).toEqual([]);
  });

  it('a retry goes to the next usable alternate, by its current target, and the outcome ends it after it left the list', async () => {
    preload(true);
    await sync([{ server: '10.0.0.1:8000' }, { server: '10.0.0.9:8000' }, { server: '10.0.0.2:8000' }]);
    const r = fakeRequest();
    expect((await vm()).handlers.pick(r)).toBe('llm_balancer_0');
    expect(parseIds(r.variables.llm_balancer_plan)).toEqual(['a', '10.0.0.9:8000', 'b']);
    await sync([{ server: '10.0.0.2:8000' }, { server: '10.0.0.9:8000', state: 'draining' }]);
    r.variables.upstream_status = '504';
    r.variables.upstream_response_time = '1.000';
    r.variables.upstream_header_time = '-';
    expect((await vm()).handlers.retry(r)).toBe('llm_balancer_1');
    expect(parseIds(r.variables.llm_balancer_tried)).toEqual(['a', 'b']);
    expect([inFlight('a'), inFlight('b')]).toEqual([0, 1]);
    // b leaves the list before the response completes.
    await sync([{ server: '10.0.0.9:8000' }]);
    r.variables.upstream_status = '504 : 200';
    r.variables.upstream_response_time = '1.000 : 0.020';
    r.variables.upstream_header_time = '- : 0.010';
    r.variables.status = '200';
    r.variables.request_completion = 'OK';
    expect((await vm()).handlers.outcome(r)).toBe('b 200 20ms');
    expect([inFlight('a'), inFlight('b'), picks('a'), picks('b'), picks('10.0.0.9:8000')]).toEqual([0, 0, 1, 1, 0]);
    expect(fake.numbers.get('r:b:ns')).toBe(1);
    expect(r.errors).toEqual([]);
  });
});
