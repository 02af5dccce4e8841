// Model routing inside the balancer (issue 13): when the adapter attaches what each replica serves
// (Replica.models), the request's model filters the candidates before eligibility and strategy.
// Without it (no replica carries models) nothing changes. Counts only; the clock is fake.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createBalancer, modelRewrite, prefixTableKeys } from '../../shared/balancer';
import { createMemoryStore } from '../../shared/memory-store';
import type { ReplicaModels } from '../../shared/model-routing';
import type { Replica } from '../../shared/types';
import { configOf, fakeClock, seededRandom, view } from '../helpers/core';
import { hashString } from '../../shared/hash';
import { rendezvousOwner } from '../../shared/strategies/consistent-hash';

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

  it("llm scores LoRA-adapter affinity: an adapter goes to its home (the same rendezvous owner on every node) or where vLLM's slots say it runs", () => {
    const base = { bases: [LLAMA], adapters: { 'sql-lora': LLAMA, 'chat-lora': LLAMA, 'law-lora': LLAMA, 'new-lora': LLAMA } };
    const replicas = (slots: Array<{ running: string[]; waiting: string[]; maxLoras: number }>): Replica[] =>
      slots.map((lora, i) => ({ id: 'r' + i, address: '10.0.0.' + (i + 1) + ':8000', weight: 1, models: { served: base, lora } }));
    const fleetSlots = replicas([
      { running: ['chat-lora', 'law-lora'], waiting: [], maxLoras: 2 },
      { running: ['sql-lora'], waiting: [], maxLoras: 2 },
      { running: ['chat-lora'], waiting: [], maxLoras: 2 },
    ]);
    const homeOf = (adapter: string) => 'r' + rendezvousOwner(fleetSlots.map((r) => view(r.id)), hashString(adapter));
    const picks = (model: string) => {
      const b = createBalancer(configOf({ strategy: 'llm', retries: 0 }), { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(11) });
      const seen = new Set<string>();
      for (let i = 0; i < 30; i++) {
        const result = b.pick(fleetSlots, chat(model));
        if (!result.ok) throw new Error(result.message);
        seen.add(result.replicas[0].id);
      }
      return [...seen].sort();
    };
    // Nothing started (loads equal): where it runs, or its home; nowhere else.
    expect(picks('sql-lora')).toEqual([...new Set(['r1', homeOf('sql-lora')])].sort());
    expect(picks('law-lora')).toEqual([...new Set(['r0', homeOf('law-lora')])].sort());
    // Running nowhere: its home only, full slots or not (every node sends it there, so it stays).
    expect(picks('new-lora')).toEqual([homeOf('new-lora')]);
    // A home past the bounded-load ceiling (prefix_affinity.balance_factor) is no home: the
    // adapter spreads by llm-d's scores (a free slot elsewhere) instead of piling on.
    const busy = createBalancer(configOf({ strategy: 'llm', retries: 0 }), { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(11) });
    for (let i = 0; i < 6; i++) busy.onStart(homeOf('new-lora'));
    const first = busy.pick(fleetSlots, chat('new-lora'));
    expect(first.ok && first.replicas[0].id).not.toBe(homeOf('new-lora'));
    // Off: adapter_weight 0 spreads by the other scores alone.
    const b = createBalancer(configOf({ strategy: 'llm', retries: 0, llm: { adapter_weight: 0 } }), { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(11) });
    const spread = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const result = b.pick(fleetSlots, chat('sql-lora'));
      if (result.ok) spread.add(result.replicas[0].id);
    }
    expect(spread.size).toBe(3);
  });
});
