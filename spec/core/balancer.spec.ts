import { describe, expect, it } from 'vitest';
import { createBalancer, needsRequestBody, replicasFromConfig } from '../../shared/balancer';
import type { Balancer } from '../../shared/balancer';
import { noReplicaError } from '../../shared/errors';
import { buildKeys } from '../../shared/replica-state';
import { createMemoryStore } from '../../shared/memory-store';
import type { Outcome, Replica } from '../../shared/types';
import { configOf, fakeClock, replicas, seededRandom } from '../helpers/core';
import type { FakeClock } from '../helpers/core';

const STRATEGIES = ['round-robin', 'weighted-round-robin', 'least-connections', 'response-time', 'consistent-hash', 'hybrid'] as const;

function configFor(strategy: string) {
  return configOf({
    strategy,
    retries: 2,
    hash_key: { source: 'header', name: 'x-user' },
    least_connections: { choices: 2 },
    passive_health: { consecutive_failures: 2, max_ejected_percent: 50 },
  });
}

/** A deep copy whose objects and arrays have a null prototype, like njs's js_preload_object. */
function withoutPrototypes<T>(value: T): T {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    const copy = value.map((item) => withoutPrototypes(item));
    Object.setPrototypeOf(copy, null);
    return copy as T;
  }
  const copy = Object.create(null) as Record<string, unknown>;
  for (const key of Object.keys(value)) copy[key] = withoutPrototypes((value as Record<string, unknown>)[key]);
  return copy as T;
}

interface Op {
  advance: number;
  end: boolean;
  which: number;
  user: string;
  outcome: Outcome;
}

/** A fixed, seeded script of request starts and ends, replayable on several balancers. */
function script(seed: number, length: number): Op[] {
  const r = seededRandom(seed);
  return Array.from({ length }, () => ({
    advance: Math.floor(r.next() * 200),
    end: r.next() < 0.45,
    which: Math.floor(r.next() * 1000),
    user: `u${Math.floor(r.next() * 7)}`,
    outcome: r.next() < 0.1 ? { status: 503, latencyMs: 5 } : { status: 200, latencyMs: 20 + Math.floor(r.next() * 300), ttftMs: 10 },
  }));
}

function run(balancer: Balancer, clock: FakeClock, list: Replica[], open: string[], ops: Op[]): string[] {
  return ops.map((op) => {
    clock.advance(op.advance);
    if (op.end && open.length > 0) {
      const id = open.splice(op.which % open.length, 1)[0];
      balancer.onEnd(list, id, op.outcome);
      return `end ${id}`;
    }
    const result = balancer.pick(list, { headers: { 'x-user': op.user } });
    if (!result.ok) return result.reason;
    balancer.onStart(result.replicas[0].id);
    open.push(result.replicas[0].id);
    return result.replicas.map((r) => r.id).join(',');
  });
}

