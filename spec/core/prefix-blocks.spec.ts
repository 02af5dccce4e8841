import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { combineHashes, hashString } from '../../shared/hash';
import { prefixBlockHashes, sharedBlocks } from '../../shared/prefix-blocks';

const BLOCK = 64; // 16 tokens at 4 characters per token
const MAX = 128;

/** `count` distinct full blocks of BLOCK characters: "block-0000-xxxx…", "block-0001-xxxx…". */
function blocks(count: number, tag = ''): string[] {
  return Array.from({ length: count }, (_, i) => `${tag}block-${String(i).padStart(4, '0')}-`.padEnd(BLOCK, 'x'));
}

function commonPrefixLength(s: string, t: string): number {
  let i = 0;
  while (i < s.length && i < t.length && s.charCodeAt(i) === t.charCodeAt(i)) i++;
  return i;
}

describe('prefixBlockHashes', () => {
  it('gives the same chain for the same key', () => {
    const key = blocks(6).join('');
    expect(prefixBlockHashes(key, BLOCK, MAX)).toEqual(prefixBlockHashes(key.slice(0), BLOCK, MAX));
    expect(prefixBlockHashes(key, BLOCK, MAX)).toHaveLength(6);
  });

  it('chains each block on the one before, starting from a fixed seed', () => {
    const parts = blocks(5);
    const chain = prefixBlockHashes(parts.join(''), BLOCK, MAX);
    for (let i = 1; i < parts.length; i++) expect(chain[i]).toBe(combineHashes(chain[i - 1], hashString(parts[i])));
    // Block 0 is combined with the seed, so its chain hash is not the plain hash of its text.
    expect(chain[0]).not.toBe(hashString(parts[0]));
    // ... and the seed is a constant: a one-block key gives the same first hash every time.
    expect(prefixBlockHashes(parts[0], BLOCK, MAX)).toEqual([chain[0]]);
  });

  it('keys equal for the first 3 blocks and different in the 4th share exactly 3 hashes', () => {
    const common = blocks(3).join('');
    const a = common + blocks(3, 'a-').join('');
    const b = common + blocks(3, 'b-').join('');
    const chainA = prefixBlockHashes(a, BLOCK, MAX);
    const chainB = prefixBlockHashes(b, BLOCK, MAX);
    expect(chainA).toHaveLength(6);
    expect(chainB).toHaveLength(6);
    expect(chainA.slice(0, 3)).toEqual(chainB.slice(0, 3));
    for (let i = 3; i < 6; i++) expect(chainA[i]).not.toBe(chainB[i]);
    expect(sharedBlocks(chainA, chainB)).toBe(3);
  });

  it('changes EVERY hash when one character of block 0 differs (chaining)', () => {
    const key = blocks(8).join('');
    const changed = key.slice(0, 10) + '#' + key.slice(11);
    const before = prefixBlockHashes(key, BLOCK, MAX);
    const after = prefixBlockHashes(changed, BLOCK, MAX);
    expect(after).toHaveLength(before.length);
    for (let i = 0; i < before.length; i++) expect(after[i]).not.toBe(before[i]);
    expect(sharedBlocks(before, after)).toBe(0);
  });

  it('ignores the partial last block: a key of 2.5 blocks gives 2 hashes', () => {
    const twoBlocks = blocks(2).join('');
    const key = twoBlocks + 'y'.repeat(BLOCK / 2);
    expect(prefixBlockHashes(key, BLOCK, MAX)).toEqual(prefixBlockHashes(twoBlocks, BLOCK, MAX));
    expect(prefixBlockHashes(key, BLOCK, MAX)).toHaveLength(2);
  });

  it.each([
    [0, 0],
    [BLOCK - 1, 0],
    [BLOCK, 1],
    [2 * BLOCK - 1, 1],
    [2 * BLOCK, 2],
    [8000, 125], // an 8,000-character prompt at 64 characters a block
  ])('hashes floor(length / blockChars) blocks: %i characters -> %i hashes', (length, count) => {
    expect(prefixBlockHashes('z'.repeat(length), BLOCK, MAX)).toHaveLength(count);
  });

  it('stops after maxBlocks blocks, keeping the leading ones', () => {
    const key = blocks(10).join('');
    const full = prefixBlockHashes(key, BLOCK, MAX);
    expect(full).toHaveLength(10);
    expect(prefixBlockHashes(key, BLOCK, 4)).toEqual(full.slice(0, 4));
    expect(prefixBlockHashes(key, BLOCK, 1)).toEqual(full.slice(0, 1));
    expect(prefixBlockHashes(key, BLOCK, 10)).toEqual(full);
  });

  it.each([
    ['blockChars 0', 'k'.repeat(256), 0, MAX],
    ['blockChars negative', 'k'.repeat(256), -64, MAX],
    ['blockChars fractional', 'k'.repeat(256), 1.5, MAX],
    ['blockChars NaN', 'k'.repeat(256), NaN, MAX],
    ['blockChars Infinity', 'k'.repeat(256), Infinity, MAX],
    ['maxBlocks 0', 'k'.repeat(256), BLOCK, 0],
    ['maxBlocks negative', 'k'.repeat(256), BLOCK, -1],
    ['maxBlocks fractional', 'k'.repeat(256), BLOCK, 2.5],
    ['maxBlocks NaN', 'k'.repeat(256), BLOCK, NaN],
    ['maxBlocks Infinity', 'k'.repeat(256), BLOCK, Infinity],
    ['key undefined', undefined, BLOCK, MAX],
    ['key null', null, BLOCK, MAX],
    ['key a number', 12345, 1, MAX],
  ])('returns [] for invalid arguments (%s) and never throws', (_what, key, blockChars, maxBlocks) => {
    expect(prefixBlockHashes(key as unknown as string, blockChars as number, maxBlocks as number)).toEqual([]);
  });

  it('counts String.length units (UTF-16 code units under Node): a block boundary inside a surrogate pair is fine', () => {
    const key = '😀😀😀'; // 6 code units
    const chain = prefixBlockHashes(key, 3, MAX);
    expect(chain).toHaveLength(2);
    expect(chain[1]).toBe(combineHashes(chain[0], hashString(key.slice(3, 6))));
  });

  it('yields unsigned 32-bit integers that survive a JSON round trip', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), fc.integer({ min: 1, max: 32 }), (key, blockChars) => {
        const chain = prefixBlockHashes(key, blockChars, MAX);
        expect(chain).toHaveLength(Math.floor(key.length / blockChars));
        expect(chain.every((h) => Number.isInteger(h) && h >= 0 && h < 2 ** 32)).toBe(true);
        expect(JSON.parse(JSON.stringify(chain))).toEqual(chain);
      }),
      { numRuns: 200 },
    );
  });

  it('shares floor(common prefix length / blockChars) blocks, capped by the chains and maxBlocks (property)', () => {
    // A two-letter alphabet makes long common prefixes and late first differences common.
    const text = (maxLength: number) => fc.string({ unit: fc.constantFrom('a', 'b'), maxLength });
    fc.assert(
      fc.property(text(120), text(60), text(60), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 40 }), (prefix, x, y, blockChars, maxBlocks) => {
        const s = prefix + x;
        const t = prefix + y;
        const chainS = prefixBlockHashes(s, blockChars, maxBlocks);
        const chainT = prefixBlockHashes(t, blockChars, maxBlocks);
        const expected = Math.min(Math.floor(commonPrefixLength(s, t) / blockChars), chainS.length, chainT.length, maxBlocks);
        expect(sharedBlocks(chainS, chainT)).toBe(expected);
      }),
      { numRuns: 1000 },
    );
  });

  it('the same property holds for arbitrary UTF-16 strings', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), fc.string({ unit: 'binary', maxLength: 200 }), fc.integer({ min: 1, max: 16 }), (s, t, blockChars) => {
        const chainS = prefixBlockHashes(s, blockChars, MAX);
        const chainT = prefixBlockHashes(t, blockChars, MAX);
        const expected = Math.min(Math.floor(commonPrefixLength(s, t) / blockChars), chainS.length, chainT.length);
        expect(sharedBlocks(chainS, chainT)).toBe(expected);
      }),
      { numRuns: 200 },
    );
  });

  it('never changes a key’s chain when text is appended (prefix stability, property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), fc.string({ maxLength: 300 }), fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 50 }), (key, more, blockChars, maxBlocks) => {
        const before = prefixBlockHashes(key, blockChars, maxBlocks);
        const after = prefixBlockHashes(key + more, blockChars, maxBlocks);
        expect(after.length).toBeGreaterThanOrEqual(before.length);
        expect(after.slice(0, before.length)).toEqual(before);
        expect(sharedBlocks(before, after)).toBe(before.length);
      }),
      { numRuns: 500 },
    );
  });
});

