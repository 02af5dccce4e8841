// The emulated inference engine: a continuous-batching scheduler in the manner of vLLM's, with a
// paged KV cache and automatic prefix caching. Pure: no I/O, no real time; it runs on an injected
// EngineClock (clock.ts), so specs drive it on a manual clock and assert exact durations.
//
// The model
//   - A request becomes a SEQUENCE: promptTokenIds (from tokens.ts), outputTokens to generate, and
//     reservedOutputTokens (its max_tokens) to reserve in the KV cache.
//   - Sequences wait in a FIFO queue. The engine runs in STEPS. At the start of a step the scheduler
//     admits sequences from the head of the queue while fewer than maxNumSeqs are running and the
//     head's KV blocks fit in the free blocks; it stops at the first that does not fit (first come,
//     first served: no overtaking, like vLLM's default policy). Block size is 16 tokens, and a
//     sequence needs ceil((prompt + reservedOutputTokens) / 16) blocks, held until it finishes or is
//     cancelled. A sequence that could never fit (more blocks than the whole cache) is rejected.
//   - Prefix cache (vLLM's automatic prefix caching): the prompt's full 16-token blocks are hashed
//     in a chain, each block's hash covering its tokens AND its predecessor's hash, so a block hits
//     only if the whole prefix before it is the same. On admission the leading run of cached blocks
//     is a hit (at most all but the prompt's last token: the model must compute at least one position
//     to produce logits, as vLLM does); queries and hits are counted in tokens, as vLLM's
//     prefix_cache_queries / prefix_cache_hits counters are. The cache is an LRU of block hashes
//     bounded by prefixCacheTokens; a prompt's blocks are touched tail first so that eviction takes
//     tails before the shared heads (vLLM frees a request's blocks in reverse order for this reason).
//   - Step duration, in ms:
//         (decodeStepMs × (1 + batchSlowdown × (running − 1)) + Σ prefill of the sequences admitted
//          in this step) × slowdown × timeScale
//     where running counts every sequence in the step (new ones included) and a sequence's prefill
//     is prefillOverheadMs + prefillMsPerToken × (prompt tokens not found in the prefix cache);
//     plus lora.loadMs × timeScale for each adapter the step had to load (see LoRA below).
//     At the END of a step every sequence in it emits one token; a sequence that has emitted
//     outputTokens finishes and frees its blocks. So TTFT = queueing + the (longer) step that
//     prefilled it, and the inter-token latency = the duration of each following step, which grows
//     with the batch and with any prefill admitted alongside (vLLM's mixed prefill/decode steps).
//   - Event-driven: one timer per step (set for the step's end), plus a 0 ms "kick" when a request
//     arrives at an idle engine so that requests arriving in the same instant share the first step.
//     Steps follow each other back to back on the engine's own timeline (the next starts at the
//     modelled end of the previous, not when the timer happened to fire), so Node's 1 ms timer floor
//     and event-loop lag do not slow the emulated GPU down; see MAX_CATCH_UP_MS.
//   - LoRA adapters (when `lora` is given; vLLM's --enable-lora --max-loras N): a sequence may name
//     an adapter. Admission follows vLLM V1's scheduler (vllm/v1/core/sched/scheduler.py): the
//     running sequences' adapters are the step's scheduled adapters; a waiting sequence whose adapter
//     is not among them while they already number maxLoras is SKIPPED and stays waiting, and later
//     sequences may overtake it (unlike a KV-cache or maxNumSeqs limit, which stops admission). So
//     at most maxLoras distinct adapters run in a step, and a new adapter gets in once every running
//     sequence of some other adapter has finished. Sequences without an adapter are never held back.
//     Each step then makes its adapters resident in the GPU slots (lora-slots.ts: LRU, an idle
//     adapter evicted for a missing one). Every adapter loaded adds lora.loadMs to THAT step, as in
//     vLLM, whose worker loads adapters synchronously while preparing the batch: the new request's
//     first token is loadMs later, and every other running sequence's next token is too.
//   - Faults that live in the engine: `slowdown` multiplies step durations (a throttled or shared
//     GPU); `stalled` freezes it (a hung GPU): the step in progress does not end and no new step
//     starts until un-stalled; arrivals queue meanwhile.
//
// Parameters (ReplicaProfile fields, see profiles.ts for values and sources): maxNumSeqs,
// kvCacheTokens, prefixCacheTokens, prefillMsPerToken, prefillOverheadMs, decodeStepMs,
// batchSlowdown; plus timeScale (multiplies every duration: emulated time runs 1/timeScale times
// faster than a real GPU would) and the optional lora settings (maxLoras, loadMs).

