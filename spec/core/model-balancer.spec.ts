// Model routing inside the balancer (issue 13): when the adapter attaches what each replica serves
// (Replica.models), the request's model filters the candidates before eligibility and strategy.
// Without it (no replica carries models) nothing changes. Counts only; the clock is fake.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createBalancer, modelRewrite, prefixTableKeys } from '../../shared/balancer';
import { createMemoryStore } from '../../shared/memory-store';
import type { ReplicaModels } from '../../shared/model-routing';
import type { Replica } from '../../shared/types';
import { configOf, fakeClock, seededRandom } from '../helpers/core';

const LLAMA = 'llama-8b';
const QWEN = 'qwen-7b';
const serves = (bases: string[], adapters: Record<string, string> = {}): ReplicaModels => ({ served: { bases, adapters }, lora: null });

function fleet(): Replica[] {
  return [
    { id: 'l1', address: '10.0.0.1:8000', weight: 1, models: serves([LLAMA], { 'sql-lora': LLAMA }) },
    { id: 'l2', address: '10.0.0.2:8000', weight: 1, models: serves([LLAMA]) },
    { id: 'q1', address: '10.0.0.3:8000', weight: 1, models: serves([QWEN]) },
  ];
}

function balancer(extra: Record<string, unknown> = {}) {
  return createBalancer(configOf({ strategy: 'least-connections', retries: 2, ...extra }), { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(7) });
}

const chat = (model?: string) => ({ body: { model, messages: [{ role: 'user', content: 'hi' }] } });