describe('prefixBlockHashes with a given block hash (BalancerDeps.hashText)', () => {
  it('hashes each full block once, in order, with it; hashString given explicitly is the default', () => {
    const seen: string[] = [];
    const key = 'abcdefghij';
    const chain = prefixBlockHashes(key, 4, 10, (text) => {
      seen.push(text);
      return text.length;
    });
    expect(seen).toEqual(['abcd', 'efgh']);
    expect(chain).toHaveLength(2);
    expect(chain).not.toEqual(prefixBlockHashes(key, 4, 10));
    expect(prefixBlockHashes(key, 4, 10, hashString)).toEqual(prefixBlockHashes(key, 4, 10));
  });

  it('keeps the chain property: a prompt extending another extends its chain', () => {
    const hash = (text: string) => hashString('salt' + text);
    fc.assert(
      fc.property(fc.string({ minLength: 0, maxLength: 60 }), fc.string({ maxLength: 30 }), (prefix, rest) => {
        const short = prefixBlockHashes(prefix, 5, 50, hash);
        const long = prefixBlockHashes(prefix + rest, 5, 50, hash);
        expect(long.slice(0, short.length)).toEqual(short);
      }),
    );
  });
});

describe('sharedBlocks', () => {
  it.each([
    ['both empty', [], [], 0],
    ['one empty', [], [1, 2], 0],
    ['identical', [1, 2, 3], [1, 2, 3], 3],
    ['first differs', [9, 2, 3], [1, 2, 3], 0],
    ['differ in the middle', [1, 2, 3, 4], [1, 2, 7, 4], 2],
    ['one a prefix of the other', [1, 2], [1, 2, 3, 4], 2],
    ['equal after a mismatch does not count', [1, 5, 3], [1, 6, 3], 1],
  ])('%s -> %i', (_what, a, b, expected) => {
    expect(sharedBlocks(a as number[], b as number[])).toBe(expected);
    expect(sharedBlocks(b as number[], a as number[])).toBe(expected);
  });
});
