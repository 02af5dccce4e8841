// The emulator's engine (testbed/emulator/model.ts) on a manual clock: every duration below is the
// model's arithmetic, asserted exactly; nothing here waits for real time.
import { describe, expect, it } from 'vitest';
import { createManualClock } from '../testbed/emulator/clock';
import type { ManualClock } from '../testbed/emulator/clock';
import { createCompletionPlanner, drawOutputLength, seededRandom } from '../testbed/emulator/content';
import { BLOCK_TOKENS, createEngine } from '../testbed/emulator/model';
import type { Engine, EngineProfile, Sequence } from '../testbed/emulator/model';
import { PROFILES } from '../testbed/emulator/profiles';
import { chatTokenIds, countChatTokens, countTextTokens, textTokenIds } from '../testbed/emulator/tokens';
import type { ChatMessage } from '../testbed/emulator/tokens';

// Round numbers so expected durations can be written by hand: a step with one sequence lasts
// 10 ms; each extra sequence adds 5 ms; a prefill costs 10 ms + 1 ms per uncached prompt token.
const PROFILE: EngineProfile = {
  maxNumSeqs: 4,
  kvCacheTokens: 1024,
  prefixCacheTokens: 1024,
  prefillMsPerToken: 1,
  prefillOverheadMs: 10,
  decodeStepMs: 10,
  batchSlowdown: 0.5,
};

interface Trace {
  sequence: Sequence;
  /** Clock time of each token. */
  tokens: number[];
  finishedAt: number | null;
}

interface Rig {
  clock: ManualClock;
  engine: Engine;
  submit(promptTokenIds: readonly number[], outputTokens: number, reservedOutputTokens?: number): Trace;
}

function rig(overrides: Partial<EngineProfile> = {}, timeScale = 1): Rig {
  const clock = createManualClock();
  const engine = createEngine({ profile: Object.assign({}, PROFILE, overrides), clock, timeScale });
  return {
    clock,
    engine,
    submit(promptTokenIds, outputTokens, reservedOutputTokens) {
      const trace = { tokens: [] as number[], finishedAt: null as number | null } as Trace;
      const result = engine.submit(
        { promptTokenIds, outputTokens, reservedOutputTokens },
        {
          onToken: (index, atMs) => {
            expect(index).toBe(trace.tokens.length);
            trace.tokens.push(atMs);
          },
          onFinish: (atMs) => {
            trace.finishedAt = atMs;
          },
        },
      );
      if (!result.ok) throw new Error(`rejected: ${result.reason}`);
      trace.sequence = result.sequence;
      return trace;
    },
  };
}

/** n distinct token ids starting at `from` (prompts built from different ranges share nothing). */
function ids(n: number, from = 0): number[] {
  return Array.from({ length: n }, (_, i) => from + i);
}

function intervals(times: number[]): number[] {
  return times.slice(1).map((time, i) => time - times[i]);
}

/** TTFT of a lone sequence on an idle engine: one step = decode at batch 1 + its prefill. */
function loneTtft(uncachedPromptTokens: number): number {
  return PROFILE.decodeStepMs + PROFILE.prefillOverheadMs + PROFILE.prefillMsPerToken * uncachedPromptTokens;
}

describe('prefill', () => {
  it.each([16, 64, 200])('a %i-token prompt with nothing cached: TTFT = decode step + overhead + 1 ms per token', (promptTokens) => {
    const r = rig();
    const trace = r.submit(ids(promptTokens), 3);
    r.clock.runUntilIdle();
    expect(trace.tokens[0]).toBe(loneTtft(promptTokens));
    expect(trace.sequence.cachedPromptTokens).toBe(0);
  });

  it('the same prompt again hits the prefix cache: fewer tokens prefilled, a shorter TTFT, hits counted in tokens', () => {
    const r = rig();
    const prompt = ids(64);
    const first = r.submit(prompt, 2);
    r.clock.runUntilIdle();
    const start = r.clock.now();
    const second = r.submit(prompt, 2);
    r.clock.runUntilIdle();
    // 64 tokens = 4 full blocks, but the last prompt token is always computed: 3 blocks hit.
    expect(second.sequence.cachedPromptTokens).toBe(48);
    expect(first.tokens[0]).toBe(loneTtft(64));
    expect(second.tokens[0] - start).toBe(loneTtft(64 - 48));
    const stats = r.engine.stats();
    expect(stats.prefixQueries).toBe(128);
    expect(stats.prefixHits).toBe(48);
    expect(stats.promptTokens).toBe(128);
  });
});