import type { EngineClock, TimerHandle } from './clock';
import { createLoraSlots } from './lora-slots';
import type { LoraSlots } from './lora-slots';
import type { ReplicaProfile } from './profiles';

/** Tokens per KV-cache block and per prefix-cache block: vLLM's default block size on CUDA. */
export const BLOCK_TOKENS = 16;

/**
 * How far the engine's timeline may fall behind the real clock before it gives up catching up.
 * Behind by less, steps run back to back (timers due in the past fire at once) until the engine is
 * on time again, so throughput matches the model even when each step is shorter than Node's 1 ms
 * timer floor. Behind by more (the event loop was blocked, or the machine is saturated), the next
 * step starts now instead: a burst of tens of catch-up steps would be less realistic than the delay.
 */
export const MAX_CATCH_UP_MS = 100;

/** The profile fields the scheduler reads. */
export type EngineProfile = Pick<
  ReplicaProfile,
  'maxNumSeqs' | 'kvCacheTokens' | 'prefixCacheTokens' | 'prefillMsPerToken' | 'prefillOverheadMs' | 'decodeStepMs' | 'batchSlowdown'
>;

export interface EngineOptions {
  profile: EngineProfile;
  clock: EngineClock;
  /** Multiplies every duration; 1 = real-GPU speed. */
  timeScale?: number;
  /** Serve LoRA adapters (vLLM's --enable-lora); absent: a sequence naming an adapter is refused. */
  lora?: EngineLoraOptions;
  /** Called at the end of every step, on a consistent engine, before the step's tokens are delivered. */
  onStepEnd?: () => void;
}

export interface EngineLoraOptions {
  /** Distinct adapters per step and GPU slots (vLLM's --max-loras). */
  maxLoras: number;
  /** Time to load a missing adapter into a slot, ms at real-GPU speed (timeScale applies, slowdown does not: it is I/O). */
  loadMs: number;
}

/** Waiting and running sequences of one adapter that has any (vLLM's per-LoRA request counts). */
export interface LoraActivity {
  adapter: string;
  waiting: number;
  running: number;
}

export interface SequenceRequest {
  promptTokenIds: readonly number[];
  /** Tokens this sequence generates before it finishes (>= 1). */
  outputTokens: number;
  /** Output tokens reserved in the KV cache on admission (its max_tokens); defaults to outputTokens. */
  reservedOutputTokens?: number;
  /** The LoRA adapter it runs with; absent or null: the base model. */
  adapter?: string | null;
}

export interface SequenceListener {
  /** A token was generated; index counts from 0, atMs is the engine time of the step's end. */
  onToken(index: number, atMs: number): void;
  /** Called right after the last onToken. */
  onFinish(atMs: number): void;
}

export type SequenceState = 'waiting' | 'running' | 'finished' | 'cancelled';

export interface Sequence {
  readonly id: number;
  readonly promptTokens: number;
  readonly outputTokens: number;
  readonly adapter: string | null;
  readonly state: SequenceState;
  readonly arrivedAt: number;
  /** When the scheduler admitted it (its prefill step started), or null while waiting. */
  readonly admittedAt: number | null;
  /** Prompt tokens found in the prefix cache at admission (0 before). */
  readonly cachedPromptTokens: number;
  readonly generated: number;
  /** Removes it from the queue or the batch and frees its blocks; no further callbacks. */
  cancel(): void;
}

export type SubmitResult =
  | { ok: true; sequence: Sequence }
  | { ok: false; reason: 'exceeds-kv-capacity'; neededTokens: number; capacityTokens: number };

