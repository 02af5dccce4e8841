// What a replica serves, parsed from its own answers (shared/model-discovery.ts): GET /v1/models of
// vLLM (base model + LoRA adapters with parent), SGLang and llama.cpp's llama-server, and vLLM's
// vllm:lora_requests_info gauge. Fixtures under spec/fixtures/models/ follow the servers' shapes.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseLoraSlots, parseModelList } from '../../shared/model-discovery';

function fixture(name: string): string {
  return readFileSync(new URL(`../fixtures/models/${name}`, import.meta.url), 'utf8');
}

describe('GET /v1/models', () => {
  it('vLLM: the base model, and its LoRA adapters with their parent', () => {
    expect(parseModelList(JSON.parse(fixture('vllm-lora.json')))).toEqual({
      bases: ['meta-llama/Llama-3.1-8B-Instruct'],
      adapters: { 'sql-lora': 'meta-llama/Llama-3.1-8B-Instruct', 'support-bot': 'meta-llama/Llama-3.1-8B-Instruct' },
    });
  });

  it('SGLang and llama.cpp: their served names (llama-server\'s extra `models` array is not read)', () => {
    expect(parseModelList(JSON.parse(fixture('sglang.json')))).toEqual({ bases: ['Qwen/Qwen2.5-7B-Instruct'], adapters: {} });
    expect(parseModelList(JSON.parse(fixture('llama-cpp.json')))).toEqual({ bases: ['qwen2.5-0.5b-instruct-q4_k_m.gguf'], adapters: {} });
  });

  it('skips entries without an id, counts duplicates once, and treats a self-parent as a base', () => {
    const list = { object: 'list', data: [null, 7, { id: '' }, { object: 'model' }, { id: 'a' }, { id: 'a', parent: 'b' }, { id: 'b', parent: 'b' }, { id: 'c', parent: 'a' }] };
    expect(parseModelList(list)).toEqual({ bases: ['a', 'b'], adapters: { c: 'a' } });
  });

  it.each([null, 'text', 42, [], {}, { data: 'x' }, { object: 'list', data: null }])('is null for %j (not a model list)', (body) => {
    expect(parseModelList(body)).toBeNull();
  });

  it('never throws and never lists a name that is not an id of the input', () => {
    fc.assert(
      fc.property(fc.anything(), fc.array(fc.record({ id: fc.oneof(fc.string(), fc.constant(null)), parent: fc.oneof(fc.string(), fc.constant(null), fc.constant(undefined)) })), (junk, entries) => {
        expect(() => parseModelList(junk)).not.toThrow();
        const served = parseModelList({ data: entries });
        const ids = entries.map((e) => e.id);
        for (const name of served!.bases.concat(Object.keys(served!.adapters))) expect(ids).toContain(name);
      }),
    );
  });

  it('an adapter named like an Object.prototype member is still an adapter', () => {
    const served = parseModelList({ data: [{ id: 'base' }, { id: 'constructor', parent: 'base' }] });
    expect(served?.adapters.constructor).toBe('base');
    expect(parseModelList({ data: [{ id: 'base' }] })?.adapters.constructor).toBeUndefined();
  });
});

describe('vllm:lora_requests_info', () => {
  it('reads the newest series (the value is its update time), not the last line', () => {
    expect(parseLoraSlots(fixture('vllm-lora-metrics.txt'))).toEqual({ running: ['sql-lora', 'support-bot'], waiting: ['legal-lora'], maxLoras: 4 });
  });

  it('accepts max_loras, name:count items, spaces and escaped quotes', () => {
    const text = 'vllm:lora_requests_info{max_loras="2",running_lora_adapters="a:3, b:1",waiting_lora_adapters="c\\"d"} 5\n';
    expect(parseLoraSlots(text)).toEqual({ running: ['a', 'b'], waiting: ['c"d'], maxLoras: 2 });
  });

  it('an unreadable slot count is null; no series at all is null', () => {
    expect(parseLoraSlots('vllm:lora_requests_info{max_lora="x",running_lora_adapters="a"} 1\n')).toEqual({ running: ['a'], waiting: [], maxLoras: null });
    expect(parseLoraSlots(fixture('../metrics/vllm-v1.txt'))).toBeNull();
    expect(parseLoraSlots('vllm:lora_requests_info{max_lora="4"} NaN\n')).toBeNull();
    expect(parseLoraSlots(undefined as unknown as string)).toBeNull();
  });

  it('never throws on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string(), (tail) => {
        expect(() => parseLoraSlots('vllm:lora_requests_info{' + tail)).not.toThrow();
        expect(() => parseLoraSlots('vllm:lora_requests_info{max_lora="1",running_lora_adapters="' + tail + '"} 1')).not.toThrow();
      }),
    );
  });
});