describe('prefix cache', () => {
  // A: 49 tokens = 3 full blocks + 1 token, so up to 3 blocks (48 tokens) may hit.
  const A = ids(49, 1000);
  it.each([
    { name: 'the identical prompt', second: A, hits: 48 },
    { name: 'a shared 32-token prefix, then different', second: A.slice(0, 32).concat(ids(17, 5000)), hits: 32 },
    { name: 'a different first block, the rest identical', second: ids(16, 9000).concat(A.slice(16)), hits: 0 },
    { name: 'one token changed in the first block', second: [7].concat(A.slice(1)), hits: 0 },
    // Without the chain, A's second block would hit here: same 16 tokens, another prefix before them.
    { name: "A's second block moved to the front", second: A.slice(16, 32).concat(ids(17, 7000)), hits: 0 },
    { name: 'one token changed in the third block', second: A.slice(0, 40).concat([7], A.slice(41)), hits: 32 },
    { name: 'a shorter prompt ending inside the shared blocks', second: A.slice(0, 20), hits: 16 },
  ])('chain hashing: $name hits $hits tokens', ({ second, hits }) => {
    const r = rig();
    r.submit(A, 1);
    r.clock.runUntilIdle();
    const trace = r.submit(second, 1);
    r.clock.runUntilIdle();
    expect(trace.sequence.cachedPromptTokens).toBe(hits);
  });

  it('cachedPrefixTokens tells what a prompt would hit, counting waiting prompts, and touches nothing', () => {
    const r = rig({ maxNumSeqs: 1 });
    expect(r.engine.cachedPrefixTokens(A)).toBe(0);
    r.submit(A, 1);
    r.clock.runUntilIdle();
    expect(r.engine.cachedPrefixTokens(A)).toBe(48);
    expect(r.engine.cachedPrefixTokens(A.slice(0, 32).concat(ids(17, 5000)))).toBe(32);
    // A long one runs; B waits behind it (one sequence at a time): B's blocks count as cached for a
    // prompt that shares them, since B is admitted first.
    const B = ids(49, 3000);
    r.submit(ids(20, 8000), 50);
    r.clock.advance(1);
    r.submit(B, 1);
    expect(r.engine.stats()).toMatchObject({ running: 1, waiting: 1 });
    expect(r.engine.cachedPrefixTokens(B.slice(0, 33))).toBe(32);
    // Peeking counted no query and moved nothing: A still hits in full.
    const before = r.engine.stats().prefixQueries;
    r.engine.cachedPrefixTokens(A);
    expect(r.engine.stats().prefixQueries).toBe(before);
    r.clock.runUntilIdle();
    const again = r.submit(A, 1);
    r.clock.runUntilIdle();
    expect(again.sequence.cachedPromptTokens).toBe(48);
  });

  it('chat conversations sharing a system prompt share its blocks and the next role tokens', () => {
    const system: ChatMessage = { role: 'system', content: 'x'.repeat(200) };
    const r = rig();
    r.submit(chatTokenIds([system, { role: 'user', content: 'first question here' }]), 1);
    r.clock.runUntilIdle();
    const trace = r.submit(chatTokenIds([system, { role: 'user', content: 'another question' }]), 1);
    r.clock.runUntilIdle();
    // Identical: 4 role tokens + 50 system tokens + the user's 4 role tokens = 58, i.e. 3 full blocks.
    expect(trace.sequence.cachedPromptTokens).toBe(48);
  });

  // X, then Y (3 blocks each), then X again. Blocks are touched tail first, so at 4 blocks Y's
  // insertion evicts X's tail (x3, x2) and keeps its head x1: X then hits 1 block, not 0.
  it.each([
    { capacityBlocks: 0, yHits: 0, xHits: 0 },
    { capacityBlocks: 4, yHits: 48, xHits: 16 },
    { capacityBlocks: 6, yHits: 48, xHits: 48 },
  ])('LRU bounded at $capacityBlocks blocks: Y again hits $yHits, X again hits $xHits', ({ capacityBlocks, yHits, xHits }) => {
    const r = rig({ prefixCacheTokens: capacityBlocks * BLOCK_TOKENS });
    const x = ids(49, 100);
    const y = ids(49, 200);
    const run = (prompt: number[]) => {
      const trace = r.submit(prompt, 1);
      r.clock.runUntilIdle();
      return trace.sequence.cachedPromptTokens;
    };
    run(x);
    run(y);
    expect(run(y)).toBe(yHits);
    expect(run(x)).toBe(xHits);
  });
});

