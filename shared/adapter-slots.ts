// Which LoRA adapters each replica was last sent: the gateway's own mirror of the replicas' GPU
// adapter slots. vLLM keeps its active adapters in an LRU of --max-loras slots and reports only the
// adapters of requests running or waiting now (vllm:lora_requests_info), so an adapter that sits
// idle in a slot is invisible in /metrics — and a scrape is up to an interval old. The gateway knows
// better what it sent: the max_loras adapters it sent a replica most recently are (approximately)
// the ones in its slots. Routing an adapter to a replica that was sent it recently, and a new adapter
// to a replica whose mirror has room, keeps each replica's adapters within its slots; a simulation
// of four 4-slot replicas under 24 Zipf-popular adapters had ~0.28x least-connections' loads this
// way, against ~0.5x for a fixed hash home per adapter (which cannot fit six adapters into four slots).
//
// Stored over the numeric Store (the njs shared dict, shared by every worker): per replica, the
// 13-bit tags of its most recent adapters, four to a number (4 × 13 = 52 bits, exact in a double),
// most recent first, in keys 'ls:<id>:0', 'ls:<id>:1', ... A tag is never 0 (0 marks "empty"). Two
// adapters sharing a tag (1 in 8191 per pair) look alike: that can cost a load, never a wrong
// route. Read-modify-write without a lock: two workers recording at once may drop one entry, which
// is the same kind of error as the approximation itself. Per gateway node (not Redis): every node
// also reads the replicas' running adapters, which show what other nodes sent.

import { hashString } from './hash';
import type { Store } from './types';

const TAG_SPACE = 8192;
const TAGS_PER_KEY = 4;
/** Slots tracked per replica at most (4 keys): past it, a replica with more slots counts as having room. */
export const MAX_TRACKED_SLOTS = 16;

/** The adapter's tag, 1..8191. */
export function adapterTag(adapter: string): number {
  return (hashString(adapter) % (TAG_SPACE - 1)) + 1;
}

function slotKey(replicaId: string, index: number): string {
  return 'ls:' + replicaId + ':' + index;
}

/** The tags of the adapters last sent to the replica, most recent first (at most MAX_TRACKED_SLOTS). */
export function sentAdapters(store: Store, replicaId: string): number[] {
  const tags: number[] = [];
  for (let k = 0; k * TAGS_PER_KEY < MAX_TRACKED_SLOTS; k++) {
    let packed = store.get(slotKey(replicaId, k));
    if (packed === undefined || packed === 0) break;
    for (let j = 0; j < TAGS_PER_KEY && packed > 0; j++) {
      tags.push(packed % TAG_SPACE);
      packed = Math.floor(packed / TAG_SPACE);
    }
  }
  return tags;
}

/** Records that the replica was sent `tag` now: it moves to the front; the list keeps `slots` tags (1..MAX_TRACKED_SLOTS). */
export function recordSentAdapter(store: Store, replicaId: string, tag: number, slots: number): void {
  const keep = Math.max(1, Math.min(MAX_TRACKED_SLOTS, slots));
  const before = sentAdapters(store, replicaId);
  if (before.length > 0 && before[0] === tag && before.length <= keep) return;
  const after: number[] = [tag];
  for (let i = 0; i < before.length && after.length < keep; i++) if (before[i] !== tag) after.push(before[i]);
  for (let k = 0; k * TAGS_PER_KEY < MAX_TRACKED_SLOTS; k++) {
    let packed = 0;
    for (let j = TAGS_PER_KEY - 1; j >= 0; j--) {
      const i = k * TAGS_PER_KEY + j;
      packed = packed * TAG_SPACE + (i < after.length ? after[i] : 0);
    }
    // A key past the list's end is emptied only if it held something (a shrink), else left absent.
    if (packed > 0 || store.get(slotKey(replicaId, k)) !== undefined) store.set(slotKey(replicaId, k), packed);
    if (packed === 0) break;
  }
}
