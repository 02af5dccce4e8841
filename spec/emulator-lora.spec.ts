// LoRA adapters and served model names in the emulator, below the HTTP layer: the engine's
// adapter scheduling on a manual clock (every duration is the model's arithmetic, asserted
// exactly), the GPU slots' LRU, and how a request's `model` resolves. The HTTP side (404 body,
// /v1/models, /metrics) is in emulator-server-models.spec.ts.
import { describe, expect, it } from 'vitest';
import { createManualClock } from '../testbed/emulator/clock';
import type { ManualClock } from '../testbed/emulator/clock';
import { createLoraSlots } from '../testbed/emulator/lora-slots';
import { createEngine } from '../testbed/emulator/model';
import type { Engine, EngineProfile, Sequence } from '../testbed/emulator/model';
import { createServedModels, parseLoraAdapterList, unknownModelError } from '../testbed/emulator/served-models';

// Round numbers: a step with one sequence lasts 10 ms, each extra sequence adds 5 ms, a prefill
// costs 10 ms + 1 ms per prompt token, loading an adapter 100 ms.
const PROFILE: EngineProfile = {
  maxNumSeqs: 8,
  kvCacheTokens: 4096,
  prefixCacheTokens: 0,
  prefillMsPerToken: 1,
  prefillOverheadMs: 10,
  decodeStepMs: 10,
  batchSlowdown: 0.5,
};
const LOAD_MS = 100;
const PROMPT_TOKENS = 16;

interface Trace {
  sequence: Sequence;
  tokens: number[];
  finishedAt: number | null;
}

interface Rig {
  clock: ManualClock;
  engine: Engine;
  submit(adapter: string | null, outputTokens: number): Trace;
}

let nextPromptStart = 0;

function rig(maxLoras: number): Rig {
  const clock = createManualClock();
  const engine = createEngine({ profile: PROFILE, clock, lora: { maxLoras, loadMs: LOAD_MS } });
  return {
    clock,
    engine,
    submit(adapter, outputTokens) {
      // Distinct prompt ids per request: nothing is shared through the prefix cache.
      const promptTokenIds = Array.from({ length: PROMPT_TOKENS }, (_, i) => nextPromptStart + i);
      nextPromptStart += PROMPT_TOKENS;
      const trace = { tokens: [] as number[], finishedAt: null as number | null } as Trace;
      const result = engine.submit(
        { promptTokenIds, outputTokens, adapter },
        { onToken: (_index, atMs) => trace.tokens.push(atMs), onFinish: (atMs) => (trace.finishedAt = atMs) },
      );
      if (!result.ok) throw new Error(`rejected: ${result.reason}`);
      trace.sequence = result.sequence;
      return trace;
    },
  };
}

/** TTFT of a lone sequence on an idle engine, without an adapter load. */
const LONE_TTFT = PROFILE.decodeStepMs + PROFILE.prefillOverheadMs + PROFILE.prefillMsPerToken * PROMPT_TOKENS;

describe('engine: adapter loads', () => {
  it('a request for an adapter not in a slot waits loraLoadMs longer for its first token; once resident it does not', () => {
    const r = rig(2);
    const cold = r.submit('adapter-a', 1);
    r.clock.runUntilIdle();
    expect(cold.tokens[0]).toBe(LONE_TTFT + LOAD_MS);
    const start = r.clock.now();
    const warm = r.submit('adapter-a', 1);
    r.clock.runUntilIdle();
    expect(warm.tokens[0] - start).toBe(LONE_TTFT);
    expect(r.engine.stats().lora).toMatchObject({ loads: 1, evictions: 0, resident: ['adapter-a'] });
  });

  it('the base model never waits for a load', () => {
    const r = rig(1);
    const base = r.submit(null, 1);
    r.clock.runUntilIdle();
    expect(base.tokens[0]).toBe(LONE_TTFT);
    expect(r.engine.stats().lora).toMatchObject({ loads: 0, resident: [] });
  });

  it("the load happens inside a step, as vLLM's worker does it: running sequences' next token is late by loraLoadMs too", () => {
    const r = rig(2);
    const base = r.submit(null, 4);
    r.clock.advance(LONE_TTFT); // step 1 is over and step 2 (the base sequence alone) has begun
    r.submit('adapter-a', 1);
    r.clock.runUntilIdle();
    expect(base.tokens[1] - base.tokens[0]).toBe(10);
    // Step 3 holds both sequences (10 + 5), the adapter's prefill (26) and its load (100).
    expect(base.tokens[2] - base.tokens[1]).toBe(15 + 26 + LOAD_MS);
    // Step 4 is a plain step of the base sequence alone again: the adapter sequence has finished.
    expect(base.tokens[3] - base.tokens[2]).toBe(10);
  });

  it('timeScale stretches the load like every other duration', () => {
    const clock = createManualClock();
    const engine = createEngine({ profile: PROFILE, clock, timeScale: 0.5, lora: { maxLoras: 1, loadMs: LOAD_MS } });
    const tokens: number[] = [];
    engine.submit({ promptTokenIds: [1, 2, 3, 4], outputTokens: 1, adapter: 'a' }, { onToken: (_i, at) => tokens.push(at), onFinish: () => undefined });
    clock.runUntilIdle();
    expect(tokens[0]).toBe((10 + 10 + 4 + LOAD_MS) * 0.5);
  });

  it('an engine without lora options refuses a sequence naming an adapter', () => {
    const engine = createEngine({ profile: PROFILE, clock: createManualClock() });
    expect(() => engine.submit({ promptTokenIds: [1], outputTokens: 1, adapter: 'a' }, { onToken: () => undefined, onFinish: () => undefined })).toThrow(/without lora/);
    expect(engine.stats().lora).toBeNull();
  });
});