export interface EngineStats {
  running: number;
  waiting: number;
  kvBlocksUsed: number;
  /** KV blocks the waiting sequences will take when admitted (not yet in kvBlocksUsed). */
  kvBlocksWaiting: number;
  kvBlocksTotal: number;
  /** kvBlocksUsed / kvBlocksTotal, 0..1. */
  kvUsage: number;
  /** Prompt tokens looked up in the prefix cache (all prompt tokens of admitted sequences). */
  prefixQueries: number;
  /** Of those, tokens found in the prefix cache. */
  prefixHits: number;
  /** Prompt tokens of admitted sequences. */
  promptTokens: number;
  generationTokens: number;
  completed: number;
  cancelled: number;
  steps: number;
  /** Duration of the last finished step, ms of the clock (timeScale and slowdown applied); 0 before any. */
  lastStepMs: number;
  /** Sequences in the last finished step. */
  lastStepBatch: number;
  /** Of which admitted (prefilled) in it. */
  lastStepPrefills: number;
  slowdown: number;
  stalled: boolean;
  /** null when the engine serves no adapters. */
  lora: LoraStats | null;
}

export interface LoraStats {
  maxLoras: number;
  /** Adapters loaded into a GPU slot since start. */
  loads: number;
  /** Adapters evicted from a GPU slot to make room for another. */
  evictions: number;
  /** Adapters resident in the GPU slots, least recently used first. */
  resident: string[];
  /** Adapters with waiting or running sequences, in the order they became active (vLLM's dict order). */
  activity: LoraActivity[];
}

export interface Engine {
  submit(request: SequenceRequest, listener: SequenceListener): SubmitResult;
  /** Multiplies the duration of every step started from now on (> 0; 1 = none). */
  setSlowdown(factor: number): void;
  /** true freezes the engine (a hung GPU); false resumes it, ending a held step at once. */
  setStalled(stalled: boolean): void;
  stats(): EngineStats;
  /**
   * What a prompt would find cached here if it arrived now, without touching the cache (for an
   * oracle router that reads the true state): the leading prompt tokens in the prefix cache, or in
   * a waiting sequence's prompt (cached once it is admitted, before this one could be).
   */
  cachedPrefixTokens(promptTokenIds: readonly number[]): number;
  /** Cancels every timer and forgets every sequence, without callbacks. The engine is unusable after. */
  close(): void;
}

// ----- prefix hashing -----

/** The chain's root, standing for "no previous block" (vLLM seeds its chain with a fixed NONE_HASH). */
const CHAIN_ROOT = 0x1f0a_5c3d;
/** 2^32: splits and joins the 53-bit hashes into 32-bit lanes. */
const TWO_POW_32 = 4294967296;
/** The high lane keeps 21 bits so a hash fits a double exactly (21 + 32 = 53). */
const HIGH_LANE_MASK = 0x1f_ffff;

/**
 * A 53-bit hash of (parent hash, 16 token ids): two 32-bit multiply-xor lanes finished like
 * cyrb53. 53 bits keep collisions negligible for any cache size the emulator holds, and a number
 * is a cheap Map key.
 */
