import { describe, expect, it } from 'vitest';
import { memoise } from '../../shared/memo';
import { createSeededRandom } from '../../shared/random';

describe('memoise', () => {
  it('computes once per key and starts over when full', () => {
    const calls: string[] = [];
    const upper = memoise((key) => {
      calls.push(key);
      return key.toUpperCase();
    }, 2);
    expect([upper('a'), upper('a'), upper('b'), upper('a')]).toEqual(['A', 'A', 'B', 'A']);
    expect(calls).toEqual(['a', 'b']);
    upper('c'); // third key: the memo starts over, holding only c
    upper('a');
    expect(calls).toEqual(['a', 'b', 'c', 'a']);
  });
});

describe('createSeededRandom', () => {
  it('replays the same sequence for the same seed, stays in [0, 1), and differs across seeds', () => {
    const a = createSeededRandom(42);
    const b = createSeededRandom(42);
    const c = createSeededRandom(43);
    const first = Array.from({ length: 1000 }, () => a.next());
    expect(Array.from({ length: 1000 }, () => b.next())).toEqual(first);
    expect(Array.from({ length: 1000 }, () => c.next())).not.toEqual(first);
    for (const x of first) {
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(1);
    }
    const mean = first.reduce((s, x) => s + x, 0) / first.length;
    expect(mean).toBeGreaterThan(0.45);
    expect(mean).toBeLessThan(0.55);
  });

  it('treats seed 0 as 1 (xorshift would otherwise be stuck at 0)', () => {
    expect(createSeededRandom(0).next()).toBe(createSeededRandom(1).next());
  });
});