describe('engine: maxLoras distinct adapters per batch (vLLM V1 admission)', () => {
  it('with maxLoras 2, a third adapter waits until every running sequence of another adapter has finished', () => {
    const r = rig(2);
    const a = r.submit('a', 3);
    const b = r.submit('b', 6);
    const c = r.submit('c', 1);
    let maxDistinct = 0;
    while (r.clock.pendingTimers() > 0) {
      r.clock.advance(1);
      const running = (r.engine.stats().lora?.activity ?? []).filter((activity) => activity.running > 0).length;
      maxDistinct = Math.max(maxDistinct, running);
    }
    expect(maxDistinct).toBe(2);
    expect(a.finishedAt).not.toBeNull();
    expect(c.sequence.admittedAt).toBe(a.finishedAt); // admitted in the step right after a's last
    expect(c.sequence.admittedAt!).toBeLessThan(b.finishedAt!);
  });

  it('a held-back request is skipped, not a barrier: a later request for a scheduled adapter or the base model overtakes it', () => {
    const r = rig(1);
    r.submit('a', 5);
    const held = r.submit('b', 1);
    const sameAdapter = r.submit('a', 1);
    const base = r.submit(null, 1);
    r.clock.advance(1);
    expect(held.sequence.state).toBe('waiting');
    expect(sameAdapter.sequence.admittedAt).toBe(0);
    expect(base.sequence.admittedAt).toBe(0);
    r.clock.runUntilIdle();
    expect(held.finishedAt).not.toBeNull();
  });

  it('counts waiting and running requests per adapter in the order adapters became active, dropping idle ones', () => {
    const r = rig(1);
    r.submit('x', 2);
    r.submit('y', 1);
    r.submit('x', 2);
    r.clock.advance(1);
    expect(r.engine.stats().lora?.activity).toEqual([
      { adapter: 'x', waiting: 0, running: 2 },
      { adapter: 'y', waiting: 1, running: 0 },
    ]);
    r.clock.runUntilIdle();
    expect(r.engine.stats().lora?.activity).toEqual([]);
  });

  it('a cancelled waiting request no longer counts for its adapter', () => {
    const r = rig(1);
    r.submit('x', 3);
    const y = r.submit('y', 1);
    r.clock.advance(1);
    y.sequence.cancel();
    expect(r.engine.stats().lora?.activity).toEqual([{ adapter: 'x', waiting: 0, running: 1 }]);
  });
});

describe('engine: LRU eviction of GPU slots', () => {
  it('evicts the least recently used idle adapter, and counts loads and evictions', () => {
    const r = rig(2);
    const run = (adapter: string) => {
      r.submit(adapter, 1);
      r.clock.runUntilIdle();
    };
    run('a');
    run('b');
    run('a'); // a is now more recent than b
    run('c'); // evicts b
    expect(r.engine.stats().lora).toMatchObject({ loads: 3, evictions: 1, resident: ['a', 'c'] });
    run('b'); // evicts a, the older of a and c
    expect(r.engine.stats().lora).toMatchObject({ loads: 4, evictions: 2, resident: ['c', 'b'] });
  });

  it('never evicts an adapter a running request uses, even the one loaded first', () => {
    const r = rig(2);
    const long = r.submit('a', 40); // loaded first, runs throughout
    r.clock.advance(200);
    r.submit('b', 1);
    r.clock.advance(300); // b has finished: its slot is idle
    expect(long.sequence.state).toBe('running');
    r.submit('c', 1);
    r.clock.advance(300);
    const lora = r.engine.stats().lora!;
    expect(lora.resident).toContain('a');
    expect(lora.resident).not.toContain('b');
    expect(lora.evictions).toBe(1);
    r.clock.runUntilIdle();
    expect(long.tokens).toHaveLength(40);
  });
});

