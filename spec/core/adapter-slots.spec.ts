// The gateway's mirror of each replica's LoRA slots (shared/adapter-slots.ts): an LRU of the
// adapters last sent, packed into the numeric Store, that behaves like a plain LRU list.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_TRACKED_SLOTS, adapterTag, recordSentAdapter, sentAdapters } from '../../shared/adapter-slots';
import { createMemoryStore } from '../../shared/memory-store';

describe('adapter slots mirror', () => {
  it('tags are 1..8191 and stable', () => {
    for (const name of ['a', 'adapter-00', 'sql-lora', '']) {
      const tag = adapterTag(name);
      expect(tag).toBeGreaterThanOrEqual(1);
      expect(tag).toBeLessThan(8192);
      expect(adapterTag(name)).toBe(tag);
    }
  });

  it('keeps the most recent first, without duplicates, cut at the slot count', () => {
    const store = createMemoryStore();
    expect(sentAdapters(store, 'r1')).toEqual([]);
    for (const tag of [1, 2, 3, 2, 4, 5]) recordSentAdapter(store, 'r1', tag, 3);
    expect(sentAdapters(store, 'r1')).toEqual([5, 4, 2]);
    // Per replica.
    expect(sentAdapters(store, 'r2')).toEqual([]);
  });

  it('property: equals an LRU list of the same size, for any sequence and slot count (shrinks included)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 8191 }), fc.integer({ min: 1, max: 24 })), { maxLength: 80 }), (steps) => {
        const store = createMemoryStore();
        let model: number[] = [];
        for (const [tag, slots] of steps) {
          recordSentAdapter(store, 'r', tag, slots);
          model = [tag, ...model.filter((t) => t !== tag)].slice(0, Math.min(slots, MAX_TRACKED_SLOTS));
          expect(sentAdapters(store, 'r')).toEqual(model);
        }
      }),
    );
  });
});
