// Which replica was last sent each prompt prefix: the gateway's approximation of the replicas'
// prefix caches (the Gateway API Inference Extension's prefix scorer and llm-d keep the same kind
// of index; SGLang's router keeps a radix tree per replica). A prefix is identified by its chained
// block hash (prefix-blocks.ts): the hash of block i stands for the WHOLE prompt up to block i, so
// a hit at depth i means its replica was sent that entire prefix.
//
// The table is direct-mapped over the numeric Store (so it lives in the njs shared dict and is
// shared by all nginx workers, with a fixed memory bound): slot = hash mod slots, holding one
// number = replica tag × 2^32 + block hash (21 + 32 bits, exact in a double). A newer block that
// maps to the same slot replaces the older one — recency wins, like an LRU with no bookkeeping;
// a lookup that finds another block's hash in the slot is a miss. The replica tag is 21 bits of
// the replica id's hash: two replicas sharing a tag (1 in 2 million per pair) would be confused,
// which can only misroute for cache affinity, never break routing.
//
// Cost per request: reads from the deepest block up to the first hit among the candidates, and
// one write per block whose slot does not already name this replica.

import type { Store } from './types';
import { hashString } from './hash';
import { memoise } from './memo';

const TWO_POW_32 = 4294967296;
// 53 - 32 bits: tag × 2^32 + hash stays below 2^53, an exact integer in a double.
const TAG_SHIFT = 11;

/** The 21-bit tag of a replica id (memoised: ids rarely change). */
export const replicaTag: (id: string) => number = memoise((id: string) => hashString(id) >>> TAG_SHIFT, 4096);

/** The tags of the candidates, in their order (the lookups below answer by index into it). */
export function candidateTags(candidates: Array<{ id: string }>): number[] {
  const tags: number[] = [];
  for (let i = 0; i < candidates.length; i++) tags.push(replicaTag(candidates[i].id));
  return tags;
}

export function slotKey(hash: number, slots: number): string {
  return 'pa:' + (hash % slots);
}

export function encodeEntry(tag: number, hash: number): number {
  return tag * TWO_POW_32 + hash;
}

/** The deepest block of `hashes` whose slot names one of `tags`: its depth (blocks matched) and index into tags; depth 0 when none. */
export function deepestMatch(store: Store, hashes: number[], slots: number, tags: number[]): { depth: number; index: number } {
  for (let i = hashes.length - 1; i >= 0; i--) {
    const entry = store.get(slotKey(hashes[i], slots));
    if (entry === undefined || entry % TWO_POW_32 !== hashes[i]) continue;
    const tag = Math.floor(entry / TWO_POW_32);
    for (let j = 0; j < tags.length; j++) {
      if (tags[j] === tag) return { depth: i + 1, index: j };
    }
  }
  return { depth: 0, index: -1 };
}

/**
 * Per tag, the depth of the deepest block of `hashes` whose slot names it (0: none): how much of
 * the prompt each replica was last sent. Reads from the deepest block down, and stops once every
 * tag has its depth.
 */
export function matchDepths(store: Store, hashes: number[], slots: number, tags: number[]): number[] {
  const depths: number[] = [];
  for (let j = 0; j < tags.length; j++) depths.push(0);
  let missing = tags.length;
  for (let i = hashes.length - 1; i >= 0 && missing > 0; i--) {
    const entry = store.get(slotKey(hashes[i], slots));
    if (entry === undefined || entry % TWO_POW_32 !== hashes[i]) continue;
    const tag = Math.floor(entry / TWO_POW_32);
    for (let j = 0; j < tags.length; j++) {
      if (tags[j] === tag && depths[j] === 0) {
        depths[j] = i + 1;
        missing--;
      }
    }
  }
  return depths;
}

/** Records that every block of `hashes` was sent to the replica with `tag`. */
export function recordRoute(store: Store, hashes: number[], slots: number, tag: number): void {
  for (let i = 0; i < hashes.length; i++) {
    const key = slotKey(hashes[i], slots);
    const entry = encodeEntry(tag, hashes[i]);
    if (store.get(key) !== entry) store.set(key, entry);
  }
}