describe('lora-slots', () => {
  it('refuses a batch of more adapters than slots', () => {
    expect(() => createLoraSlots(2).activate(['a', 'b', 'c'])).toThrow(/exceeds maxLoras 2/);
  });

  it('reports what it loaded and what it evicted for a batch', () => {
    const slots = createLoraSlots(2);
    expect(slots.activate(['a', 'b'])).toEqual({ loaded: ['a', 'b'], evicted: [] });
    expect(slots.activate(['b', 'c'])).toEqual({ loaded: ['c'], evicted: ['a'] });
    expect(slots.activate(['c'])).toEqual({ loaded: [], evicted: [] });
    expect([slots.loads(), slots.evictions()]).toEqual([3, 1]);
  });

  it("never evicts an adapter of the batch being activated, even when it is the least recently used", () => {
    const slots = createLoraSlots(2);
    slots.activate(['a']);
    slots.activate(['b']); // a is now the least recently used
    // The missing adapter comes first in the batch: a must still survive, b must go.
    expect(slots.activate(['c', 'a'])).toEqual({ loaded: ['c'], evicted: ['b'] });
    expect(slots.resident().sort()).toEqual(['a', 'c']);
  });

  it.each([0, 1.5, -1])('maxLoras %s is refused', (maxLoras) => {
    expect(() => createLoraSlots(maxLoras)).toThrow(/maxLoras/);
  });
});

describe('served models: what a request for `model` gets', () => {
  const strict = () =>
    createServedModels({
      servedModels: ['base-a', 'alias-a'],
      fallbackModelName: 'unused',
      loraAdapters: [{ name: 'sql-lora' }, { prefix: 'adapter-' }],
    });

  it.each([
    ['the first base name', 'base-a', null, 'base-a'],
    ['another served alias (answers name the first, as vLLM does)', 'alias-a', null, 'base-a'],
    ['no model at all (vLLM serves the base model)', undefined, null, 'base-a'],
    ['a named adapter', 'sql-lora', 'sql-lora', 'sql-lora'],
    ['a name the adapter pattern matches', 'adapter-07', 'adapter-07', 'adapter-07'],
  ])('%s', (_what, model, adapter, answerModel) => {
    expect(strict().resolve(model)).toMatchObject({ ok: true, adapter, answerModel });
  });

  it("an unknown name is vLLM's 404 NotFoundError when a model list is given", () => {
    expect(strict().resolve('gpt-4')).toEqual({ ok: false, status: 404, body: unknownModelError('gpt-4') });
    expect(unknownModelError('gpt-4')).toEqual({ error: { message: 'The model `gpt-4` does not exist.', type: 'NotFoundError', param: 'model', code: 404 } });
  });

  it('without a model list any name is served by the base model (backwards compatible), adapters still apart', () => {
    const lenient = createServedModels({ fallbackModelName: 'emulated', loraAdapters: [{ prefix: 'adapter-' }] });
    expect(lenient.strict).toBe(false);
    expect(lenient.resolve('m')).toEqual({ ok: true, adapter: null, answerModel: 'emulated' });
    expect(lenient.resolve('adapter-1')).toMatchObject({ ok: true, adapter: 'adapter-1', parent: 'emulated' });
  });

  it('registers pattern matches on first use, after the named adapters, each once', () => {
    const served = strict();
    served.resolve('adapter-02');
    served.resolve('adapter-01');
    served.resolve('adapter-02');
    expect(served.registeredAdapters()).toEqual([
      { name: 'sql-lora', parent: 'base-a' },
      { name: 'adapter-02', parent: 'base-a' },
      { name: 'adapter-01', parent: 'base-a' },
    ]);
  });

  it.each([
    ['an adapter whose parent is not served', { servedModels: ['a'], loraAdapters: [{ name: 'x', parent: 'b' }] }, /not a served model/],
    ['an empty model list', { servedModels: [] }, /at least one/],
    ['an adapter named like a base model', { servedModels: ['a'], loraAdapters: [{ name: 'a' }] }, /base model/],
  ])('refuses %s', (_what, options, error) => {
    expect(() => createServedModels(Object.assign({ fallbackModelName: 'f' }, options))).toThrow(error);
  });
});

describe('the command line adapter list', () => {
  it.each([
    ['sql-lora', [{ name: 'sql-lora' }]],
    ['adapter-*', [{ prefix: 'adapter-' }]],
    ['sql-lora@base-a, adapter-*@base-b', [{ name: 'sql-lora', parent: 'base-a' }, { prefix: 'adapter-', parent: 'base-b' }]],
  ])('%s', (text, expected) => {
    expect(parseLoraAdapterList(text)).toEqual(expected);
  });

  it.each(['', '*', 'x@', '@base'])('refuses %j', (text) => {
    expect(typeof parseLoraAdapterList(text)).toBe('string');
  });
});
