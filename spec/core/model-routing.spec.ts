// Which replicas may serve a request's model, and LoRA adapter affinity (shared/model-routing.ts):
// the filter never offers a replica whose known list lacks the model, "not found" only when every
// list is known, and the adapter filter prefers a loaded adapter while its replica is within the bound.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LoraSlots } from '../../shared/model-discovery';
import {
  ADAPTER_FREE_SLOT,
  ADAPTER_LOADED,
  ADAPTER_LOADING,
  ADAPTER_SLOTS_FULL,
  adapterAffinity,
  adapterBase,
  adapterFilter,
  adapterScores,
  ADAPTER_EVICTS_COPY,
  replicasForModel,
  resolveModel,
  servesModel,
} from '../../shared/model-routing';
import type { ReplicaModels } from '../../shared/model-routing';
import { adapterTag } from '../../shared/adapter-slots';

const LLAMA = 'llama-8b';
const QWEN = 'qwen-7b';
const known = (bases: string[], adapters: Record<string, string> = {}): ReplicaModels => ({ served: { bases, adapters }, lora: null });

describe('resolveModel', () => {
  const aliases = [{ name: 'gpt-4o', model: LLAMA }];
  it('maps an alias to its served name, keeps other names, and falls back to the default', () => {
    expect(resolveModel('gpt-4o', aliases, null)).toBe(LLAMA);
    expect(resolveModel(QWEN, aliases, null)).toBe(QWEN);
    expect(resolveModel(null, aliases, QWEN)).toBe(QWEN);
    expect(resolveModel('', aliases, null)).toBeNull();
  });
});

describe('replicasForModel', () => {
  const ids = ['a', 'b', 'c'];
  const fleet = [known([LLAMA], { 'sql-lora': LLAMA }), known([LLAMA]), known([QWEN])];

  it('keeps the replicas serving the model or the adapter, in order', () => {
    expect(replicasForModel(ids, fleet, LLAMA, false, null)).toEqual({ kind: 'only', ids: ['a', 'b'] });
    expect(replicasForModel(ids, fleet, QWEN, false, null)).toEqual({ kind: 'only', ids: ['c'] });
    expect(replicasForModel(ids, fleet, 'sql-lora', false, LLAMA)).toEqual({ kind: 'only', ids: ['a'] });
  });

  it("with dynamic loading, an adapter may also go where its base model is served", () => {
    expect(replicasForModel(ids, fleet, 'sql-lora', true, adapterBase('sql-lora', fleet))).toEqual({ kind: 'only', ids: ['a', 'b'] });
  });

  it('no model: any replica; a model no known list has: not found', () => {
    expect(replicasForModel(ids, fleet, null, false, null)).toEqual({ kind: 'any' });
    expect(replicasForModel(ids, fleet, 'mistral', false, null)).toEqual({ kind: 'not-found' });
    // Loaded on demand (a LoRA resolver): a name no list has yet may go anywhere.
    expect(replicasForModel(ids, fleet, 'mistral', true, null)).toEqual({ kind: 'any' });
  });

  it('a replica whose list is unknown stays a candidate, so "not learnt yet" is never "not found"', () => {
    expect(replicasForModel(ids, [null, fleet[1], { served: null, lora: null }], 'mistral', false, null)).toEqual({ kind: 'only', ids: ['a', 'c'] });
  });

  it('property: never a replica whose known list lacks the model (nor its base, with dynamic loading)', () => {
    const name = fc.constantFrom<string>(LLAMA, QWEN, 'sql-lora', 'support-bot', 'constructor', 'm');
    const replica = fc.option(fc.record({ bases: fc.uniqueArray(name, { maxLength: 3 }), adapters: fc.dictionary(name, name, { maxKeys: 3 }) }), { nil: null });
    fc.assert(
      fc.property(fc.array(replica, { maxLength: 6 }), fc.option(name, { nil: null }), fc.boolean(), (served, model, dynamic) => {
        const models = served.map((s) => (s === null ? null : { served: s, lora: null }));
        const names = models.map((_, i) => 'r' + i);
        const base = model === null ? null : adapterBase(model, models);
        const result = replicasForModel(names, models, model, dynamic, base);
        if (model === null) {
          expect(result.kind).toBe('any');
          return;
        }
        const eligible = (i: number) => models[i] === null || servesModel(models[i]!.served!, model) || (dynamic && base !== null && models[i]!.served!.bases.includes(base));
        const noneEligible = models.every((m, i) => m !== null && !eligible(i));
        if (result.kind === 'not-found') {
          expect(noneEligible && !dynamic).toBe(true);
        } else if (result.kind === 'any') {
          expect(noneEligible && dynamic).toBe(true);
        } else {
          expect(result.kind).toBe('only');
          if (result.kind === 'only') expect(result.ids).toEqual(names.filter((_, i) => eligible(i)));
        }
      }),
    );
  });
});