describe('balancer', () => {
  it.each(STRATEGIES)('%s: state survives a JSON round trip (a restored balancer continues identically)', (strategy) => {
    const list = replicas([1, 2, 1, 0.5, 1]);
    const ops = script(99, 400);
    const clock = fakeClock(0);
    const store = createMemoryStore();
    const open: string[] = [];
    run(createBalancer(configFor(strategy), { store, clock, random: seededRandom(42) }), clock, list, open, ops.slice(0, 300));

    const saved = JSON.parse(JSON.stringify(store.dump()));
    const restoredClock = fakeClock(clock.now());
    const restoredOpen = [...open];

    const original = run(createBalancer(configFor(strategy), { store, clock, random: seededRandom(7) }), clock, list, open, ops.slice(300));
    const restored = run(
      createBalancer(configFor(strategy), { store: createMemoryStore(saved), clock: restoredClock, random: seededRandom(7) }),
      restoredClock,
      list,
      restoredOpen,
      ops.slice(300),
    );
    expect(restored).toEqual(original);
    expect(original.some((line) => !line.startsWith('end'))).toBe(true);
    expect(store.dump()).toEqual(JSON.parse(JSON.stringify(store.dump())));
  });

  it.each(STRATEGIES)('%s: works on a config whose objects and arrays have no prototype (as njs preloads it)', (strategy) => {
    const list = replicas([1, 2, 1, 0.5, 1]);
    const ops = script(3, 300);
    const normal = fakeClock(0);
    const bare = fakeClock(0);
    const expected = run(createBalancer(configFor(strategy), { store: createMemoryStore(), clock: normal, random: seededRandom(5) }), normal, list, [], ops);
    const actual = run(createBalancer(withoutPrototypes(configFor(strategy)), { store: createMemoryStore(), clock: bare, random: seededRandom(5) }), bare, list, [], ops);
    expect(actual).toEqual(expected);
    expect(expected.some((line) => line.startsWith('end') && ops.some((op) => op.outcome.status === 503))).toBe(true);
  });

  it.each(STRATEGIES)('%s: in-flight counts return to exactly 0 once every request has ended', (strategy) => {
    const list = replicas([1, 1, 3]);
    const clock = fakeClock(0);
    const balancer = createBalancer(configFor(strategy), { store: createMemoryStore(), clock, random: seededRandom(1) });
    const open: string[] = [];
    run(balancer, clock, list, open, script(5, 500));
    expect(balancer.status(list).reduce((sum, s) => sum + s.inFlight, 0)).toBe(open.length);
    for (const id of open) balancer.onEnd(list, id, { status: 200, latencyMs: 1 });
    expect(balancer.status(list).map((s) => s.inFlight)).toEqual([0, 0, 0]);
    // An extra end (a duplicated log line) never drives a count negative.
    balancer.onEnd(list, 'r0', { status: 200, latencyMs: 1 });
    expect(balancer.status(list)[0].inFlight).toBe(0);
  });

  it('reads state through the precomputed keys an adapter hands in (the njs module preloads them)', () => {
    const store = createMemoryStore();
    const balancer = createBalancer(configOf({ strategy: 'least-connections', retries: 0 }), { store, clock: fakeClock(), random: seededRandom(1) });
    const plain = replicas([1, 1]);
    for (let i = 0; i < 3; i++) balancer.onStart('r0');
    // With keys precomputed for the same ids the pick is the same as without them...
    const keyed = plain.map((r) => ({ ...r, keys: buildKeys(r.id) }));
    expect(balancer.pick(keyed, {})).toMatchObject({ ok: true, replicas: [{ id: 'r1' }] });
    // ...and the keys, not the id, decide what is read: swapped keys swap the loads.
    const swapped = [{ ...plain[0], keys: buildKeys('r1') }, { ...plain[1], keys: buildKeys('r0') }];
    expect(balancer.pick(swapped, {})).toMatchObject({ ok: true, replicas: [{ id: 'r0' }] });
    // onStart/onEnd given the replica object write through its keys too.
    balancer.onStart(swapped[0]); // counts on r1's keys
    expect(balancer.status(plain).map((s) => s.inFlight)).toEqual([3, 1]);
    balancer.onEnd(swapped, swapped[1], { status: 200, latencyMs: 5 }); // ends on r0's keys
    expect(balancer.status(plain).map((s) => [s.inFlight, s.samples])).toEqual([
      [2, 1],
      [1, 0],
    ]);
  });

  it('returns the pick plus up to `retries` distinct alternates', () => {
    const list = replicas([1, 1, 1]);
    for (const retries of [0, 1, 2, 5]) {
      const balancer = createBalancer(configOf({ strategy: 'least-connections', retries }), {
        store: createMemoryStore(),
        clock: fakeClock(),
        random: seededRandom(retries),
      });
      const result = balancer.pick(list, {});
      expect(result.ok && result.replicas.length).toBe(Math.min(3, 1 + retries));
      expect(result.ok && new Set(result.replicas.map((r) => r.id)).size).toBe(Math.min(3, 1 + retries));
    }
  });

  it('reports status rows with every metric', () => {
    const list = replicas([2]);
    const clock = fakeClock(0);
    const balancer = createBalancer(configOf({}), { store: createMemoryStore(), clock, random: seededRandom(1) });
    balancer.onStart('r0');
    balancer.onStart('r0');
    balancer.onEnd(list, 'r0', { status: 200, latencyMs: 120, ttftMs: 30 });
    expect(balancer.status(list)).toEqual([
      {
        id: 'r0',
        address: '10.0.0.1:8000',
        weight: 2,
        state: 'healthy',
        ejectedUntil: null,
        ejections: 0,
        inFlight: 1,
        ewmaMs: 120,
        ttftMs: 30,
        tpotMs: null,
        tokens: 0,
        queue: null,
        kvUsage: null,
        prefixQueries: null,
        prefixHits: null,
        samples: 1,
        picks: 2,
        failures: 0,
      },
    ]);
  });

  it('builds replicas from the static config and knows when the body is needed', () => {
    const config = configOf({ replicas: [{ address: '127.0.0.1:9001', weight: 2 }, { address: 'gpu-b:8000', id: 'b' }] });
    expect(replicasFromConfig(config)).toEqual([
      { id: '127.0.0.1:9001', address: '127.0.0.1:9001', weight: 2 },
      { id: 'b', address: 'gpu-b:8000', weight: 1 },
    ]);
    expect(needsRequestBody(config)).toBe(false);
    expect(needsRequestBody(configOf({ strategy: 'consistent-hash', hash_key: { source: 'body', name: 'user' } }))).toBe(true);
    expect(needsRequestBody(configOf({ strategy: 'hybrid', hash_key: { source: 'body', name: 'user' } }))).toBe(true);
    expect(needsRequestBody(configOf({ strategy: 'consistent-hash', hash_key: { source: 'header', name: 'x' } }))).toBe(false);
    expect(needsRequestBody(configOf({ strategy: 'hybrid', hash_key: { source: 'body', name: 'user' }, hybrid: { sticky: false } }))).toBe(false);
    expect(needsRequestBody(configOf({ strategy: 'least-connections', hash_key: { source: 'body', name: 'user' } }))).toBe(false);
  });

  it('describes a refusal as an OpenAI-style error body', () => {
    expect(noReplicaError('no-healthy-replica', 'all 4 replicas are down')).toEqual({
      error: { message: 'llm-balancer: all 4 replicas are down', type: 'service_unavailable', code: 'no_healthy_replica', param: null },
    });
  });
});
