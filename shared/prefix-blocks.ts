// prefix-blocks — chained hashes of a prompt's leading fixed-size blocks, for prefix-cache affinity.
// A replica that served a prompt keeps its KV cache, so the next request that starts with the
// same text is cheaper there. vLLM's automatic prefix caching hashes each full block of tokens
// together with the hash of the block before it, so one block hash names the WHOLE prefix up to
// and including that block; two prompts share exactly as many cached blocks as the length of
// the common leading run of their hash chains (docs.vllm.ai, design/prefix_caching). SGLang's
// router keeps a radix tree over the text instead; the Gateway API Inference Extension's prefix
// scorer hashes blocks of characters, as we do here.
// We have no tokenizer, so blocks are of characters: the caller passes blockChars = blockTokens × 4
// (the project's rule of 4 characters per token). Character blocks do not line up with the
// replica's token blocks, so shared blocks estimate the cached prefix; they do not count it.
// Only FULL blocks are hashed: a replica caches only full blocks, and leaving the partial tail
// out keeps a prompt's chain a prefix of the chain of any longer prompt that starts with it.
// Blocks count String.length units: UTF-16 code units under Node (Kong), code points under njs
// (measured in njs 0.8.9: '😀'.length is 1 there, 2 in Node). Text outside the Basic Multilingual
// Plane (emoji) therefore splits into different blocks on the two gateways; each gateway agrees
// with itself, which is all affinity needs, but chains are not portable between them.
// Cost: O(min(key.length, maxBlocks × blockChars)) character reads per call, one slice per block,
// no array but the result (an 8,000-character prompt at blockChars 64 is 125 blocks).

import { combineHashes, hashString } from './hash';

// The parent of block 0 (vLLM's root "NONE_HASH"). Any fixed value works; it must never change,
// since every worker, both gateways and every stored chain must agree on it. Starting from a
// seed also keeps block 0's chain hash apart from hashString(block 0), which other features
// (a consistent-hash key) may compute from the same text. ASCII "LLMP".
const CHAIN_SEED = 0x4c4c4d50;

/** A whole number ≥ 1 (rejects NaN, Infinity and fractions). */
function isCount(value: number): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1;
}

/**
 * A string's unsigned 32-bit hash: hashString by default. An adapter may give a native one
 * (BalancerDeps.hashText): hashing every character in an interpreter costs ~0.1 µs per character
 * under njs and QuickJS (~25 µs for one 256-character block, up to ~3 ms for a 32 KB prompt at
 * the default 128 blocks), where nginx's own MD5 takes ~2-5 µs per block (measured).
 */
export type TextHash = (text: string) => number;

/**
 * Hashes of the first floor(key.length / blockChars) FULL blocks of `key`, at most maxBlocks, each
 * chained on the one before: h[0] = combineHashes(seed, hash(block 0)),
 * h[i] = combineHashes(h[i-1], hash(block i)), `hash` being `hashText` (hashString when absent).
 * Unsigned 32-bit integers. A partial last block is not hashed (a replica caches only full
 * blocks). Invalid arguments (key not a string, blockChars or maxBlocks not an integer ≥ 1) give
 * [] and never throw: a request without a usable prefix simply has no affinity. Chains made with
 * different `hashText` functions never match: every gateway node of a kind must use the same.
 */
export function prefixBlockHashes(key: string, blockChars: number, maxBlocks: number, hashText?: TextHash): number[] {
  const hashes: number[] = [];
  if (typeof key !== 'string' || !isCount(blockChars) || !isCount(maxBlocks)) return hashes;
  let count = Math.floor(key.length / blockChars);
  if (count > maxBlocks) count = maxBlocks;
  const hash = hashText === undefined ? hashString : hashText;
  let previous = CHAIN_SEED;
  for (let i = 0; i < count; i++) {
    const start = i * blockChars;
    previous = combineHashes(previous, hash(key.slice(start, start + blockChars)));
    hashes.push(previous);
  }
  return hashes;
}

/**
 * Length of the common leading run of two hash chains: how many blocks two prompts share.
 * Chaining makes the first mismatch final, so the scan stops there. O(shared blocks).
 */
export function sharedBlocks(a: number[], b: number[]): number {
  const limit = a.length < b.length ? a.length : b.length;
  let i = 0;
  while (i < limit && a[i] === b[i]) i++;
  return i;
}