function blockHash(parent: number, ids: readonly number[], start: number): number {
  let h1 = (parent >>> 0) ^ 0xdeadbeef;
  let h2 = Math.floor(parent / TWO_POW_32) ^ 0x41c6ce57;
  for (let i = start; i < start + BLOCK_TOKENS; i++) {
    const id = ids[i];
    h1 = Math.imul(h1 ^ id, 2654435761);
    h2 = Math.imul(h2 ^ id, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return TWO_POW_32 * (HIGH_LANE_MASK & h2) + (h1 >>> 0);
}

/** Chain hashes of the prompt's full blocks; a trailing partial block is never cached. */
export function chainBlockHashes(ids: readonly number[]): number[] {
  const hashes: number[] = [];
  let parent = CHAIN_ROOT;
  for (let start = 0; start + BLOCK_TOKENS <= ids.length; start += BLOCK_TOKENS) {
    parent = blockHash(parent, ids, start);
    hashes.push(parent);
  }
  return hashes;
}

interface PrefixCache {
  /** Counts the leading cached blocks (at most maxHitBlocks), then records all blocks as recently used. */
  admit(hashes: readonly number[], maxHitBlocks: number): number;
  /** The leading cached blocks (at most maxHitBlocks), touching nothing. */
  peek(hashes: readonly number[], maxHitBlocks: number): number;
}

function createPrefixCache(capacityBlocks: number): PrefixCache {
  // A Map iterates in insertion order: delete + set moves a key to the newest end.
  const lru = new Map<number, true>();
  return {
    peek(hashes, maxHitBlocks) {
      let hits = 0;
      while (hits < hashes.length && hits < maxHitBlocks && lru.has(hashes[hits])) hits++;
      return hits;
    },
    admit(hashes, maxHitBlocks) {
      let hits = 0;
      while (hits < hashes.length && hits < maxHitBlocks && lru.has(hashes[hits])) hits++;
      if (capacityBlocks <= 0) return hits;
      for (let i = hashes.length - 1; i >= 0; i--) {
        lru.delete(hashes[i]);
        lru.set(hashes[i], true);
        if (lru.size > capacityBlocks) lru.delete(lru.keys().next().value as number);
      }
      return hits;
    },
  };
}

// ----- the engine -----

interface SequenceRecord extends Sequence {
  state: SequenceState;
  admittedAt: number | null;
  cachedPromptTokens: number;
  generated: number;
  blocks: number;
  hashes: readonly number[];
  listener: SequenceListener;
}

interface Step {
  endAt: number;
  durationMs: number;
  batch: SequenceRecord[];
  prefills: number;
}

type Delivery = { sequence: SequenceRecord; index: number; finished: boolean };

export function createEngine(options: EngineOptions): Engine {
  const profile = options.profile;
  const clock = options.clock;
  const timeScale = options.timeScale ?? 1;
  if (!(timeScale > 0)) throw new Error(`timeScale must be > 0, got ${timeScale}`);
  if (!(profile.maxNumSeqs >= 1)) throw new Error(`maxNumSeqs must be >= 1, got ${profile.maxNumSeqs}`);
  const totalBlocks = Math.floor(profile.kvCacheTokens / BLOCK_TOKENS);
  if (totalBlocks < 1) throw new Error(`kvCacheTokens must hold at least one ${BLOCK_TOKENS}-token block`);
  const prefixCache = createPrefixCache(Math.floor(profile.prefixCacheTokens / BLOCK_TOKENS));
  const lora = options.lora;
  if (lora !== undefined && !(lora.loadMs >= 0 && Number.isFinite(lora.loadMs))) throw new Error(`lora.loadMs must be a finite number >= 0, got ${lora.loadMs}`);
  const loraSlots: LoraSlots | null = lora === undefined ? null : createLoraSlots(lora.maxLoras);
  // Map order is the order adapters became active, as vLLM's per-LoRA dict keeps it; an adapter
  // leaves when it has neither waiting nor running sequences.
  const loraActivity = new Map<string, LoraActivity>();

  const waiting: SequenceRecord[] = [];
  const running: SequenceRecord[] = [];
  let usedBlocks = 0;
  let nextId = 1;
  let slowdown = 1;
  let stalled = false;
  let closed = false;
  let current: Step | null = null;
  let stepTimer: TimerHandle | null = null;
  let stepHeld = false;
  let kickTimer: TimerHandle | null = null;

  const counters = {
    prefixQueries: 0,
    prefixHits: 0,
    promptTokens: 0,
    generationTokens: 0,
    completed: 0,
    cancelled: 0,
    steps: 0,
    lastStepMs: 0,
    lastStepBatch: 0,
    lastStepPrefills: 0,
  };

  /** Moves one sequence of `adapter` between waiting (+1/-1) and running (+1/-1) counts. */
  function countAdapter(adapter: string | null, waitingDelta: number, runningDelta: number): void {
    if (adapter === null) return;
    let activity = loraActivity.get(adapter);
    if (activity === undefined) {
      activity = { adapter, waiting: 0, running: 0 };
      loraActivity.set(adapter, activity);
    }
    activity.waiting += waitingDelta;
    activity.running += runningDelta;
    if (activity.waiting === 0 && activity.running === 0) loraActivity.delete(adapter);
  }

  function removeFrom(list: SequenceRecord[], sequence: SequenceRecord): void {
    const index = list.indexOf(sequence);
    if (index >= 0) list.splice(index, 1);
  }

  function release(sequence: SequenceRecord): void {
    removeFrom(running, sequence);
    usedBlocks -= sequence.blocks;
    countAdapter(sequence.adapter, 0, -1);
  }

  function admit(sequence: SequenceRecord, now: number): number {
    const promptTokens = sequence.promptTokens;
    // At least the last prompt token is always computed.
    const maxHitBlocks = Math.floor((promptTokens - 1) / BLOCK_TOKENS);
    const cached = prefixCache.admit(sequence.hashes, maxHitBlocks) * BLOCK_TOKENS;
    sequence.state = 'running';
    sequence.admittedAt = now;
    sequence.cachedPromptTokens = cached;
    usedBlocks += sequence.blocks;
    running.push(sequence);
    countAdapter(sequence.adapter, -1, 1);
    counters.prefixQueries += promptTokens;
    counters.prefixHits += cached;
    counters.promptTokens += promptTokens;
    return profile.prefillOverheadMs + profile.prefillMsPerToken * (promptTokens - cached);
  }

  /** The distinct adapters of the running sequences, in batch order. */
  function runningAdapters(): Set<string> {
    const adapters = new Set<string>();
    for (const sequence of running) if (sequence.adapter !== null) adapters.add(sequence.adapter);
    return adapters;
  }

  function startStep(startAt: number): void {
    let prefillMs = 0;
    let prefills = 0;
    const scheduledAdapters = runningAdapters();
    const maxLoras = lora === undefined ? 0 : lora.maxLoras;
    let index = 0;
    // First come, first served, except that a sequence whose adapter would exceed maxLoras is
    // skipped and stays in place (vLLM V1); a full batch or KV cache stops admission outright.
    while (index < waiting.length && running.length < profile.maxNumSeqs && waiting[index].blocks <= totalBlocks - usedBlocks) {
      const candidate = waiting[index];
      const adapter = candidate.adapter;
      if (adapter !== null && !scheduledAdapters.has(adapter) && scheduledAdapters.size >= maxLoras) {
        index++;
        continue;
      }
      if (adapter !== null) scheduledAdapters.add(adapter);
      waiting.splice(index, 1);
      prefillMs += admit(candidate, startAt);
      prefills++;
    }
    if (running.length === 0) return;
    let loadMs = 0;
    if (loraSlots !== null && lora !== undefined) {
      loadMs = loraSlots.activate(Array.from(scheduledAdapters)).loaded.length * lora.loadMs;
    }
    const decodeMs = profile.decodeStepMs * (1 + profile.batchSlowdown * (running.length - 1));
    const durationMs = ((decodeMs + prefillMs) * slowdown + loadMs) * timeScale;
    current = { endAt: startAt + durationMs, durationMs, batch: running.slice(), prefills };
    stepTimer = clock.setTimer(current.endAt - clock.now(), endStep);
  }

  function endStep(): void {
    stepTimer = null;
    if (stalled) {
      stepHeld = true;
      return;
    }
    const step = current as Step;
    current = null;
    const now = clock.now();
    const endAt = Math.max(step.endAt, stepHeld ? now : step.endAt);
    stepHeld = false;

    const deliveries: Delivery[] = [];
    for (const sequence of step.batch) {
      if (sequence.state !== 'running') continue;
      const index = sequence.generated;
      sequence.generated++;
      counters.generationTokens++;
      const finished = sequence.generated >= sequence.outputTokens;
      if (finished) {
        sequence.state = 'finished';
        release(sequence);
        counters.completed++;
      }
      deliveries.push({ sequence, index, finished });
    }
    counters.steps++;
    counters.lastStepMs = step.durationMs;
    counters.lastStepBatch = step.batch.length;
    counters.lastStepPrefills = step.prefills;

    if (options.onStepEnd !== undefined) options.onStepEnd();
    if (running.length > 0 || waiting.length > 0) startStep(now - endAt > MAX_CATCH_UP_MS ? now : endAt);

    // Listeners run last, on a consistent engine: they may submit or cancel.
    for (const delivery of deliveries) {
      // A listener earlier in this loop may have cancelled a later sequence.
      if (delivery.sequence.state === 'cancelled') continue;
      delivery.sequence.listener.onToken(delivery.index, endAt);
      if (delivery.finished) delivery.sequence.listener.onFinish(endAt);
    }
  }

  function kick(): void {
    if (closed || stalled || current !== null || kickTimer !== null || waiting.length === 0) return;
    kickTimer = clock.setTimer(0, () => {
      kickTimer = null;
      if (!stalled && current === null) startStep(clock.now());
    });
  }

  return {
    submit(request, listener) {
      if (closed) throw new Error('engine closed');
      const outputTokens = request.outputTokens;
      const reserved = request.reservedOutputTokens ?? outputTokens;
      if (!(Number.isInteger(outputTokens) && outputTokens >= 1)) throw new Error(`outputTokens must be an integer >= 1, got ${outputTokens}`);
      if (!(reserved >= outputTokens)) throw new Error(`reservedOutputTokens (${reserved}) must be >= outputTokens (${outputTokens})`);
      const adapter = request.adapter ?? null;
      if (adapter !== null && lora === undefined) throw new Error(`adapter '${adapter}' requested from an engine without lora options`);
      const promptTokens = request.promptTokenIds.length;
      const neededTokens = promptTokens + reserved;
      const blocks = Math.ceil(neededTokens / BLOCK_TOKENS);
      if (blocks > totalBlocks) {
        return { ok: false, reason: 'exceeds-kv-capacity', neededTokens, capacityTokens: totalBlocks * BLOCK_TOKENS };
      }
      const sequence: SequenceRecord = {
        id: nextId++,
        promptTokens,
        outputTokens,
        adapter,
        state: 'waiting',
        arrivedAt: clock.now(),
        admittedAt: null,
        cachedPromptTokens: 0,
        generated: 0,
        blocks,
        hashes: chainBlockHashes(request.promptTokenIds),
        listener,
        cancel() {
          if (sequence.state === 'waiting') {
            removeFrom(waiting, sequence);
            countAdapter(sequence.adapter, -1, 0);
          } else if (sequence.state === 'running') release(sequence);
          else return;
          sequence.state = 'cancelled';
          counters.cancelled++;
        },
      };
      waiting.push(sequence);
      countAdapter(adapter, 1, 0);
      kick();
      return { ok: true, sequence };
    },

    setSlowdown(factor) {
      if (!(factor > 0 && Number.isFinite(factor))) throw new Error(`slowdown must be a finite number > 0, got ${factor}`);
      slowdown = factor;
    },

    setStalled(value) {
      if (stalled === value) return;
      stalled = value;
      if (stalled) return;
      if (stepHeld) endStep();
      else kick();
    },

    cachedPrefixTokens(promptTokenIds) {
      const hashes = chainBlockHashes(promptTokenIds);
      const maxHitBlocks = Math.floor((promptTokenIds.length - 1) / BLOCK_TOKENS);
      let hits = prefixCache.peek(hashes, maxHitBlocks);
      for (const sequence of waiting) {
        let shared = 0;
        while (shared < hashes.length && shared < maxHitBlocks && shared < sequence.hashes.length && sequence.hashes[shared] === hashes[shared]) shared++;
        if (shared > hits) hits = shared;
      }
      return hits * BLOCK_TOKENS;
    },
    stats() {
      return {
        running: running.length,
        waiting: waiting.length,
        kvBlocksUsed: usedBlocks,
        kvBlocksWaiting: waiting.reduce((sum, sequence) => sum + sequence.blocks, 0),
        kvBlocksTotal: totalBlocks,
        kvUsage: usedBlocks / totalBlocks,
        prefixQueries: counters.prefixQueries,
        prefixHits: counters.prefixHits,
        promptTokens: counters.promptTokens,
        generationTokens: counters.generationTokens,
        completed: counters.completed,
        cancelled: counters.cancelled,
        steps: counters.steps,
        lastStepMs: counters.lastStepMs,
        lastStepBatch: counters.lastStepBatch,
        lastStepPrefills: counters.lastStepPrefills,
        slowdown,
        stalled,
        lora:
          loraSlots === null
            ? null
            : {
                maxLoras: loraSlots.maxLoras,
                loads: loraSlots.loads(),
                evictions: loraSlots.evictions(),
                resident: loraSlots.resident(),
                activity: Array.from(loraActivity.values(), (activity) => Object.assign({}, activity)),
              },
      };
    },

    close() {
      closed = true;
      if (stepTimer !== null) stepTimer.cancel();
      if (kickTimer !== null) kickTimer.cancel();
      stepTimer = null;
      kickTimer = null;
      current = null;
      for (const sequence of waiting.concat(running)) sequence.state = 'cancelled';
      waiting.length = 0;
      running.length = 0;
      usedBlocks = 0;
      loraActivity.clear();
    },
  };
}
