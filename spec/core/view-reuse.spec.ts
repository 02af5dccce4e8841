// The balancer fills the same view objects for every pick (balancer.ts viewFor), and the
// strategies rank with one random draw per tied place (ranking.ts cheapestFirst). Nothing of a
// previous pick may show through a reused view: a balancer that has picked many times orders
// exactly as a new one over the same state.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createBalancer } from '../../shared/balancer';
import { createMemoryStore } from '../../shared/memory-store';
import { blankView, buildView, keysOf } from '../../shared/replica-state';
import { cheapestFirst } from '../../shared/strategies/ranking';
import type { MetricReads, Random, Replica } from '../../shared/types';
import { configOf, fakeClock, scriptedRandom } from '../helpers/core';

const ALL_READS: MetricReads = { inFlight: true, latency: true, hashKey: false, tokens: true, body: false, replicaLoad: true };

/** A source that counts its draws and always returns `value`. */
function countingRandom(value: number): Random & { draws: number } {
  const random = {
    draws: 0,
    next: () => {
      random.draws++;
      return value;
    },
  };
  return random;
}

describe('cheapestFirst', () => {
  it('draws nothing when the cheapest is unique, and once per tied place', () => {
    const random = countingRandom(0);
    expect(cheapestFirst(['a', 'b', 'c'], [3, 1, 2], random, 2)).toEqual(['b', 'c']);
    expect(random.draws).toBe(0);
    expect(cheapestFirst(['a', 'b', 'c', 'd'], [1, 1, 1, 5], random, 3)).toEqual(['a', 'b', 'c']);
    expect(random.draws).toBe(2);
  });

  it('takes the drawn one of the tied minima, in candidate order', () => {
    // Ties at b, c, e: a draw in [2/3, 1) takes the third of them.
    expect(cheapestFirst(['a', 'b', 'c', 'd', 'e'], [4, 1, 1, 2, 1], scriptedRandom([0.7]), 1)).toEqual(['e']);
    expect(cheapestFirst(['a', 'b', 'c', 'd', 'e'], [4, 1, 1, 2, 1], scriptedRandom([0.4]), 1)).toEqual(['c']);
  });

  it('orders by cost, never repeats, and gives each tied minimum an equal chance', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -3, max: 3 }), { minLength: 1, maxLength: 9 }), fc.integer({ min: 1, max: 10 }), fc.double({ min: 0, max: 0.999999, noNaN: true }), (costs, count, u) => {
        const ids = costs.map((_, i) => i);
        const ordered = cheapestFirst(ids, costs.slice(), scriptedRandom([u]), count);
        expect(ordered.length).toBe(Math.min(count, costs.length));
        expect(new Set(ordered).size).toBe(ordered.length);
        for (let i = 1; i < ordered.length; i++) expect(costs[ordered[i - 1]]).toBeLessThanOrEqual(costs[ordered[i]]);
        const min = Math.min(...costs);
        const tied = ids.filter((i) => costs[i] === min);
        expect(ordered[0]).toBe(tied[Math.floor(u * tied.length)]);
      }),
    );
  });
});

describe('reused views', () => {
  it('a view filled for a replica without data shows nothing of the replica it showed before', () => {
    const store = createMemoryStore();
    const now = 1_000_000;
    const busy = keysOf('busy');
    store.set(busy.inFlight, 4);
    store.set(busy.tokens, 900);
    store.set(busy.samples, 3);
    store.set(busy.ewma, 250);
    store.set(busy.ewmaAt, now);
    store.set(busy.loadRunning, 7);
    store.set(busy.loadKv, 0.8);
    store.set(busy.loadInFlight, 4);
    store.set(busy.loadAt, now);
    const view = blankView();
    buildView(store, { id: 'busy', address: 'b:1', weight: 2 }, busy, ALL_READS, now, 10_000, true, undefined, 5000, 'e2e', undefined, view);
    expect(view).toMatchObject({ id: 'busy', inFlight: 4, tokens: 900, samples: 3, queue: 7, kvUsage: 0.8, halfOpen: true });
    const again = buildView(store, { id: 'idle', address: 'i:1', weight: 1 }, keysOf('idle'), ALL_READS, now, 10_000, false, undefined, 5000, 'e2e', undefined, view);
    expect(again).toBe(view);
    const { id, address, weight, inFlight, ewmaMs, samples, tokens, queue, kvUsage, halfOpen } = view;
    expect({ id, address, weight, inFlight, ewmaMs, samples, tokens, queue, kvUsage, halfOpen }).toEqual({
      id: 'idle',
      address: 'i:1',
      weight: 1,
      inFlight: 0,
      ewmaMs: null,
      samples: 0,
      tokens: 0,
      queue: null,
      kvUsage: null,
      halfOpen: false,
    });
  });

  it('a balancer that picked before orders like a new one over the same state (every load-reading strategy)', () => {
    const ids = ['a', 'b', 'c', 'd', 'e'];
    const replicaState = fc.record({
      inFlight: fc.integer({ min: 0, max: 6 }),
      tokens: fc.integer({ min: 0, max: 3000 }),
      ewma: fc.option(fc.integer({ min: 1, max: 900 }), { nil: undefined }),
      queue: fc.option(fc.integer({ min: 0, max: 9 }), { nil: undefined }),
      staleLoad: fc.boolean(),
      kv: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
    });
    const step = fc.record({ order: fc.shuffledSubarray(ids, { minLength: 1 }), states: fc.array(replicaState, { minLength: 5, maxLength: 5 }) });
    const strategies = ['least-connections', 'response-time', 'least-tokens', 'llm', 'hybrid'];
    fc.assert(
      fc.property(fc.constantFrom(...strategies), fc.array(step, { minLength: 2, maxLength: 6 }), (strategy, steps) => {
        const config = configOf({ strategy, retries: 2, replicas: ids.map((id, i) => ({ id, address: `10.0.0.${i + 1}:8000` })) });
        const clock = fakeClock();
        const store = createMemoryStore();
        // Always the first of tied candidates: both balancers then draw alike.
        const reused = createBalancer(config, { store, clock, random: { next: () => 0 } });
        for (const { order, states } of steps) {
          clock.advance(1000);
          const now = clock.now();
          order.forEach((id, i) => {
            const keys = keysOf(id);
            const s = states[i];
            store.set(keys.inFlight, s.inFlight);
            store.set(keys.tokens, s.tokens);
            if (s.ewma === undefined) store.delete(keys.samples);
            else {
              store.set(keys.samples, 1);
              store.set(keys.ewma, s.ewma);
              store.set(keys.ewmaAt, now);
            }
            if (s.queue === undefined) store.delete(keys.loadAt);
            else {
              store.set(keys.loadRunning, s.queue);
              store.set(keys.loadInFlight, s.inFlight);
              store.set(keys.loadAt, s.staleLoad ? now - 600_000 : now);
              if (s.kv === undefined) store.delete(keys.loadKv);
              else store.set(keys.loadKv, s.kv);
            }
          });
          const replicas: Replica[] = order.map((id) => ({ id, address: id, weight: 1 }));
          const fresh = createBalancer(config, { store: createMemoryStore(store.dump()), clock, random: { next: () => 0 } });
          const expected = fresh.pick(replicas, {});
          const actual = reused.pick(replicas, {});
          expect(actual.ok && actual.replicas.map((r) => r.id)).toEqual(expected.ok && expected.replicas.map((r) => r.id));
        }
      }),
      { numRuns: 150 },
    );
  });
});
