// prefix-placement — where a prompt prefix goes when no prefix table knows it, the same on every
// gateway node without shared state. Each node's prefix table (prefix-table.ts) learns only its own
// traffic: placed by load, a new conversation's prefix lands on a different replica through each
// node and the replicas' prefix caches are split N ways (issue 12: 71% → 52% hits at two nginx).
// Instead every node computes the same weighted rendezvous hash (consistent-hash.ts) over the
// eligible replicas, so the first request of a prefix goes to the same replica through any node, and
// each node's table then learns the same holder.
//
// The key is the chain hash of the prompt's FIRST block (block_tokens × 4 characters), because:
//   - it never changes as a conversation grows (turns only append), so a later turn arriving at a
//     node that never saw the conversation maps where the first turn went; a key of the first
//     min(k, n) blocks changes while the prompt is shorter than k blocks;
//   - a system prompt shared by many conversations (the prefix caching pays for) is one key, hence
//     one replica, on every node, as long as it fills one block (256 characters at the default);
//     shorter system prompts mix the user's first words into block 0 and spread per conversation,
//     which loses little: such a prefix is a fraction of one block of prefill;
//   - it is already computed (prefixBlockHashes' h[0]): no extra hashing per request.
// The price: all prompts sharing only their first block (one boilerplate opening) meet on one owner;
// the load guards (bounded load, imbalance thresholds) spill them as they spill a hot prefix.
// Block hashes count String.length units, code points in njs and UTF-16 units in Node
// (prefix-blocks.ts): an opening outside the Basic Multilingual Plane (emoji) may map differently on
// an nginx node than on a Kong node; nodes of one gateway always agree.
// Cost: O(N), one logarithm per candidate, and only when the table had no answer.

import { rendezvousOwner } from './strategies/consistent-hash';
import type { ReplicaView } from './types';

/** Index into `candidates` of the rendezvous owner of a prompt with these block hashes; -1 when it has no full block or there are no candidates. */
export function prefixOwner(candidates: ReplicaView[], blockHashes: number[]): number {
  if (blockHashes.length === 0) return -1;
  return rendezvousOwner(candidates, blockHashes[0]);
}

/**
 * The depth (in blocks) least-tokens and llm presume the owner of an UNKNOWN prefix holds, for
 * ordering only. What is honest: no node knows what the owner caches; it is only the likeliest
 * holder, since every node sends an unknown prefix there first. It is credited with min_match of
 * the prompt's blocks — the share the operator said a held prefix must reach to be worth steering
 * for — at least one block (the block it is chosen by): enough to win among replicas loaded within
 * that much, never as much as a real table match of the whole prefix, and load still overrides.
 * The credit is never counted as cached tokens in flight (least-tokens keeps the full prompt).
 */
export function presumedDepth(blocks: number, minMatch: number): number {
  if (blocks <= 0) return 0;
  const depth = Math.ceil(minMatch * blocks);
  return depth < 1 ? 1 : depth > blocks ? blocks : depth;
}
