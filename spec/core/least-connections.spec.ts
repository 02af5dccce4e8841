import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createBalancer } from '../../shared/balancer';
import { createMemoryStore } from '../../shared/memory-store';
import { connectionCost, createLeastConnections } from '../../shared/strategies/least-connections';
import type { StrategyContext } from '../../shared/types';
import { configOf, fakeClock, replicas, scriptedRandom, seededRandom, view } from '../helpers/core';

function context(random = seededRandom(3)): StrategyContext {
  return { request: {}, hashKey: null, requestTokens: 0, llm: null, random, now: 0, nextCursor: () => 0 };
}

describe('least-connections', () => {
  it.each([
    { inFlight: [3, 1, 2], weights: [1, 1, 1], expected: 'r1' },
    { inFlight: [2, 1], weights: [3, 1], expected: 'r0' }, // (2+1)/3 = 1 < (1+1)/1 = 2
    { inFlight: [0, 0], weights: [1, 2], expected: 'r1' }, // idle: the bigger card first
    { inFlight: [5, 5, 0], weights: [1, 1, 0.5], expected: 'r2' }, // (0+1)/0.5 = 2 < 6
  ])('picks the lowest (inFlight + 1) / weight: $inFlight / $weights → $expected', ({ inFlight, weights, expected }) => {
    const strategy = createLeastConnections(configOf({ strategy: 'least-connections' }));
    const views = inFlight.map((n, i) => view(`r${i}`, { inFlight: n, weight: weights[i] }));
    expect(strategy.order(views, context(), 1)[0].id).toBe(expected);
  });

  it('breaks ties without bias toward the first replica (the seed sketch always chose index 0)', () => {
    const strategy = createLeastConnections(configOf({ strategy: 'least-connections' }));
    const views = [view('a'), view('b'), view('c')];
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
    const random = seededRandom(11);
    for (let i = 0; i < 3000; i++) counts[strategy.order(views, context(random), 1)[0].id]++;
    for (const id of ['a', 'b', 'c']) {
      expect(counts[id]).toBeGreaterThan(800);
      expect(counts[id]).toBeLessThan(1200);
    }
  });

  it('keeps in-flight counts within 1 of each other (equal weights) under random starts and ends', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat(7)), { maxLength: 200 }), fc.integer({ min: 1, max: 6 }), (ops, n) => {
        const store = createMemoryStore();
        const balancer = createBalancer(configOf({ strategy: 'least-connections' }), {
          store,
          clock: fakeClock(),
          random: seededRandom(5),
        });
        const list = replicas(Array(n).fill(1));
        const inFlight = Array(n).fill(0);
        for (const [start, which] of ops) {
          if (start) {
            const result = balancer.pick(list, {});
            if (!result.ok) throw new Error(result.message);
            const i = Number(result.replicas[0].id.slice(1));
            // The pick is always a least-loaded replica...
            expect(inFlight[i]).toBe(Math.min(...inFlight));
            balancer.onStart(result.replicas[0].id);
            inFlight[i]++;
            // ...so starts alone never spread the counts by more than 1.
          } else {
            // End one request of the busiest replica: the spread then stays within 1.
            const i = inFlight.indexOf(Math.max(...inFlight));
            if (inFlight[i] === 0) continue;
            balancer.onEnd(list, `r${i}`, { status: 200, latencyMs: 10 + which });
            inFlight[i]--;
          }
          expect(Math.max(...inFlight) - Math.min(...inFlight)).toBeLessThanOrEqual(1);
          expect(balancer.status(list).map((s) => s.inFlight)).toEqual(inFlight);
        }
      }),
    );
  });

  it('sends new requests away from a replica holding slow requests', () => {
    const store = createMemoryStore();
    const balancer = createBalancer(configOf({ strategy: 'least-connections' }), { store, clock: fakeClock(), random: seededRandom(2) });
    const list = replicas([1, 1, 1]);
    for (let i = 0; i < 4; i++) balancer.onStart('r0'); // four long generations stuck on r0
    const picks: string[] = [];
    for (let i = 0; i < 8; i++) {
      const result = balancer.pick(list, {});
      if (!result.ok) throw new Error(result.message);
      balancer.onStart(result.replicas[0].id);
      picks.push(result.replicas[0].id);
    }
    expect(picks.filter((id) => id === 'r0')).toHaveLength(0);
  });

  describe('power of two choices (choices: 2)', () => {
    const config = configOf({ strategy: 'least-connections', least_connections: { choices: 2 } });

    it('takes the less loaded of the two sampled replicas', () => {
      const strategy = createLeastConnections(config);
      const views = [view('a', { inFlight: 9 }), view('b', { inFlight: 1 }), view('c', { inFlight: 5 }), view('d', { inFlight: 0 })];
      // Fisher–Yates with these draws samples a (index 0) then c (index 2): c is less loaded.
      const order = strategy.order(views, context(scriptedRandom([0, 0.5, 0.5])), 1);
      expect(order.map((v) => v.id)).toEqual(['c']);
    });

    it('never picks the single most loaded replica and returns distinct alternates', () => {
      const strategy = createLeastConnections(config);
      const views = [view('a', { inFlight: 9 }), view('b', { inFlight: 1 }), view('c', { inFlight: 5 }), view('d', { inFlight: 0 })];
      const random = seededRandom(9);
      for (let i = 0; i < 500; i++) {
        const order = strategy.order(views, context(random), 3);
        expect(order[0].id).not.toBe('a');
        expect(new Set(order.map((v) => v.id)).size).toBe(3);
      }
    });

    it('spreads load roughly evenly over equal idle replicas', () => {
      const strategy = createLeastConnections(config);
      const views = [view('a'), view('b'), view('c'), view('d')];
      const counts: Record<string, number> = { a: 0, b: 0, c: 0, d: 0 };
      const random = seededRandom(4);
      for (let i = 0; i < 4000; i++) counts[strategy.order(views, context(random), 1)[0].id]++;
      for (const id of Object.keys(counts)) expect(counts[id]).toBeGreaterThan(850);
    });
  });

  it('exposes its cost function', () => {
    expect(connectionCost(view('x', { inFlight: 3, weight: 2 }))).toBe(2);
  });
});
