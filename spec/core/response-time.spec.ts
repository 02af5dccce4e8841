import { describe, expect, it } from 'vitest';
import { createBalancer } from '../../shared/balancer';
import { decayWeight, readEwma, updateEwma } from '../../shared/ewma';
import { createMemoryStore } from '../../shared/memory-store';
import { latencyCost, meanEstimate, orderByLatency } from '../../shared/strategies/response-time';
import type { StrategyContext } from '../../shared/types';
import { configOf, fakeClock, replicas, seededRandom, view } from '../helpers/core';

function context(): StrategyContext {
  return { request: {}, hashKey: null, requestTokens: 0, llm: null, random: seededRandom(1), now: 0, nextCursor: () => 0 };
}

describe('time-decayed EWMA', () => {
  it.each([
    { elapsed: 0, weight: 1 },
    { elapsed: 10_000, weight: 0.5 },
    { elapsed: 20_000, weight: 0.25 },
    { elapsed: -5, weight: 1 },
  ])('keeps $weight of the old value after $elapsed ms with a 10 s half-life', ({ elapsed, weight }) => {
    expect(decayWeight(elapsed, 10_000)).toBeCloseTo(weight, 12);
  });

  it('blends by elapsed TIME, not by sample count', () => {
    // A sample right after the last one barely moves the average; one a half-life later moves it halfway.
    expect(updateEwma(100, 0, 200, 1, 10_000, false)).toBeCloseTo(100.007, 3);
    expect(updateEwma(200, 0, 100, 10_000, 10_000, false)).toBeCloseTo(150, 9);
  });

  it('is peak-sensitive when asked: a slower sample replaces the estimate at once', () => {
    expect(updateEwma(100, 0, 400, 1, 10_000, true)).toBe(400);
    expect(updateEwma(100, 0, 50, 10_000, 10_000, true)).toBeCloseTo(75, 9);
  });

  it('takes the first sample as it is, and decays toward zero while idle (so a slow replica is re-probed)', () => {
    expect(updateEwma(null, 0, 123, 5, 10_000, true)).toBe(123);
    expect(readEwma(80, 1000, 31_000, 10_000)).toBeCloseTo(10, 9);
  });

  it('decays the stored estimate with the fake clock', () => {
    const clock = fakeClock(0);
    const balancer = createBalancer(configOf({ strategy: 'response-time' }), { store: createMemoryStore(), clock, random: seededRandom(1) });
    const list = replicas([1]);
    balancer.onStart('r0');
    balancer.onEnd(list, 'r0', { status: 200, latencyMs: 400 });
    expect(balancer.status(list)[0].ewmaMs).toBe(400);
    clock.advance(10_000);
    expect(balancer.status(list)[0].ewmaMs).toBeCloseTo(200, 9);
  });
});

describe('response-time', () => {
  it('costs latency × (inFlight + 1) / weight', () => {
    const views = [view('a', { ewmaMs: 100, samples: 3, inFlight: 1, weight: 2 })];
    expect(latencyCost(views)(views[0])).toBe(100);
  });

  it('gives an unsampled replica the mean of the others, never 0 (the seed sketch scored it 0)', () => {
    const views = [view('a', { ewmaMs: 100, samples: 5 }), view('b', { ewmaMs: 300, samples: 5 }), view('new', { inFlight: 1 })];
    expect(meanEstimate(views)).toBe(200);
    expect(latencyCost(views)(views[2])).toBe(400);
  });

  it('tries an unsampled idle replica once so it earns samples, then judges it on cost', () => {
    const fast = view('fast', { ewmaMs: 10, samples: 50 });
    expect(orderByLatency([fast, view('new')], context(), 2).map((v) => v.id)).toEqual(['new', 'fast']);
    // With its first request still out it no longer jumps the queue: 10×1 beats mean 10 × 2.
    expect(orderByLatency([fast, view('new', { inFlight: 1 })], context(), 1)[0].id).toBe('fast');
  });

  it('routes to the faster replica and moves traffic off one made slow mid-run', () => {
    const clock = fakeClock(0);
    const balancer = createBalancer(configOf({ strategy: 'response-time', response_time: { half_life_s: 5 } }), {
      store: createMemoryStore(),
      clock,
      random: seededRandom(8),
    });
    const list = replicas([1, 1]);
    const latency: Record<string, number> = { r0: 50, r1: 50 };
    const share = (rounds: number) => {
      const counts: Record<string, number> = { r0: 0, r1: 0 };
      for (let i = 0; i < rounds; i++) {
        const result = balancer.pick(list, {});
        if (!result.ok) throw new Error(result.message);
        const id = result.replicas[0].id;
        counts[id]++;
        balancer.onStart(id);
        clock.advance(100);
        balancer.onEnd(list, id, { status: 200, latencyMs: latency[id] });
      }
      return counts;
    };
    const before = share(200);
    expect(Math.abs(before.r0 - before.r1)).toBeLessThan(60);
    latency.r0 = 500; // r0's GPU throttles
    const after = share(200);
    expect(after.r1).toBeGreaterThan(after.r0 * 4);
  });
});