describe('decode', () => {
  it.each([1, 2, 4])('with %i sequences running, every inter-token interval is decodeStepMs x (1 + slowdown x (N - 1))', (n) => {
    const r = rig();
    const traces = Array.from({ length: n }, (_, i) => r.submit(ids(16, i * 100), 5));
    r.clock.runUntilIdle();
    const step = PROFILE.decodeStepMs * (1 + PROFILE.batchSlowdown * (n - 1));
    for (const trace of traces) {
      // The first step also prefilled all N prompts (10 + 16 ms each).
      expect(trace.tokens[0]).toBe(step + n * (PROFILE.prefillOverheadMs + 16));
      expect(intervals(trace.tokens)).toEqual([step, step, step, step]);
      expect(trace.finishedAt).toBe(trace.tokens[4]);
    }
  });

  it('a prefill admitted mid-stream lengthens that step for the sequences already decoding', () => {
    const r = rig();
    const early = r.submit(ids(16), 6);
    r.clock.advance(40); // first token at 36; the second step [36, 46] is under way
    r.submit(ids(16, 500), 2);
    r.clock.runUntilIdle();
    // Steps: [0,36] prefill; [36,46] decode alone; [46,87] 2 seqs (15) + prefill (26); [87,102] 2 seqs,
    // after which the newcomer has its 2 tokens; then 10 ms steps alone again.
    expect(early.tokens).toEqual([36, 46, 87, 102, 112, 122]);
  });
});

