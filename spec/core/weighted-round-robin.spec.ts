import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createBalancer } from '../../shared/balancer';
import { createMemoryStore } from '../../shared/memory-store';
import { integerWeights, smoothCycle } from '../../shared/strategies/weighted-round-robin';
import { configOf, fakeClock, replicas, seededRandom } from '../helpers/core';

function picksFor(weights: number[], count: number, retries = 0): string[] {
  const balancer = createBalancer(configOf({ strategy: 'weighted-round-robin', retries }), {
    store: createMemoryStore(),
    clock: fakeClock(),
    random: seededRandom(7),
  });
  const list = replicas(weights);
  const picks: string[] = [];
  for (let i = 0; i < count; i++) {
    const result = balancer.pick(list, {});
    if (!result.ok) throw new Error(result.message);
    picks.push(result.replicas[0].id);
  }
  return picks;
}

function countsOf(window: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const id of window) counts[id] = (counts[id] ?? 0) + 1;
  return counts;
}

describe('weighted-round-robin', () => {
  it.each([
    { weights: [1, 1, 0.8, 0.8], integers: [5, 5, 4, 4] },
    { weights: [100, 50, 30], integers: [10, 5, 3] },
    { weights: [0.25, 0.5], integers: [1, 2] },
    { weights: [3, 3, 3], integers: [1, 1, 1] },
    { weights: [65535, 1], integers: [1000, 1] },
  ])('turns weights $weights into integer shares $integers', ({ weights, integers }) => {
    expect(integerWeights(weights)).toEqual(integers);
  });

  it('follows nginx smooth weighted round robin: 5,1,1 gives a a b a c a a', () => {
    expect(smoothCycle([5, 1, 1]).map((i) => 'abc'[i]).join(' ')).toBe('a a b a c a a');
  });

  it("serves the seed's GPU weights 1.0,1.0,0.8,0.8 exactly 5:5:4:4 in EVERY window of 18 picks", () => {
    const picks = picksFor([1, 1, 0.8, 0.8], 18 * 5);
    for (let start = 0; start + 18 <= picks.length; start++) {
      expect(countsOf(picks.slice(start, start + 18))).toEqual({ r0: 5, r1: 5, r2: 4, r3: 4 });
    }
  });

  it('interleaves instead of bursting: equal-ish weights never repeat a replica back to back', () => {
    const picks = picksFor([1, 1, 0.8, 0.8], 36);
    for (let i = 1; i < picks.length; i++) expect(picks[i]).not.toBe(picks[i - 1]);
  });

  it('gives exact integer shares over any window of sum(weights) picks (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 7 }), fc.nat(50), (weights, offset) => {
        const reduced = integerWeights(weights);
        const total = reduced.reduce((a, b) => a + b, 0);
        const picks = picksFor(weights, offset + total);
        const counts = countsOf(picks.slice(offset, offset + total));
        reduced.forEach((w, i) => expect(counts[`r${i}`] ?? 0).toBe(w));
      }),
      { numRuns: 150 },
    );
  });

  it('never picks a weight-0 replica and alternates are distinct', () => {
    const picks = picksFor([2, 0, 1], 30, 1);
    expect(picks).not.toContain('r1');
    const balancer = createBalancer(configOf({ strategy: 'weighted-round-robin', retries: 2 }), {
      store: createMemoryStore(),
      clock: fakeClock(),
      random: seededRandom(1),
    });
    const result = balancer.pick(replicas([5, 1, 1]), {});
    expect(result.ok && new Set(result.replicas.map((r) => r.id)).size).toBe(3);
  });
});
