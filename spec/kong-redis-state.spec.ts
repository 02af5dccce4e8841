// kong.redis: per-replica in-flight and token counts shared by several Kong nodes through a REAL
// redis-server (build/fetch-redis.js, started per spec on a free port by testbed/lib/redis-process.ts).
//   - counts changed concurrently by several nodes add up exactly (each node its own connection)
//   - a node that dies (SIGKILL of a real Node process) stops counting once its lease runs out
//   - Redis down, or paused: reads give up within the bound, the node counts alone, logs once,
//     and rejoins (republishing its counts) when Redis is back
//   - two real kong-js-pluginservers with one plugin id and one Redis: a request held through one
//     node steers the other node's least-connections picks
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryStore } from '../shared/index';
import { loadPluginConfig } from '../plugins/kong/index';
import { createSharedState } from '../plugins/kong/redis-state';
import type { SharedState } from '../plugins/kong/redis-state';
import type { RedisOptions } from '../plugins/kong/options';
import { startRedis } from '../testbed/lib/redis-process';
import type { RedisServer } from '../testbed/lib/redis-process';
import { startBackends } from './helpers/backends';
import type { Backends } from './helpers/backends';
import { kongRequest, startBuiltPlugin } from './helpers/kong-harness';
import type { BuiltPlugin, KongResult } from './helpers/kong-harness';
import { REPO_ROOT } from './helpers/nginx-env';
import { prefixOwnerId } from './helpers/prefix';

const IN_FLIGHT_R1 = 'r:r1:if';
const TOKENS_R1 = 'r:r1:tk';
const IN_FLIGHT_R2 = 'r:r2:if';
const REPLICAS = [
  { id: 'r1', address: '127.0.0.1:1', weight: 1 },
  { id: 'r2', address: '127.0.0.1:2', weight: 1 },
];

let redis: RedisServer;
const open: SharedState[] = [];
let scopeSeq = 0;

beforeAll(async () => {
  redis = await startRedis();
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.stop()));
});

afterAll(async () => {
  await redis?.stop();
});

function options(overrides: Partial<RedisOptions> = {}): RedisOptions {
  return Object.assign(
    { url: redis.url, host: null, port: 6379, password: null, db: 0, tls: false, key_prefix: 'llmb:', timeout_ms: 500, lease_s: 10 },
    overrides,
  );
}

interface Node {
  counters: SharedState;
  /** The node's own state (what its adapter counted itself). */
  local: ReturnType<typeof createMemoryStore>;
  logs: string[];
}

/** Ejection times below are on a clock the spec sets (the trial lease is Redis's, in real ms). */
let fakeNow = 1_000_000;

function node(scope: string, nodeId: string, overrides: Partial<RedisOptions> = {}): Node {
  const logs: string[] = [];
  const local = createMemoryStore();
  const counters = createSharedState({
    redis: options(overrides),
    scope,
    local,
    nodeId,
    log: (m: string) => logs.push(m),
    trialMs: 10_000,
    ejectionRecordMs: 600_000,
    now: () => fakeNow,
  });
  open.push(counters);
  return { counters, local, logs };
}