describe('scheduling', () => {
  it('the (maxNumSeqs + 1)th request waits in the queue until a running one finishes', () => {
    const r = rig();
    const traces = Array.from({ length: 5 }, (_, i) => r.submit(ids(16, i * 100), 3));
    r.clock.advance(0);
    expect(r.engine.stats()).toMatchObject({ running: 4, waiting: 1 });
    // Batch of 4: first step 25 + 4 x 26 = 129, then two 25 ms steps: all four finish at 179.
    r.clock.advance(178);
    expect(r.engine.stats()).toMatchObject({ running: 4, waiting: 1 });
    expect(traces[4].tokens).toEqual([]);
    r.clock.runUntilIdle();
    expect(traces[0].finishedAt).toBe(179);
    expect(traces[4].sequence.admittedAt).toBe(179);
    expect(traces[4].tokens[0]).toBe(179 + loneTtft(16));
    expect(r.engine.stats()).toMatchObject({ running: 0, waiting: 0, completed: 5 });
  });

  it('KV admission: a request whose prompt + max tokens exceed the free blocks waits, and so does everyone behind it', () => {
    const r = rig({ kvCacheTokens: 256 }); // 16 blocks
    const a = r.submit(ids(100), 3, 60); // 160 tokens: 10 blocks
    const b = r.submit(ids(80, 1000), 2, 20); // 100 tokens: 7 blocks; 10 + 7 > 16
    const c = r.submit(ids(10, 2000), 2, 5); // 1 block: would fit, but first come first served
    r.clock.advance(0);
    expect(r.engine.stats()).toMatchObject({ running: 1, waiting: 2, kvBlocksUsed: 10, kvBlocksTotal: 16, kvUsage: 10 / 16 });
    r.clock.runUntilIdle();
    expect(b.sequence.admittedAt).toBe(a.finishedAt);
    expect(c.sequence.admittedAt).toBe(a.finishedAt);
    expect(r.engine.stats().kvBlocksUsed).toBe(0);
  });

  it('a request larger than the whole KV cache is rejected up front', () => {
    const r = rig({ kvCacheTokens: 256 });
    const result = r.engine.submit({ promptTokenIds: ids(250), outputTokens: 10 }, { onToken: () => undefined, onFinish: () => undefined });
    expect(result).toEqual({ ok: false, reason: 'exceeds-kv-capacity', neededTokens: 260, capacityTokens: 256 });
    expect(r.engine.stats().waiting).toBe(0);
  });

  it.each([
    { name: 'finishing', cancelAfterTokens: null },
    { name: 'being cancelled', cancelAfterTokens: 2 },
  ])('$name frees the KV blocks (usage back to 0)', ({ cancelAfterTokens }) => {
    const r = rig();
    const trace = r.submit(ids(40), 5, 100); // reserves ceil(140 / 16) = 9 blocks
    r.clock.advance(0);
    expect(r.engine.stats().kvBlocksUsed).toBe(9);
    if (cancelAfterTokens !== null) {
      while (trace.tokens.length < cancelAfterTokens) r.clock.advance(1);
      trace.sequence.cancel();
    }
    r.clock.runUntilIdle();
    expect(trace.tokens).toHaveLength(cancelAfterTokens ?? 5);
    expect(r.engine.stats()).toMatchObject({ running: 0, kvBlocksUsed: 0, kvUsage: 0 });
    expect(r.engine.stats().cancelled).toBe(cancelAfterTokens === null ? 0 : 1);
  });
});

describe('time scale and faults', () => {
  function scenario(timeScale: number): number[][] {
    const r = rig({}, timeScale);
    const traces = Array.from({ length: 6 }, (_, i) => r.submit(ids(20 + i, i * 100), 2 + i));
    r.clock.runUntilIdle();
    return traces.map((trace) => trace.tokens);
  }

  it.each([0.05, 0.1, 2])('timeScale %f multiplies every token time', (timeScale) => {
    const reference = scenario(1);
    const scaled = scenario(timeScale);
    scaled.forEach((times, i) => times.forEach((time, k) => expect(time).toBeCloseTo(reference[i][k] * timeScale, 9)));
  });

  it.each([1, 3])('slowdown %i multiplies step durations (and lastStepMs reports it)', (slowdown) => {
    const r = rig();
    r.engine.setSlowdown(slowdown);
    const trace = r.submit(ids(16), 4);
    r.clock.runUntilIdle();
    expect(intervals(trace.tokens)).toEqual([10 * slowdown, 10 * slowdown, 10 * slowdown]);
    expect(r.engine.stats()).toMatchObject({ lastStepMs: 10 * slowdown, lastStepBatch: 1, lastStepPrefills: 0 });
  });

  it('a stalled engine produces nothing and queues arrivals; un-stalled, it carries on', () => {
    const r = rig();
    const first = r.submit(ids(16), 3);
    r.clock.advance(50); // tokens at 36 and 46; the third step [46, 56] is under way
    r.engine.setStalled(true);
    const second = r.submit(ids(16, 300), 1);
    r.clock.advance(1000);
    expect(first.tokens).toEqual([36, 46]);
    expect(r.engine.stats()).toMatchObject({ running: 1, waiting: 1, stalled: true });
    r.engine.setStalled(false);
    r.clock.runUntilIdle();
    // The held step ends at the resume (1050) and `first` finishes; the next step prefills `second` alone.
    expect(first.tokens).toEqual([36, 46, 1050]);
    expect(second.tokens).toEqual([1050 + loneTtft(16)]);
  });
});

