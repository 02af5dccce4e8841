// The shootout's flags and the signal probe's rank maths (bench/shootout/main.ts, probe.ts): pure parts.
import { describe, expect, it } from 'vitest';
import { ALL_ROWS, parseChoices } from '../bench/shootout/main';
import { ranks, score, spearman } from '../bench/shootout/probe';

describe('shootout flags', () => {
  it('takes a seed, a known mix and known rows in the order given', () => {
    expect(parseChoices({ seed: '7', mix: 'short-chat', rows: 'kong least-connections, nginx round robin' })).toEqual({
      seed: 7,
      mix: 'short-chat',
      rows: ['kong least-connections', 'nginx round robin'],
    });
    expect(parseChoices({})).toEqual({});
  });

  it.each([
    [{ seed: 'x' }, "--seed must be a whole number >= 0, got 'x'"],
    [{ seed: '1.5' }, '--seed must be a whole number'],
    [{ seed: '' }, '--seed must be a whole number'],
    [{ mix: 'chatty' }, "--mix: unknown mix 'chatty' (known: short-chat,"],
    [{ rows: 'least-connections,least-conn' }, "--rows: unknown row 'least-conn' (known: nginx round robin,"],
    [{ rows: ' , ' }, '--rows: name at least one row'],
  ])('rejects %j with a message naming the flag', (values, message) => {
    expect(() => parseChoices(values)).toThrow(message);
  });

  it('lists the Kong rows among the known rows', () => {
    expect(ALL_ROWS).toContain('kong round-robin');
    expect(ALL_ROWS).toContain('kong least-connections');
  });
});

describe('signal probe maths', () => {
  it('ranks with ties sharing their mean position', () => {
    expect(ranks([30, 10, 20, 10])).toEqual([4, 1.5, 3, 1.5]);
  });

  it("Spearman's rho: 1 for the same order, -1 reversed, null without spread", () => {
    expect(spearman([1, 2, 3, 4], [10, 20, 30, 40])).toBeCloseTo(1, 10);
    expect(spearman([1, 2, 3, 4], [40, 30, 20, 10])).toBeCloseTo(-1, 10);
    expect(spearman([1, 1, 1, 1], [1, 2, 3, 4])).toBeNull();
    // Monotone but not linear: rank correlation is still 1.
    expect(spearman([1, 2, 3, 100], [1, 4, 9, 16])).toBeCloseTo(1, 10);
  });

  it('scores a signal against the truth over samples, skipping samples it cannot rank', () => {
    const samples = [
      { atMs: 0, truth: [0, 1, 2, 3], inFlight: [0, 1, 2, 3], ewmaMs: [400, 300, 200, 100] },
      { atMs: 500, truth: [3, 2, 1, 0], inFlight: [3, 2, 1, 0], ewmaMs: [null, 1, 1, 1] },
      { atMs: 1000, truth: [1, 1, 1, 1], inFlight: [0, 1, 2, 3], ewmaMs: [1, 2, 3, 4] },
    ];
    const inFlight = score(samples, 'in-flight/weight');
    // The third sample has no spread in the truth: skipped. In-flight ranks match the truth in both others.
    expect(inFlight.samples).toBe(2);
    expect(inFlight.rho).toBeCloseTo(1, 10);
    expect(inFlight.agree).toBe(1);
    const ewma = score(samples, 'latency EWMA');
    // Only the first sample has every estimate; it is exactly reversed.
    expect(ewma.samples).toBe(1);
    expect(ewma.rho).toBeCloseTo(-1, 10);
    expect(ewma.agree).toBe(0);
  });
});