describe('response-time with latency_metric ttft', () => {
  it('ranks by the time-to-first-byte estimate, not the end-to-end one', () => {
    const store = createMemoryStore();
    const clock = fakeClock();
    const fleet = replicas([1, 1]);
    const make = (metric: 'e2e' | 'ttft' | 'tpot') =>
      createBalancer(configOf({ strategy: 'response-time', response_time: { latency_metric: metric } }), { store, clock, random: seededRandom(1) });
    const recorder = make('ttft');
    // r0: long answers that start at once; r1: short answers that start late (a queue).
    recorder.onStart(fleet[0]);
    recorder.onEnd(fleet, fleet[0], { status: 200, latencyMs: 5000, ttftMs: 50 });
    recorder.onStart(fleet[1]);
    recorder.onEnd(fleet, fleet[1], { status: 200, latencyMs: 900, ttftMs: 800 });
    const first = (b: ReturnType<typeof make>) => {
      const result = b.pick(fleet, {});
      return result.ok ? result.replicas[0].id : null;
    };
    expect(first(make('ttft'))).toBe('r0');
    expect(first(make('e2e'))).toBe('r1');
  });

  it('latency_metric tpot ranks by time per output token; a replica without a TPOT sample gets the mean', () => {
    const store = createMemoryStore();
    const clock = fakeClock();
    const fleet = replicas([1, 1, 1]);
    const make = (metric: 'e2e' | 'ttft' | 'tpot') =>
      createBalancer(configOf({ strategy: 'response-time', retries: 2, response_time: { latency_metric: metric } }), { store, clock, random: seededRandom(1) });
    const recorder = make('tpot');
    // r0: slow start, fast decode; r1: quick start, slow decode; r2: answered, no TPOT known (a whole answer without usage).
    recorder.onStart(fleet[0]);
    recorder.onEnd(fleet, fleet[0], { status: 200, latencyMs: 3000, ttftMs: 900, tpotMs: 10 });
    recorder.onStart(fleet[1]);
    recorder.onEnd(fleet, fleet[1], { status: 200, latencyMs: 2000, ttftMs: 50, tpotMs: 40 });
    recorder.onStart(fleet[2]);
    recorder.onEnd(fleet, fleet[2], { status: 200, latencyMs: 100 });
    const order = (b: ReturnType<typeof make>) => {
      const result = b.pick(fleet, {});
      return result.ok ? result.replicas.map((r) => r.id) : null;
    };
    // tpot: r0 (10) < r2 (mean of 10 and 40 = 25) < r1 (40).
    expect(order(make('tpot'))).toEqual(['r0', 'r2', 'r1']);
    expect(order(make('ttft'))?.[0]).toBe('r1');
    expect(order(make('e2e'))?.[0]).toBe('r2');
    const rows = recorder.status(fleet);
    expect(rows.map((row) => row.tpotMs)).toEqual([10, 40, null]);
  });
});