describe('determinism', () => {
  it('the same submissions on two engines give the same transcript', () => {
    const transcript = () => {
      const r = rig({ maxNumSeqs: 2, kvCacheTokens: 320 });
      const traces = [r.submit(ids(64), 5, 50), r.submit(ids(64), 3), r.submit(ids(33, 7), 4, 200), r.submit(ids(16, 9), 2)];
      r.clock.runUntilIdle();
      return { tokens: traces.map((t) => t.tokens), cached: traces.map((t) => t.sequence.cachedPromptTokens), stats: r.engine.stats() };
    };
    expect(transcript()).toEqual(transcript());
  });

  it('a planner with the same seed plans the same lengths and words; another seed does not', () => {
    const plans = (seed: number) => {
      const planner = createCompletionPlanner(seed, PROFILES.h100.output);
      return [undefined, 5, undefined, 3, undefined].map((maxTokens) => {
        const plan = planner.plan(maxTokens);
        let text = '';
        for (let i = 0; i < plan.outputTokens; i++) text += plan.nextWord();
        return { outputTokens: plan.outputTokens, finishReason: plan.finishReason, text };
      });
    };
    expect(plans(1)).toEqual(plans(1));
    expect(plans(1)).not.toEqual(plans(2));
    expect(plans(1).map((plan) => plan.finishReason)).toEqual(['stop', 'length', 'stop', 'length', 'stop']);
    expect(plans(1)[1].text.split(' ')).toHaveLength(5);
  });

  it('drawn output lengths stay within the distribution bounds; sigma 0 gives the median', () => {
    const random = seededRandom(42);
    const output = PROFILES.h100.output;
    for (let i = 0; i < 1000; i++) {
      const length = drawOutputLength(output, random);
      expect(length).toBeGreaterThanOrEqual(output.minTokens);
      expect(length).toBeLessThanOrEqual(output.maxTokens);
    }
    expect(drawOutputLength(Object.assign({}, output, { sigma: 0 }), random)).toBe(output.medianTokens);
  });
});

describe('token counting rule', () => {
  it.each([
    { text: '', tokens: 1 },
    { text: 'a', tokens: 1 },
    { text: 'abcd', tokens: 1 },
    { text: 'abcde', tokens: 2 },
    { text: 'x'.repeat(400), tokens: 100 },
    { text: 'x'.repeat(401), tokens: 101 },
  ])('text of $text.length characters: $tokens tokens', ({ text, tokens }) => {
    expect(countTextTokens(text)).toBe(tokens);
    expect(textTokenIds(text)).toHaveLength(tokens);
  });

  it.each([
    { name: 'one short message', messages: [{ role: 'user', content: 'hello' }], tokens: 4 + 2 },
    { name: 'system + user', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi' }], tokens: 4 + 2 + 4 + 1 },
    { name: 'empty content', messages: [{ role: 'assistant', content: '' }], tokens: 4 },
    { name: 'null content', messages: [{ role: 'assistant', content: null }], tokens: 4 },
    {
      name: 'content parts (text concatenated, images free)',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'abcd' }, { type: 'image_url' }, { type: 'text', text: 'efgh' }] }],
      tokens: 4 + 2,
    },
  ] as Array<{ name: string; messages: ChatMessage[]; tokens: number }>)('chat, $name: $tokens tokens', ({ messages, tokens }) => {
    expect(countChatTokens(messages)).toBe(tokens);
    expect(chatTokenIds(messages)).toHaveLength(tokens);
  });

  it('token ids are deterministic and appending keeps the earlier ids', () => {
    const conversation: ChatMessage[] = [{ role: 'user', content: 'What is a KV cache?' }];
    const longer = conversation.concat([{ role: 'assistant', content: 'Memory.' }]);
    expect(chatTokenIds(conversation)).toEqual(chatTokenIds(conversation));
    expect(chatTokenIds(longer).slice(0, chatTokenIds(conversation).length)).toEqual(chatTokenIds(conversation));
    expect(textTokenIds('abcdefgh').slice(0, 1)).toEqual(textTokenIds('abcd'));
    expect(textTokenIds('abcd')).not.toEqual(textTokenIds('abce'));
  });
});
