// The mixes that name models: multi-lora (24 LoRA adapters, Zipf popularity) and multi-model (two
// base models, 60/40). Fixed seeds, bounds a few standard errors wide, exact checks of the bodies.
import { describe, expect, it } from 'vitest';
import {
  MULTI_LORA_SHAPE,
  MULTI_MODEL_NAMES,
  buildTrace,
  generateRequests,
  loraAdapterName,
  zipfWeights,
  type ChatCompletionBody,
  type LoadRequest,
} from '../testbed/loadgen/index';

const SAMPLE = 10_000;

function modelOf(request: LoadRequest): string {
  return request.body.model;
}

function countBy(values: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
  return counts;
}

describe('multi-lora', () => {
  const requests = generateRequests(SAMPLE, { seed: 5, mix: 'multi-lora', model: 'base' });
  const counts = countBy(requests.map(modelOf));

  it('names one of 24 adapters adapter-00..adapter-23 in every request, never the base model', () => {
    const names = Array.from({ length: 24 }, (_, index) => loraAdapterName(index));
    expect(names[0]).toBe('adapter-00');
    expect(names[23]).toBe('adapter-23');
    expect(Array.from(counts.keys()).sort()).toEqual(names);
    expect(requests.every((request) => request.kind === 'lora-chat')).toBe(true);
  });

  it('has Zipf popularity (s = 1): the most popular adapter gets many times the requests of the least', () => {
    const first = counts.get('adapter-00')!;
    const last = counts.get('adapter-23')!;
    // Zipf with s = 1 over 24 ranks makes that ratio 24; 10 leaves room for sampling noise.
    expect(first / last).toBeGreaterThan(10);
  });

  it("each adapter's share matches 1/rank normalised, within 4 standard errors", () => {
    const weights = zipfWeights(MULTI_LORA_SHAPE.adapterCount, MULTI_LORA_SHAPE.zipfExponent);
    const total = weights.reduce((sum, weight) => sum + weight, 0);
    weights.forEach((weight, index) => {
      const expected = weight / total;
      const share = (counts.get(loraAdapterName(index)) ?? 0) / SAMPLE;
      expect(Math.abs(share - expected)).toBeLessThan(4 * Math.sqrt((expected * (1 - expected)) / SAMPLE));
    });
  });

  it("sends short-chat's prompts for the same seed: only the model differs (the adapter stream is its own)", () => {
    const chat = generateRequests(500, { seed: 5, mix: 'short-chat', model: 'base' });
    requests.slice(0, 500).forEach((request, index) => {
      expect((request.body as ChatCompletionBody).messages).toEqual((chat[index].body as ChatCompletionBody).messages);
      expect(request.outputTokens).toBe(chat[index].outputTokens);
    });
  });

  it('is seeded: the same seed gives the same trace, another seed other adapters', () => {
    const options = { seed: 3, ratePerS: 10, durationS: 20, mix: 'multi-lora' };
    expect(JSON.stringify(buildTrace(options))).toBe(JSON.stringify(buildTrace(options)));
    const other = buildTrace(Object.assign({}, options, { seed: 4 }));
    expect(other.entries.map((entry) => modelOf(entry.request))).not.toEqual(buildTrace(options).entries.map((entry) => modelOf(entry.request)));
  });
});

describe('multi-lora-16', () => {
  it('spreads over 16 adapters with the same Zipf law; the same prompts as multi-lora for the seed', () => {
    const requests = generateRequests(SAMPLE, { seed: 5, mix: 'multi-lora-16', model: 'base' });
    const counts = countBy(requests.map(modelOf));
    expect(Array.from(counts.keys()).sort()).toEqual(Array.from({ length: 16 }, (_, index) => loraAdapterName(index)));
    const total = zipfWeights(16, MULTI_LORA_SHAPE.zipfExponent).reduce((sum, weight) => sum + weight, 0);
    const expected = 1 / total;
    expect(Math.abs(counts.get('adapter-00')! / SAMPLE - expected)).toBeLessThan(4 * Math.sqrt((expected * (1 - expected)) / SAMPLE));
    const lora24 = generateRequests(200, { seed: 5, mix: 'multi-lora', model: 'base' });
    requests.slice(0, 200).forEach((request, index) => expect((request.body as ChatCompletionBody).messages).toEqual((lora24[index].body as ChatCompletionBody).messages));
  });

  it('a custom mix with a bad adapter count is refused', () => {
    expect(() => generateRequests(1, { seed: 1, mix: { name: 'x', components: [{ kind: 'lora-chat', weight: 1, adapters: 0 }] }, model: 'base' })).toThrow(/adapters of 'lora-chat' must be a whole number/);
  });
});

describe('multi-model', () => {
  const requests = generateRequests(SAMPLE, { seed: 6, mix: 'multi-model', model: 'unused' });

  it('names model-a in ~60% of requests and model-b in the rest (short-chat turns)', () => {
    const counts = countBy(requests.map(modelOf));
    expect(Array.from(counts.keys()).sort()).toEqual([MULTI_MODEL_NAMES.first, MULTI_MODEL_NAMES.second]);
    // A share of 0.6 over 10^4 draws has a standard error of ~0.005: 0.02 is 4 of them.
    expect(Math.abs(counts.get(MULTI_MODEL_NAMES.first)! / SAMPLE - 0.6)).toBeLessThan(0.02);
    expect(requests.every((request) => request.kind === 'short-chat')).toBe(true);
  });
});

describe('custom mixes that name models', () => {
  it('a component may name its own model; an empty name is refused', () => {
    const mix = { name: 'custom', components: [{ kind: 'short-chat' as const, weight: 1, model: 'tiny' }] };
    expect(generateRequests(3, { seed: 1, mix, model: 'other' }).map(modelOf)).toEqual(['tiny', 'tiny', 'tiny']);
    expect(() => generateRequests(1, { seed: 1, mix: { name: 'bad', components: [{ kind: 'short-chat', weight: 1, model: '' }] }, model: 'm' })).toThrow(/non-empty/);
  });
});