describe('adapter affinity', () => {
  const slots = (running: string[], waiting: string[] = [], maxLoras: number | null = 2): LoraSlots => ({ running, waiting, maxLoras });

  it("scores loaded > free slot > loading > full (llm-d's LoRA affinity)", () => {
    expect(adapterAffinity(slots(['x']), 'x', null)).toBe(ADAPTER_LOADED);
    expect(adapterAffinity(slots(['y']), 'x', null)).toBe(ADAPTER_FREE_SLOT);
    expect(adapterAffinity(slots(['y', 'z'], ['x']), 'x', null)).toBe(ADAPTER_LOADING);
    expect(adapterAffinity(slots(['y', 'z']), 'x', null)).toBe(ADAPTER_SLOTS_FULL);
    // Nothing reported: nothing says it would evict.
    expect(adapterAffinity(null, 'x', null)).toBe(ADAPTER_FREE_SLOT);
    expect(adapterAffinity(slots(['y', 'z'], [], null), 'x', null)).toBe(ADAPTER_FREE_SLOT);
  });

  it('counts what the gateway sent the replica recently: loaded, and taking slots like the running adapters', () => {
    const sent = (...names: string[]) => names.map(adapterTag);
    // Idle in a slot (no request running): invisible in /metrics, known from what was sent.
    expect(adapterAffinity(slots([]), 'x', sent('x'))).toBe(ADAPTER_LOADED);
    // Two slots: one taken by a running adapter, one by an idle one sent recently: full.
    expect(adapterAffinity(slots(['y']), 'x', sent('z'))).toBe(ADAPTER_SLOTS_FULL);
    // The same adapter running and sent takes one slot, not two.
    expect(adapterAffinity(slots(['y']), 'x', sent('y'))).toBe(ADAPTER_FREE_SLOT);
  });

  it('a full replica scores ADAPTER_EVICTS_COPY when the adapter it would evict (its least recently sent) is loaded elsewhere too', () => {
    const sent = (...names: string[]) => names.map(adapterTag);
    const fleet = [
      // Full; would evict y (least recently sent), which r1 runs: a copy.
      { inFlight: 0, weight: 1, lora: slots([]), sent: sent('z', 'y') },
      { inFlight: 0, weight: 1, lora: slots(['y']), sent: null },
      // Full; would evict w, loaded nowhere else: its only copy.
      { inFlight: 0, weight: 1, lora: slots([]), sent: sent('v', 'w') },
    ];
    expect(adapterScores(fleet, 'x')).toEqual([ADAPTER_EVICTS_COPY, ADAPTER_FREE_SLOT, ADAPTER_SLOTS_FULL]);
    // A loaded replica still wins over both.
    expect(adapterScores(fleet, 'z')[0]).toBe(ADAPTER_LOADED);
  });

  it('keeps the replica with the adapter loaded while it is under the bound, then spreads to free slots', () => {
    const fleet = [
      { inFlight: 2, weight: 1, lora: slots(['x', 'y']), sent: null },
      { inFlight: 2, weight: 1, lora: slots(['y']), sent: null },
      { inFlight: 2, weight: 1, lora: slots(['y', 'z']), sent: null },
    ];
    expect(adapterFilter(fleet, 'x', 1.25)).toEqual([0]);
    // The hot adapter's replica past ceil(1.25 × (total + 1) / 3): the free slot takes the next one.
    fleet[0].inFlight = 6;
    expect(adapterFilter(fleet, 'x', 1.25)).toEqual([1]);
    // No bound: the loaded replica, however busy.
    expect(adapterFilter(fleet, 'x', 0)).toEqual([0]);
  });

  it('when every replica is past the bound, the best affinity among all', () => {
    expect(adapterFilter([{ inFlight: 5, weight: 0, lora: slots(['x']), sent: null }, { inFlight: 5, weight: 0, lora: null, sent: null }], 'x', 1.25)).toEqual([0]);
  });

  it('property: never empty, every kept replica has the best score among those under the bound (or among all)', () => {
    const name = fc.constantFrom('x', 'y', 'z', 'w');
    const candidate = fc.record({
      inFlight: fc.nat(20),
      weight: fc.constantFrom(0.5, 1, 2),
      lora: fc.option(fc.record({ running: fc.uniqueArray(name, { maxLength: 3 }), waiting: fc.uniqueArray(name, { maxLength: 2 }), maxLoras: fc.option(fc.integer({ min: 1, max: 3 }), { nil: null }) }), { nil: null }),
      sent: fc.option(fc.uniqueArray(name, { maxLength: 3 }).map((names) => names.map(adapterTag)), { nil: null }),
    });
    fc.assert(
      fc.property(fc.array(candidate, { minLength: 1, maxLength: 6 }), fc.constantFrom(0, 1.25, 2), (fleet, factor) => {
        const kept = adapterFilter(fleet, 'x', factor);
        expect(kept.length).toBeGreaterThan(0);
        const total = fleet.reduce((s, c) => s + c.inFlight, 0);
        const totalWeight = fleet.reduce((s, c) => s + c.weight, 0);
        const under = fleet.map((c) => factor <= 0 || c.inFlight + 1 <= Math.ceil((factor * (total + 1) * c.weight) / totalWeight));
        const pool = fleet.map((_, i) => i).filter((i) => under[i] || !under.some(Boolean));
        const scores = adapterScores(fleet, 'x');
        const best = Math.max(...pool.map((i) => scores[i]));
        expect(kept).toEqual(pool.filter((i) => scores[i] === best));
        // A replica with the adapter loaded and under the bound is always kept.
        fleet.forEach((c, i) => {
          if (under[i] && c.lora !== null && (c.lora.running.includes('x') || (c.sent !== null && c.sent.includes(adapterTag('x'))))) expect(kept).toContain(i);
        });
      }),
    );
  });
});