describe('model routing in the balancer', () => {
  it('picks, and offers as alternates, only replicas serving the model', () => {
    const b = balancer();
    for (let i = 0; i < 20; i++) {
      const llama = b.pick(fleet(), chat(LLAMA));
      expect(llama.ok && llama.replicas.map((r) => r.id).sort()).toEqual(['l1', 'l2']);
      const qwen = b.pick(fleet(), chat(QWEN));
      expect(qwen.ok && qwen.replicas.map((r) => r.id)).toEqual(['q1']);
      const adapter = b.pick(fleet(), chat('sql-lora'));
      expect(adapter.ok && adapter.replicas.map((r) => r.id)).toEqual(['l1']);
    }
  });

  it('an unknown model is model-not-found, with OpenAI\'s wording; a body without a model may go anywhere', () => {
    const b = balancer();
    expect(b.pick(fleet(), chat('mistral'))).toEqual({ ok: false, reason: 'model-not-found', message: 'The model `mistral` does not exist.' });
    const any = b.pick(fleet(), chat());
    expect(any.ok && any.replicas.length).toBe(3);
  });

  it("a known model whose replicas are all out is 503's no-healthy-replica, naming the model; panic never crosses models", () => {
    const down = fleet().map((r) => (r.id === 'q1' ? { ...r, health: 'unhealthy' as const } : r));
    const result = balancer().pick(down, chat(QWEN));
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.reason).toBe('no-healthy-replica');
      expect(result.message).toContain('serving the model `qwen-7b`');
    }
    const panic = balancer({ on_no_healthy: 'panic' }).pick(down, chat(QWEN));
    expect(panic.ok && panic.replicas.map((r) => r.id)).toEqual(['q1']);
  });

  it('the adapter-resolved model wins over the body; dynamic LoRA loading lets an adapter go to its base', () => {
    const b = balancer();
    const resolved = b.pick(fleet(), { ...chat('gpt-4o'), model: QWEN });
    expect(resolved.ok && resolved.replicas.map((r) => r.id)).toEqual(['q1']);
    const dynamic = balancer({ models: { dynamic_lora: true } }).pick(fleet(), chat('sql-lora'));
    expect(dynamic.ok && dynamic.replicas.map((r) => r.id).sort()).toEqual(['l1', 'l2']);
  });

  it("a replica whose list is unknown (null) stays a candidate; without models on any replica nothing is filtered", () => {
    const partly = fleet().map((r) => (r.id === 'q1' ? { ...r, models: null } : r));
    const result = balancer().pick(partly, chat('mistral'));
    expect(result.ok && result.replicas.map((r) => r.id)).toEqual(['q1']);
    const plain = fleet().map(({ models: _models, ...r }) => r);
    const all = balancer().pick(plain, chat('mistral'));
    expect(all.ok && all.replicas.length).toBe(3);
  });

  it('property: whatever the strategy and health, every replica offered serves the model', () => {
    const strategies = ['round-robin', 'least-connections', 'least-tokens', 'prefix-affinity', 'llm', 'response-time'];
    fc.assert(
      fc.property(fc.constantFrom(...strategies), fc.constantFrom(LLAMA, QWEN, 'sql-lora'), fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }), (strategy, model, healthy) => {
        const replicas = fleet().map((r, i) => ({ ...r, health: healthy[i] ? ('healthy' as const) : ('unhealthy' as const) }));
        const result = balancer({ strategy }).pick(replicas, chat(model));
        if (!result.ok) return;
        for (const r of result.replicas) {
          const served = r.models!.served!;
          expect(served.bases.includes(model) || Object.prototype.hasOwnProperty.call(served.adapters, model)).toBe(true);
        }
      }),
    );
  });

  it('prefix tables do not mix models: a routed prompt\'s chain starts from its model', () => {
    const store = createMemoryStore();
    const config = configOf({ strategy: 'prefix-affinity' });
    const b = createBalancer(config, { store, clock: fakeClock(), random: seededRandom(7) });
    const both = fleet().map((r) => (r.id === 'q1' ? r : { ...r, models: serves([LLAMA], { 'sql-lora': LLAMA }) }));
    const prompt = 'You are a careful SQL assistant. '.repeat(40);
    const request = (model: string) => ({ body: { model, messages: [{ role: 'system', content: prompt }, { role: 'user', content: 'q' }] } });
    const base = b.pick(both, request(LLAMA));
    expect(base.ok).toBe(true);
    const baseKeys = prefixTableKeys(config, request(LLAMA), true);
    const adapterKeys = prefixTableKeys(config, request('sql-lora'), true);
    expect(baseKeys.length).toBeGreaterThan(0);
    // The base model's blocks are in the table; the same prompt for the adapter has none of them.
    expect(baseKeys.every((key) => store.get(key) !== undefined)).toBe(true);
    expect(adapterKeys.some((key) => baseKeys.includes(key))).toBe(false);
    expect(adapterKeys.every((key) => store.get(key) === undefined)).toBe(true);
    // Unrouted, the keys are the plain prompt's (as before model routing).
    expect(prefixTableKeys(config, request(LLAMA))).not.toEqual(baseKeys);
  });

  it('models.declared (by id or address) routes without anything attached; aliases and the default resolve first', () => {
    const plain = fleet().map(({ models: _models, ...r }) => r);
    const b = balancer({
      replicas: plain.map((r) => ({ id: r.id, address: r.address })),
      models: {
        declared: [{ replica: 'l1', models: [LLAMA] }, { replica: '10.0.0.3:8000', models: [QWEN] }],
        aliases: [{ name: 'gpt-4o', model: QWEN }],
        default: LLAMA,
      },
    });
    // l2 declares nothing and attaches nothing: its list is unknown, so it may serve either.
    const qwen = b.pick(plain, chat('gpt-4o'));
    expect(qwen.ok && qwen.replicas.map((r) => r.id).sort()).toEqual(['l2', 'q1']);
    const llama = b.pick(plain, chat());
    expect(llama.ok && llama.replicas.map((r) => r.id).sort()).toEqual(['l1', 'l2']);
    expect(b.pick(plain, chat('mistral')).ok).toBe(true);
    // A body that could not be read (too large, not JSON) has no known model: the default is not
    // assumed, nothing is filtered, nothing is rewritten.
    const unread = b.pick(plain, { body: null });
    expect(unread.ok && unread.replicas.length).toBe(3);
    expect(b.pick(plain, { body: 'not json' }).ok).toBe(true);
    const config = configOf({ models: { aliases: [{ name: 'gpt-4o', model: QWEN }], default: LLAMA } });
    expect(modelRewrite(config, chat('gpt-4o').body)).toBe(QWEN);
    expect(modelRewrite(config, chat().body)).toBe(LLAMA);
    expect(modelRewrite(config, chat(QWEN).body)).toBeNull();
    expect(modelRewrite(configOf({}), chat().body)).toBeNull();
    expect(modelRewrite(config, null)).toBeNull();
  });

  it('a declared list wins over what discovery attached (the replica is not asked); its LoRA slots stay', () => {
    const slots = { running: ['sql-lora'], waiting: [], maxLoras: 4 };
    const replicas: Replica[] = [{ id: 'l1', address: '10.0.0.1:8000', weight: 1, models: { served: { bases: [QWEN], adapters: {} }, lora: slots } }];
    const b = balancer({ models: { declared: [{ replica: 'l1', models: [LLAMA] }] } });
    expect(b.pick(replicas, chat(QWEN))).toMatchObject({ ok: false, reason: 'model-not-found' });
    expect(b.pick(replicas, chat(LLAMA)).ok).toBe(true);
  });

  it("GET /v1/models: the available replicas' models, adapters with their parent, then the aliases; null when nothing is known", () => {
    const b = balancer({ models: { aliases: [{ name: 'gpt-4o', model: QWEN }] } });
    const list = b.modelList(fleet());
    expect(list?.object).toBe('list');
    expect(list?.data.map((m) => [m.id, m.parent])).toEqual([
      [LLAMA, null],
      [QWEN, null],
      ['sql-lora', LLAMA],
      ['gpt-4o', QWEN],
    ]);
    expect(list?.data[0]).toEqual({ id: LLAMA, object: 'model', created: 0, owned_by: 'llm-balancer', parent: null });
    // qwen's only replica is down: its model is not offered.
    const down = fleet().map((r) => (r.id === 'q1' ? { ...r, health: 'unhealthy' as const } : r));
    expect(b.modelList(down)?.data.map((m) => m.id)).toEqual([LLAMA, 'sql-lora', 'gpt-4o']);
    expect(b.modelList(fleet().map(({ models: _m, ...r }) => r))).toBeNull();
  });

  const LORA_BASE = { bases: [LLAMA], adapters: { 'sql-lora': LLAMA, 'chat-lora': LLAMA, 'law-lora': LLAMA, 'new-lora': LLAMA, 'tax-lora': LLAMA } };
  const loraFleet = (slots: Array<{ running: string[]; waiting: string[]; maxLoras: number }>): Replica[] =>
    slots.map((lora, i) => ({ id: 'r' + i, address: '10.0.0.' + (i + 1) + ':8000', weight: 1, models: { served: LORA_BASE, lora } }));
  // r0: both slots running; r1: one running, one free; r2: one running, one free.
  const fleetSlots = () =>
    loraFleet([
      { running: ['chat-lora', 'law-lora'], waiting: [], maxLoras: 2 },
      { running: ['sql-lora'], waiting: [], maxLoras: 2 },
      { running: ['chat-lora'], waiting: [], maxLoras: 2 },
    ]);
  const llmBalancer = (extra: Record<string, unknown> = {}) =>
    createBalancer(configOf({ strategy: 'llm', retries: 0, ...extra }), { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(11) });
  const firstPick = (b: ReturnType<typeof createBalancer>, replicas: Replica[], model: string) => {
    const result = b.pick(replicas, chat(model));
    if (!result.ok) throw new Error(result.message);
    return result.replicas[0].id;
  };

  it("llm scores LoRA-adapter affinity: where vLLM's slots say it runs, else a free slot, and it stays where it was sent", () => {
    const b = llmBalancer();
    const replicas = fleetSlots();
    for (let i = 0; i < 10; i++) expect(firstPick(b, replicas, 'sql-lora')).toBe('r1');
    for (let i = 0; i < 10; i++) expect(firstPick(b, replicas, 'law-lora')).toBe('r0');
    // Running nowhere: a free slot (r1's second or r2's; r0 runs two), and then it stays there
    // though its requests no longer run and /metrics no longer names it.
    const newHome = firstPick(b, replicas, 'new-lora');
    expect(['r1', 'r2']).toContain(newHome);
    for (let i = 0; i < 10; i++) expect(firstPick(b, replicas, 'new-lora')).toBe(newHome);
    // The last free slot is the other one: the next new adapter goes there, not onto a full replica.
    const lastFree = newHome === 'r1' ? 'r2' : 'r1';
    for (let i = 0; i < 10; i++) expect(firstPick(b, replicas, 'tax-lora')).toBe(lastFree);
  });

  it('a replica past the bounded-load ceiling (models.adapter_balance_factor) gets no affinity: the hot adapter spreads', () => {
    const busy = llmBalancer();
    for (let i = 0; i < 6; i++) busy.onStart('r1');
    expect(firstPick(busy, fleetSlots(), 'sql-lora')).not.toBe('r1');
    // Off (adapter_weight 0): the other scores alone spread it over every replica.
    const b = llmBalancer({ llm: { adapter_weight: 0 } });
    const spread = new Set<string>();
    for (let i = 0; i < 30; i++) spread.add(firstPick(b, fleetSlots(), 'sql-lora'));
    expect(spread.size).toBe(3);
  });

  it('models.adapter_filter: least-connections picks among the best-placed replicas first, the rest stay alternates', () => {
    const b = balancer({ retries: 2, models: { adapter_filter: true, adapter_balance_factor: 1.25 } });
    const replicas = fleetSlots();
    const first = b.pick(replicas, chat('sql-lora'));
    expect(first.ok && first.replicas.map((r) => r.id)[0]).toBe('r1');
    // The retries' alternates are the others (a retry must have somewhere to go).
    expect(first.ok && first.replicas.map((r) => r.id).sort()).toEqual(['r0', 'r1', 'r2']);
    // Others busy (3 in flight each): the filter keeps sql-lora on r1 while r1 is under the
    // bound ceil(1.25 × (total + 1) / 3) (the factor set low here to reach it in a few requests), also where least-connections alone would leave it (4 > 3).
    for (let i = 0; i < 3; i++) {
      b.onStart('r0');
      b.onStart('r2');
    }
    for (let k = 0; k < 5; k++) {
      expect(firstPick(b, replicas, 'sql-lora')).toBe('r1');
      b.onStart('r1');
    }
    // Past the bound: the replica with a free slot (r2), not the full one (r0).
    expect(firstPick(b, replicas, 'sql-lora')).toBe('r2');
    // Off by default: least-connections ignores the slots.
    const plain = balancer({ retries: 0 });
    for (let i = 0; i < 3; i++) {
      plain.onStart('r0');
      plain.onStart('r2');
    }
    for (let i = 0; i < 4; i++) plain.onStart('r1');
    expect(firstPick(plain, replicas, 'sql-lora')).not.toBe('r1');
  });

  it('models.adapter_filter with round-robin: the rotation runs over the best-placed replicas, one step per pick', () => {
    const replicas = loraFleet([
      { running: ['chat-lora', 'law-lora'], waiting: [], maxLoras: 2 },
      { running: ['sql-lora'], waiting: [], maxLoras: 2 },
      { running: ['sql-lora'], waiting: [], maxLoras: 2 },
    ]);
    const b = balancer({ strategy: 'round-robin', retries: 2, models: { adapter_filter: true } });
    const firsts: string[] = [];
    for (let i = 0; i < 6; i++) {
      const result = b.pick(replicas, chat('sql-lora'));
      if (!result.ok) throw new Error(result.message);
      firsts.push(result.replicas[0].id);
      // The full replica is the last alternate.
      expect(result.replicas.map((r) => r.id)[2]).toBe('r0');
    }
    expect(firsts.filter((id) => id === 'r1')).toHaveLength(3);
    expect(firsts.filter((id) => id === 'r2')).toHaveLength(3);
  });

  it('property: an adapter request never goes to a replica that does not serve its base model', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('sql-lora', 'chat-lora', 'law-lora', 'new-lora', 'tax-lora'), { minLength: 1, maxLength: 40 }), fc.constantFrom('llm', 'least-connections'), (models, strategy) => {
        const replicas: Replica[] = [...fleetSlots(), { id: 'q', address: '10.0.0.9:8000', weight: 1, models: { served: { bases: [QWEN], adapters: {} }, lora: { running: [], waiting: [], maxLoras: 4 } } }];
        const b = createBalancer(configOf({ strategy, retries: 3, models: { adapter_filter: true } }), { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(3) });
        for (const model of models) {
          const result = b.pick(replicas, chat(model));
          expect(result.ok).toBe(true);
          if (result.ok) {
            expect(result.replicas.map((r) => r.id)).not.toContain('q');
            b.onStart(result.replicas[0].id);
          }
        }
      }),
    );
  });
});