function freshScope(): string {
  scopeSeq++;
  return 'llmb:spec' + scopeSeq + ':';
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Refreshes until `done` or the deadline; returns whether it got there. */
async function refreshUntil(n: Node, done: () => boolean, deadlineMs = 5000): Promise<boolean> {
  const deadline = Date.now() + deadlineMs;
  while (Date.now() < deadline) {
    await n.counters.refresh(REPLICAS);
    if (done()) return true;
    await sleep(20);
  }
  return false;
}

function read(n: Node, key: string): number {
  return n.counters.store.get(key) ?? 0;
}

async function connected(n: Node): Promise<void> {
  expect(await refreshUntil(n, () => n.counters.status().mode === 'shared' && n.logs.length === 0)).toBe(true);
}

describe('kong.redis configuration', () => {
  const base = { strategy: 'least-connections', replicas: [{ address: '127.0.0.1:9000' }] };

  it('is off by default and filled with reasoned defaults when given', () => {
    const off = loadPluginConfig({ ...base, kong: {} });
    expect(off.ok && off.kong.redis).toBe(null);
    const on = loadPluginConfig({ ...base, kong: { redis: { host: 'redis.internal' } } });
    expect(on.ok).toBe(true);
    if (on.ok) expect(on.kong.redis).toMatchObject({ host: 'redis.internal', port: 6379, db: 0, tls: false, key_prefix: 'llmb:', timeout_ms: 50, lease_s: 10 });
  });

  it.each([
    [{}, 'kong.redis', 'neither'],
    [{ url: 'redis://a:6379', host: 'a' }, 'kong.redis', 'both'],
    [{ url: 'http://a:6379' }, 'kong.redis.url', 'redis://'],
    [{ host: 'a', timeout_ms: 0 }, 'kong.redis.timeout_ms', 'between'],
    [{ host: 'a', lease_s: 0.5 }, 'kong.redis.lease_s', 'between'],
  ])('refuses %j with its field path', (redisConfig, path, words) => {
    const loaded = loadPluginConfig({ ...base, kong: { redis: redisConfig } });
    expect(loaded.ok).toBe(false);
    if (!loaded.ok) {
      const error = loaded.errors.find((e) => e.path === path);
      expect(error, JSON.stringify(loaded.errors)).toBeDefined();
      expect(error?.message).toContain(words);
    }
  });
});

describe('shared counters against a real redis-server', () => {
  it('counts that several nodes change concurrently add up exactly', async () => {
    const scope = freshScope();
    const nodes = [node(scope, 'n1'), node(scope, 'n2'), node(scope, 'n3'), node(scope, 'n4')];
    for (const n of nodes) await connected(n);
    // Each node starts and ends attempts in its own order, flushing after each change and reading
    // the others now and then: the writes of all four interleave on the server.
    await Promise.all(
      nodes.map(async (n, index) => {
        let seed = index * 7919 + 1;
        for (let step = 0; step < 120; step++) {
          seed = (seed * 48271) % 2147483647;
          const key = seed % 3 === 0 ? IN_FLIGHT_R2 : IN_FLIGHT_R1;
          const own = n.counters.store.get(key) ?? 0;
          // Start more often than end, so the totals end far from zero.
          if (seed % 5 < 3 || own <= 0) {
            n.counters.store.incr(key, 1, 0);
            n.counters.store.incr(TOKENS_R1, 2.5, 0);
          } else {
            n.counters.store.incr(key, -1, 0);
          }
          n.counters.flush();
          if (step % 10 === 0) await n.counters.refresh(REPLICAS);
        }
      }),
    );
    const own = { if1: 0, if2: 0, tk: 0 };
    // Flushes go out at the end of the event-loop turn; a read after them is ordered after them on
    // that node's connection. Once every node has read so, every write has landed: a second read
    // per node then sees all of them.
    await new Promise((resolve) => setImmediate(resolve));
    for (const n of nodes) await n.counters.refresh(REPLICAS);
    for (const n of nodes) await n.counters.refresh(REPLICAS);
    const observer = node(scope, 'observer');
    await connected(observer);
    for (const n of nodes) {
      const total1 = read(n, IN_FLIGHT_R1);
      const total2 = read(n, IN_FLIGHT_R2);
      // Every node sees the same totals, and they are the observer's.
      expect(total1).toBe(read(observer, IN_FLIGHT_R1));
      expect(total2).toBe(read(observer, IN_FLIGHT_R2));
    }
    // The totals are the sums of what each node counted itself.
    for (const n of nodes) {
      own.if1 += n.local.get(IN_FLIGHT_R1) ?? 0;
      own.if2 += n.local.get(IN_FLIGHT_R2) ?? 0;
      own.tk += n.local.get(TOKENS_R1) ?? 0;
    }
    expect(own.if1).toBeGreaterThan(20);
    expect(read(observer, IN_FLIGHT_R1)).toBe(own.if1);
    expect(read(observer, IN_FLIGHT_R2)).toBe(own.if2);
    // 2.5 tokens per start: fractions survive the Lua sum.
    expect(read(observer, TOKENS_R1)).toBe(own.tk);
  });

  it('a node that dies stops counting for the others once its lease has run out', async () => {
    const scope = freshScope();
    const survivor = node(scope, 'survivor');
    await connected(survivor);
    // A real process, killed with SIGKILL: no cleanup runs, only the lease can end its counts.
    const script = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-redis-node-')), 'doomed.mts');
    fs.writeFileSync(
      script,
      [
        `import { createSharedState } from ${JSON.stringify(path.join(REPO_ROOT, 'plugins/kong/redis-state.ts'))};`,
        `import { createMemoryStore } from ${JSON.stringify(path.join(REPO_ROOT, 'shared/index.ts'))};`,
        `const c = createSharedState({ redis: ${JSON.stringify(options({ lease_s: 1 }))}, scope: ${JSON.stringify(scope)}, local: createMemoryStore(), nodeId: 'doomed', log: () => {} });`,
        'const replicas = [{ id: "r1", address: "127.0.0.1:1", weight: 1 }];',
        'for (let i = 0; i < 50 && c.status().mode !== "shared"; i++) await new Promise((r) => setTimeout(r, 20));',
        'await new Promise((r) => setTimeout(r, 50));',
        'for (let i = 0; i < 3; i++) c.store.incr("r:r1:if", 1, 0);',
        'c.flush();',
        'await new Promise((r) => setImmediate(r));',
        'await c.refresh(replicas);',
        'process.stdout.write("ready\\n");',
        'setInterval(() => {}, 1000);',
      ].join('\n'),
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    try {
      const deadline = Date.now() + 15_000;
      while (!output.includes('ready') && Date.now() < deadline && child.exitCode === null) await sleep(20);
      expect(output).toContain('ready');
      expect(await refreshUntil(survivor, () => read(survivor, IN_FLIGHT_R1) === 3)).toBe(true);
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
      // Dead, but within its lease: still counted (the lease, not the connection, decides).
      await survivor.counters.refresh(REPLICAS);
      expect(read(survivor, IN_FLIGHT_R1)).toBe(3);
      // After the lease (1 s): gone, and its field removed from the hash.
      expect(await refreshUntil(survivor, () => read(survivor, IN_FLIGHT_R1) === 0, 4000)).toBe(true);
      const raw = new Redis(redis.url);
      try {
        expect(await raw.hexists(scope + 'c:' + IN_FLIGHT_R1, 'doomed')).toBe(0);
      } finally {
        raw.disconnect();
      }
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      fs.rmSync(path.dirname(script), { recursive: true, force: true });
    }
  });

  it('Redis down: reads give up at once, the node counts alone, logs once, and rejoins when Redis is back', async () => {
    const scope = freshScope();
    const a = node(scope, 'a');
    const b = node(scope, 'b');
    await connected(a);
    await connected(b);
    a.counters.store.incr(IN_FLIGHT_R1, 1, 0);
    a.counters.store.incr(IN_FLIGHT_R1, 1, 0);
    a.counters.flush();
    expect(await refreshUntil(b, () => read(b, IN_FLIGHT_R1) === 2)).toBe(true);

    await redis.stop();
    for (let i = 0; i < 5; i++) {
      const started = Date.now();
      await b.counters.refresh(REPLICAS);
      // The bound that defines "never wait on Redis": far below any request timeout.
      expect(Date.now() - started).toBeLessThan(1000);
    }
    expect(b.counters.status().mode).toBe('local');
    // Only its own counts now: one of its own in flight.
    b.counters.store.incr(IN_FLIGHT_R1, 1, 0);
    b.counters.flush();
    expect(read(b, IN_FLIGHT_R1)).toBe(1);
    expect(b.logs.filter((m) => m.includes('unavailable'))).toHaveLength(1);

    // Back, empty (nothing persisted): both nodes republish their counts with their leases.
    await redis.start();
    expect(await refreshUntil(b, () => read(b, IN_FLIGHT_R1) === 3)).toBe(true);
    expect(await refreshUntil(a, () => read(a, IN_FLIGHT_R1) === 3)).toBe(true);
    expect(b.counters.status().mode).toBe('shared');
    expect(b.logs).toHaveLength(2);
    expect(b.logs[1]).toContain('available again');
  });

  it('Redis paused (connected, not answering): a read gives up after timeout_ms', async () => {
    const scope = freshScope();
    // Leases of 30 s: their periodic refresh (every 10 s) cannot be what republishes below.
    const n = node(scope, 'p', { timeout_ms: 50, lease_s: 30 });
    const peer = node(scope, 'peer', { lease_s: 30 });
    await connected(n);
    await connected(peer);
    n.counters.store.incr(IN_FLIGHT_R2, 1, 0);
    redis.pause();
    try {
      const started = Date.now();
      await n.counters.refresh(REPLICAS);
      const waited = Date.now() - started;
      expect(waited).toBeGreaterThanOrEqual(45);
      expect(waited).toBeLessThan(1000);
      expect(n.counters.status().mode).toBe('local');
      expect(n.counters.status().lastError).toContain('50 ms');
      expect(read(n, IN_FLIGHT_R2)).toBe(1);
      // Changes while Redis hangs are held, not queued behind it.
      n.counters.store.incr(IN_FLIGHT_R2, 1, 0);
      n.counters.flush();
    } finally {
      redis.resume();
    }
    expect(await refreshUntil(n, () => n.counters.status().mode === 'shared')).toBe(true);
    // Back: what changed meanwhile reaches the other node.
    expect(await refreshUntil(peer, () => read(peer, IN_FLIGHT_R2) === 2, 3000)).toBe(true);
  });
});

const EJECTED_UNTIL_R1 = 'r:r1:eu';
const TRIAL_CLAIMS_R1 = 'r:r1:tc';

describe('the prefix table, ejections and half-open trials against a real redis-server', () => {
  it('prefix entries a pick recorded are written after the answer, not before, and another node reads exactly the slots it asks for', async () => {
    const scope = freshScope();
    const a = node(scope, 'a');
    const b = node(scope, 'b');
    await connected(a);
    await connected(b);
    const entry = 1234 * 4294967296 + 987654321;
    // The access phase: the pick records the entry, its flush writes the counts only.
    a.counters.store.set('pa:17', entry);
    a.counters.store.incr(IN_FLIGHT_R1, 1, 0);
    a.counters.flush();
    await new Promise((resolve) => setImmediate(resolve));
    await a.counters.refresh(REPLICAS);
    const raw = new Redis(redis.url);
    try {
      expect(await raw.hget(scope + 'pa', '17')).toBe(null);
      expect(await raw.hget(scope + 'c:' + IN_FLIGHT_R1, 'a')).toBe('1');
      // The log phase: now the entry goes, exactly (a 53-bit integer through Redis strings).
      a.counters.flush(true);
      await new Promise((resolve) => setImmediate(resolve));
      await a.counters.refresh(REPLICAS);
      expect(await raw.hget(scope + 'pa', '17')).toBe(String(entry));
    } finally {
      raw.disconnect();
    }
    // b learns the slot when its request asks for it, and only then.
    await b.counters.refresh(REPLICAS);
    expect(b.local.get('pa:17')).toBeUndefined();
    await b.counters.refresh(REPLICAS, ['pa:17', 'pa:18']);
    expect(b.local.get('pa:17')).toBe(entry);
    expect(b.local.get('pa:18')).toBeUndefined();
    // An entry b recorded itself and has not written yet is not overwritten by the fleet's older one.
    b.counters.store.set('pa:17', entry + 1);
    await b.counters.refresh(REPLICAS, ['pa:17']);
    expect(b.local.get('pa:17')).toBe(entry + 1);
  });

  it('an ejection one node decides applies on the others; one node wins the half-open trial; its lift reaches the others', async () => {
    const scope = freshScope();
    const [a, b, c] = [node(scope, 'a'), node(scope, 'b'), node(scope, 'c')];
    for (const n of [a, b, c]) await connected(n);
    const until = fakeNow + 30_000;
    // What the core's eject() writes, through a's store.
    a.counters.store.set('r:r1:ej', 1);
    a.counters.store.set('r:r1:ef', 2);
    a.counters.store.set(EJECTED_UNTIL_R1, until);
    a.counters.flush(true);
    expect(await refreshUntil(b, () => b.local.get(EJECTED_UNTIL_R1) === until)).toBe(true);
    expect(await refreshUntil(c, () => c.local.get(EJECTED_UNTIL_R1) === until)).toBe(true);
    expect(b.local.get('r:r1:ef')).toBe(2);
    expect(b.local.get('r:r1:ej')).toBe(1);
    // Still ejected: nobody is granted a trial.
    for (const n of [a, b, c]) await n.counters.refresh(REPLICAS);
    for (const n of [a, b, c]) expect(n.local.get(TRIAL_CLAIMS_R1)).toBeUndefined();

    // The ejection runs out: all three read at once; exactly one holds the trial, the others
    // mark it claimed locally (no candidate for them while it lasts).
    fakeNow = until + 1;
    await Promise.all([a, b, c].map((n) => n.counters.refresh(REPLICAS)));
    const blocked = [a, b, c].filter((n) => n.local.get(TRIAL_CLAIMS_R1) === 1);
    const holders = [a, b, c].filter((n) => n.local.get(TRIAL_CLAIMS_R1) === undefined);
    expect(blocked).toHaveLength(2);
    expect(holders).toHaveLength(1);
    const holder = holders[0];
    // Asking again changes nothing: the trial is held for its lease.
    await Promise.all([a, b, c].map((n) => n.counters.refresh(REPLICAS)));
    expect([a, b, c].filter((n) => n.local.get(TRIAL_CLAIMS_R1) === 1)).toHaveLength(2);

    // The trial succeeds on the holder: what the core writes on a half-open success.
    holder.counters.store.delete(EJECTED_UNTIL_R1);
    holder.counters.store.set('r:r1:el', fakeNow);
    holder.counters.flush(true);
    for (const n of blocked) {
      expect(await refreshUntil(n, () => n.local.get(EJECTED_UNTIL_R1) === undefined)).toBe(true);
      expect(n.local.get('r:r1:el')).toBe(fakeNow);
      // Slow start ramps it up again here as well, and the local trial mark is gone.
      expect(n.local.get('r:r1:as')).toBe(fakeNow);
      expect(n.local.get(TRIAL_CLAIMS_R1)).toBeUndefined();
    }
  });

  it('a failed trial ejects again for longer, everywhere, and a new trial waits for the new ejection to run out', async () => {
    const scope = freshScope();
    const [a, b] = [node(scope, 'a'), node(scope, 'b')];
    await connected(a);
    await connected(b);
    const first = fakeNow + 30_000;
    a.counters.store.set('r:r1:ej', 1);
    a.counters.store.set(EJECTED_UNTIL_R1, first);
    a.counters.flush(true);
    expect(await refreshUntil(b, () => b.local.get(EJECTED_UNTIL_R1) === first)).toBe(true);
    fakeNow = first + 1;
    // b reads first: b holds the trial; a is kept off the replica.
    await b.counters.refresh(REPLICAS);
    await a.counters.refresh(REPLICAS);
    expect(a.local.get(TRIAL_CLAIMS_R1)).toBe(1);
    expect(b.local.get(TRIAL_CLAIMS_R1)).toBeUndefined();
    // b's trial fails: re-ejected for twice as long (what the core's eject() writes).
    const second = fakeNow + 60_000;
    b.counters.store.set('r:r1:ej', 2);
    b.counters.store.set(EJECTED_UNTIL_R1, second);
    b.counters.flush(true);
    expect(await refreshUntil(a, () => a.local.get(EJECTED_UNTIL_R1) === second)).toBe(true);
    expect(a.local.get('r:r1:ej')).toBe(2);
    // a's local trial mark went with the new ejection; no trial until it runs out.
    expect(a.local.get(TRIAL_CLAIMS_R1)).toBeUndefined();
    fakeNow = second + 1;
    await a.counters.refresh(REPLICAS);
    await b.counters.refresh(REPLICAS);
    expect(a.local.get(TRIAL_CLAIMS_R1)).toBeUndefined();
    expect(b.local.get(TRIAL_CLAIMS_R1)).toBe(1);
  });
});

describe('two real plugin servers sharing one Redis', () => {
  let backends: Backends;
  const nodes: BuiltPlugin[] = [];

  beforeAll(async () => {
    backends = await startBackends(2);
    nodes.push(await startBuiltPlugin('kong-redis-1'), await startBuiltPlugin('kong-redis-2'));
  });

  afterEach(() => {
    backends.resetAll();
  });

  afterAll(async () => {
    for (const b of nodes.splice(0)) await b.stop();
    await backends?.close();
  });

  it('a request held through one node steers the other node\'s least-connections picks', async () => {
    const config = {
      strategy: 'least-connections',
      replicas: backends.list.map((b) => ({ address: b.address, weight: 1 })),
      kong: { redis: { url: redis.url, key_prefix: 'llmb:two-nodes:' }, status_path: '/llm-balancer/status' },
    };
    // One plugin id on both nodes, as Kong gives every node the same plugin row.
    const first = await nodes[0].kong.startInstance('llm-balancer', config, 'shared-plugin');
    const second = await nodes[1].kong.startInstance('llm-balancer', config, 'shared-plugin');
    const slow = backends.list[0];
    slow.behave({ mode: 'hold' });
    const held: Array<Promise<KongResult>> = [];
    try {
      // Through node 1 until b0 holds one request (b1 answers at once).
      for (let i = 0; i < 30 && slow.open === 0; i++) {
        const before = backends.list.reduce((s, b) => s + b.requests, 0);
        held.push(kongRequest(nodes[0].kong, first, {}));
        const deadline = Date.now() + 5000;
        while (backends.list.reduce((s, b) => s + b.requests, 0) === before && Date.now() < deadline) await sleep(10);
      }
      expect(slow.open).toBe(1);
      // Node 2 has nothing in flight itself: only the shared count keeps it off b0.
      const names: string[] = [];
      for (let i = 0; i < 12; i++) {
        const result = await kongRequest(nodes[1].kong, second, {});
        expect(result.status, result.body).toBe(200);
        names.push((JSON.parse(result.body) as { backend: string }).backend);
      }
      expect(names).not.toContain('b0');
      expect(names).toHaveLength(12);
      // The status page says what is shared and that Redis is connected; the rows show the
      // replica's total in flight, the other node's request included.
      const status = await kongRequest(nodes[1].kong, second, { method: 'GET', path: '/llm-balancer/status' });
      const document = JSON.parse(status.body) as { shared_state: Record<string, unknown>; replicas: Array<{ id: string; in_flight: number }> };
      expect(document.shared_state).toMatchObject({ redis: true, mode: 'shared', shared: ['in_flight', 'tokens', 'prefix_table', 'ejections', 'half_open_trials'] });
      expect(document.shared_state.local).toContain('latency');
      expect(document.replicas.find((r) => r.id === slow.address)?.in_flight).toBe(1);
      const metrics = await kongRequest(nodes[1].kong, second, { method: 'GET', path: '/llm-balancer/status', query: { format: 'prometheus' } });
      expect(metrics.body).toMatch(/^llm_balancer_redis_connected 1$/m);
      expect(metrics.body).toMatch(/^llm_balancer_state_shared\{state="prefix_table"\} 1$/m);
      expect(metrics.body).toMatch(/^llm_balancer_state_shared\{state="latency"\} 0$/m);
    } finally {
      slow.release();
      for (const r of await Promise.all(held)) expect(r.status).toBe(200);
    }
  });

  /** Distinct system prompts of ~2,300 characters (9 blocks of 256): each a shared prefix of its own. */
  const SYSTEMS = Array.from({ length: 8 }, (_, k) => `[system prompt ${k}] You are agent ${k}; follow the policy below. `.repeat(40));

  function chat(system: string, question: string): string {
    return JSON.stringify({ model: 'm', max_tokens: 20, messages: [{ role: 'system', content: system }, { role: 'user', content: question }] });
  }

  async function servedBy(built: BuiltPlugin, instance: number, payload: string): Promise<string> {
    const result = await kongRequest(built.kong, instance, { body: payload, headers: { 'content-type': 'application/json' } });
    expect(result.status, result.body).toBe(200);
    return (JSON.parse(result.body) as { backend: string }).backend;
  }

  it('without Redis: a new conversation goes to the same replica through either node (rendezvous placement)', async () => {
    const config = { strategy: 'prefix-affinity', replicas: backends.list.map((b) => ({ address: b.address, weight: 1 })) };
    const first = await nodes[0].kong.startInstance('llm-balancer', config, 'placement-plugin');
    const second = await nodes[1].kong.startInstance('llm-balancer', config, 'placement-plugin');
    const fleet = backends.list.map((b) => ({ id: b.address, weight: 1 }));
    const used = new Set<string>();
    for (let k = 0; k < SYSTEMS.length; k++) {
      const opening = chat(SYSTEMS[k], `conversation ${k}-A opens with a question. `.repeat(12));
      const owner = backends.list.find((b) => b.address === prefixOwnerId(fleet, JSON.parse(opening)))!.name;
      expect(await servedBy(nodes[0], first, opening), `system prompt ${k} through node 1`).toBe(owner);
      expect(await servedBy(nodes[1], second, chat(SYSTEMS[k], `conversation ${k}-B asks something else. `.repeat(12))), `system prompt ${k} through node 2`).toBe(owner);
      used.add(owner);
    }
    // Placed by hash, not piled onto one replica. The two backends' ports are random, so eight
    // prompts all hash to one of them with probability 2^-7: count the owners over many more
    // openings (pure, no requests) than the eight sent.
    const owners = new Set(Array.from(used, (name) => backends.list.find((b) => b.name === name)!.address));
    for (let k = 0; k < 40; k++) owners.add(prefixOwnerId(fleet, JSON.parse(chat(`[system prompt ${k}] another policy. `.repeat(40), 'a question'))));
    expect(owners).toEqual(new Set(backends.list.map((b) => b.address)));
  });

  it('with Redis: the prefix table is shared, so a conversation placed by load through one node continues on its replica through the other', async () => {
    // placement least-load: a new prefix goes to the less loaded replica (a random tie here), so
    // only the shared table can make node 2 agree with node 1 on all eight (2^-8 by chance).
    const config = {
      strategy: 'prefix-affinity',
      replicas: backends.list.map((b) => ({ address: b.address, weight: 1 })),
      prefix_affinity: { placement: 'least-load' },
      kong: { redis: { url: redis.url, key_prefix: 'llmb:prefix-table:' }, status_path: '/llm-balancer/status' },
    };
    const first = await nodes[0].kong.startInstance('llm-balancer', config, 'table-plugin');
    const second = await nodes[1].kong.startInstance('llm-balancer', config, 'table-plugin');
    // Both nodes connected (a request before that balances on the node's own state).
    for (let i = 0; i < 100 && (await sharedMode(nodes[0], first)) !== 'shared'; i++) await sleep(20);
    for (let i = 0; i < 100 && (await sharedMode(nodes[1], second)) !== 'shared'; i++) await sleep(20);
    const placed: string[] = [];
    for (let k = 0; k < SYSTEMS.length; k++) placed.push(await servedBy(nodes[0], first, chat(SYSTEMS[k], `conversation ${k} turn 1. `.repeat(12))));
    // The log phase wrote the entries after each answer; the next turns come through node 2.
    await sleep(50);
    for (let k = 0; k < SYSTEMS.length; k++) {
      const next = chat(SYSTEMS[k], `conversation ${k} turn 1. `.repeat(12) + 'and a follow-up question. '.repeat(10));
      expect(await servedBy(nodes[1], second, next), `system prompt ${k} through node 2`).toBe(placed[k]);
    }
  });

  it('with Redis: a replica one node ejected gets nothing from the other node, which never saw it fail', async () => {
    const config = {
      strategy: 'round-robin',
      retries: 0,
      replicas: backends.list.map((b) => ({ address: b.address, weight: 1 })),
      passive_health: { consecutive_failures: 2, base_ejection_s: 60 },
      kong: { redis: { url: redis.url, key_prefix: 'llmb:ejections:' }, status_path: '/llm-balancer/status' },
    };
    const first = await nodes[0].kong.startInstance('llm-balancer', config, 'ejection-plugin');
    const second = await nodes[1].kong.startInstance('llm-balancer', config, 'ejection-plugin');
    for (let i = 0; i < 100 && (await sharedMode(nodes[0], first)) !== 'shared'; i++) await sleep(20);
    for (let i = 0; i < 100 && (await sharedMode(nodes[1], second)) !== 'shared'; i++) await sleep(20);
    const failing = backends.list[0];
    failing.behave({ status: 500 });
    try {
      let ejected = false;
      for (let i = 0; i < 20 && !ejected; i++) {
        await kongRequest(nodes[0].kong, first, {});
        ejected = (await replicaState(nodes[0], first, failing.address)) === 'ejected';
      }
      expect(ejected).toBe(true);
      await sleep(50);
      const before = failing.requests;
      const names: string[] = [];
      for (let i = 0; i < 8; i++) {
        const result = await kongRequest(nodes[1].kong, second, {});
        names.push((JSON.parse(result.body) as { backend: string }).backend);
      }
      // Round robin through node 2 would send every other request to b0.
      expect(names).toEqual(Array(8).fill(backends.list[1].name));
      expect(failing.requests).toBe(before);
      expect(await replicaState(nodes[1], second, failing.address)).toBe('ejected');
    } finally {
      failing.behave({ status: 200 });
    }
  });

  async function statusOf(built: BuiltPlugin, instance: number): Promise<{ shared_state?: { mode: string }; replicas?: Array<{ id: string; state: string }> }> {
    const status = await kongRequest(built.kong, instance, { method: 'GET', path: '/llm-balancer/status' });
    return JSON.parse(status.body) as { shared_state?: { mode: string }; replicas?: Array<{ id: string; state: string }> };
  }

  async function sharedMode(built: BuiltPlugin, instance: number): Promise<string | undefined> {
    return (await statusOf(built, instance)).shared_state?.mode;
  }

  async function replicaState(built: BuiltPlugin, instance: number, id: string): Promise<string | undefined> {
    return (await statusOf(built, instance)).replicas?.find((r) => r.id === id)?.state;
  }
});
