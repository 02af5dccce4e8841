import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createBalancer, needsRequestBody, readsTokens } from '../../shared/balancer';
import { createMemoryStore } from '../../shared/memory-store';
import { createLeastTokens, requestTokenEstimate } from '../../shared/strategies/least-tokens';
import type { StrategyContext } from '../../shared/types';
import { configOf, fakeClock, replicas, seededRandom, view } from '../helpers/core';

function context(requestTokens: number, random = seededRandom(5)): StrategyContext {
  return { request: {}, hashKey: null, requestTokens, llm: null, random, now: 0, nextCursor: () => 0 };
}

const chat = (content: string, extra: Record<string, unknown> = {}) => ({ model: 'm', messages: [{ role: 'user', content }], ...extra });

describe('least-tokens', () => {
  it.each([
    // Two replicas with 1 request each: a long prompt on r0 makes r1 the pick, though least-connections ties.
    { tokens: [4200, 300], weights: [1, 1], expected: 'r1' },
    { tokens: [0, 0, 100], weights: [1, 1, 1], expected: ['r0', 'r1'] },
    // Weights: (3000 + 500) / 2 = 1750 > (1000 + 500) / 1 = 1500, but (2000 + 500) / 2 = 1250 < 1500.
    { tokens: [3000, 1000], weights: [2, 1], expected: 'r1' },
    { tokens: [2000, 1000], weights: [2, 1], expected: 'r0' },
  ])('picks the lowest (tokens in flight + own) / weight: $tokens / $weights', ({ tokens, weights, expected }) => {
    const strategy = createLeastTokens(configOf({ strategy: 'least-tokens' }), createMemoryStore());
    const views = tokens.map((n, i) => view(`r${i}`, { tokens: n, weight: weights[i] }));
    const picked = strategy.order(views, context(500), 1)[0].id;
    if (Array.isArray(expected)) expect(expected).toContain(picked);
    else expect(picked).toBe(expected);
  });

  it("counts only the uncached prompt on the replica last sent the conversation: its next turn stays there until the load says otherwise", () => {
    const store = createMemoryStore();
    const balancer = createBalancer(configOf({ strategy: 'least-tokens' }), { store, clock: fakeClock(), random: seededRandom(3) });
    const fleet = replicas([1, 1]);
    // A long system prompt (4000 tokens) and a first turn.
    const system = { role: 'system', content: 's'.repeat(16000) };
    const turn1 = { model: 'm', max_tokens: 100, messages: [system, { role: 'user', content: 'first question' }] };
    const first = balancer.pick(fleet, { body: turn1 });
    if (!first.ok) throw new Error(first.message);
    const home = first.replicas[0].id;
    expect(first.tokens).toBe(first.promptTokens + 100);
    balancer.onEnd(fleet, first.replicas[0], { status: 200, latencyMs: 1, tokens: 0 });
    // Another client's request (2000 tokens) is in flight on the home replica: by whole prompts the
    // other one is cheaper; without the 4000 cached tokens the home replica is.
    balancer.onStart(fleet.find((r) => r.id === home) as (typeof fleet)[0], 2000);
    const turn2 = { model: 'm', max_tokens: 100, messages: [system, { role: 'user', content: 'first question' }, { role: 'assistant', content: 'an answer' }, { role: 'user', content: 'and then?' }] };
    const second = balancer.pick(fleet, { body: turn2 });
    if (!second.ok) throw new Error(second.message);
    expect(second.replicas[0].id).toBe(home);
    // Only the uncached part counts in flight: the whole prompt less 4000 tokens' worth of whole 64-token blocks.
    const whole = 4 + 4000 + 4 + 4 + 3 + 4 + 3 + 4 + 3 + 100;
    expect(second.tokens).toBeLessThan(whole - 3900);
    expect(second.tokens).toBeGreaterThan(100);
    expect(second.promptTokens).toBe(second.tokens - 100);
    // With the discount off, the same situation goes by whole prompts: to the other replica.
    const plain = createBalancer(configOf({ strategy: 'least-tokens', least_tokens: { discount_cached_prefix: false } }), { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(3) });
    const p1 = plain.pick(fleet, { body: turn1 });
    if (!p1.ok) throw new Error(p1.message);
    plain.onStart(p1.replicas[0], 2000);
    const p2 = plain.pick(fleet, { body: turn2 });
    expect(p2.ok && p2.replicas[0].id).not.toBe(p1.replicas[0].id);
    expect(p2.ok && p2.tokens).toBe(p2.ok ? p2.promptTokens + 100 : -1);
  });

  it('the cached part never exceeds the prompt, and a heavy enough load still moves the conversation', () => {
    const balancer = createBalancer(configOf({ strategy: 'least-tokens' }), { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(4) });
    const fleet = replicas([1, 1]);
    const body = { model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'q'.repeat(8000) }] };
    const first = balancer.pick(fleet, { body });
    if (!first.ok) throw new Error(first.message);
    const home = fleet.find((r) => r.id === first.replicas[0].id) as (typeof fleet)[0];
    // The same prompt again: fully cached at home (its prompt counts 0 there, never negative).
    const again = balancer.pick(fleet, { body });
    expect(again.ok && again.replicas[0].id).toBe(home.id);
    expect(again.ok && again.tokens).toBeGreaterThanOrEqual(10);
    expect(again.ok && again.promptTokens).toBeGreaterThanOrEqual(0);
    // 10,000 tokens in flight at home outweigh the 2,000 a cold replica would prefill.
    balancer.onStart(home, 10000);
    const moved = balancer.pick(fleet, { body });
    expect(moved.ok && moved.replicas[0].id).not.toBe(home.id);
  });

  it('prefill_weight: the prompt a replica would prefill weighs more than the load, so the prefix holder keeps it under a load that moves it at weight 1', () => {
    const body = { model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'q'.repeat(8000) }] };
    const homeUnder = (weight: number, load: number): boolean => {
      const balancer = createBalancer(configOf({ strategy: 'least-tokens', least_tokens: { prefill_weight: weight } }), { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(4) });
      const fleet = replicas([1, 1]);
      const first = balancer.pick(fleet, { body });
      if (!first.ok) throw new Error(first.message);
      const home = fleet.find((r) => r.id === first.replicas[0].id) as (typeof fleet)[0];
      balancer.onStart(home, load);
      const next = balancer.pick(fleet, { body });
      if (!next.ok) throw new Error(next.message);
      // What is counted in flight stays the estimate (the prefill weight orders, it does not count).
      expect(next.tokens).toBe(next.replicas[0].id === home.id ? next.promptTokens + 10 : 2004 + 10);
      return next.replicas[0].id === home.id;
    };
    // ~2,000 prompt tokens cold elsewhere against 3,000 in flight at home: plain token load moves it...
    expect(homeUnder(1, 3000)).toBe(false);
    // ...at weight 4 the 2,000 cold tokens count 8,000: it stays, until the load outweighs that too.
    expect(homeUnder(4, 3000)).toBe(true);
    expect(homeUnder(4, 7000)).toBe(true);
    expect(homeUnder(4, 9000)).toBe(false);
  });

  it('estimates a request from its OpenAI body: prompt tokens + max_tokens capped, defaults otherwise', () => {
    const config = configOf({ strategy: 'least-tokens', least_tokens: { default_output_tokens: 100, max_output_tokens: 1000, default_request_tokens: 777 } });
    // 'x' × 400 = 100 tokens + 4 for the message.
    expect(requestTokenEstimate(config, chat('x'.repeat(400)))).toBe(104 + 100);
    expect(requestTokenEstimate(config, chat('x'.repeat(400), { max_tokens: 50 }))).toBe(104 + 50);
    expect(requestTokenEstimate(config, chat('x'.repeat(400), { max_tokens: 32000 }))).toBe(104 + 1000);
    expect(requestTokenEstimate(config, { prompt: 'y'.repeat(40), max_tokens: 10 })).toBe(10 + 10);
    for (const body of [undefined, null, 'text', [1, 2], { not: 'openai' }]) expect(requestTokenEstimate(config, body)).toBe(777);
  });

  it('tells the adapter to read the body, also as the fallback of a key strategy', () => {
    expect(readsTokens(configOf({ strategy: 'least-tokens' }))).toBe(true);
    expect(needsRequestBody(configOf({ strategy: 'least-tokens' }))).toBe(true);
    const keyed = configOf({ strategy: 'consistent-hash', hash_key: { source: 'header', name: 'x-user' }, consistent_hash: { fallback: 'least-tokens' } });
    expect(readsTokens(keyed)).toBe(true);
    expect(needsRequestBody(configOf({ strategy: 'least-connections' }))).toBe(false);
  });

  it('counts tokens at start and releases them at the end: a long prompt steers the next requests away', () => {
    const store = createMemoryStore();
    const clock = fakeClock();
    const balancer = createBalancer(configOf({ strategy: 'least-tokens' }), { store, clock, random: seededRandom(2) });
    const fleet = replicas([1, 1]);
    const long = balancer.pick(fleet, { body: chat('x'.repeat(16000), { max_tokens: 100 }) });
    if (!long.ok) throw new Error(long.message);
    expect(long.tokens).toBe(4004 + 100);
    balancer.onStart(long.replicas[0], long.tokens);
    const busy = long.replicas[0].id;
    // Five short chats in flight at once all go to the other replica: 5 × 356 < 4104.
    const shorts = [];
    for (let i = 0; i < 5; i++) {
      const short = balancer.pick(fleet, { body: chat('hi') });
      if (!short.ok) throw new Error(short.message);
      expect(short.replicas[0].id).not.toBe(busy);
      balancer.onStart(short.replicas[0], short.tokens);
      shorts.push(short);
    }
    const status = balancer.status(fleet);
    expect(status.find((row) => row.id === busy)?.tokens).toBe(4104);
    expect(status.find((row) => row.id !== busy)?.tokens).toBe(5 * shorts[0].tokens);
    balancer.onEnd(fleet, long.replicas[0], { status: 200, latencyMs: 10, tokens: long.tokens });
    for (const short of shorts) balancer.onEnd(fleet, short.replicas[0], { status: 200, latencyMs: 10, tokens: short.tokens });
    expect(balancer.status(fleet).map((row) => row.tokens)).toEqual([0, 0]);
  });

  it("names the prompt's part of the tokens, which releaseTokens lets go before the end (first streamed byte)", () => {
    const balancer = createBalancer(configOf({ strategy: 'least-tokens' }), { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(1) });
    const fleet = replicas([1]);
    const result = balancer.pick(fleet, { body: chat('x'.repeat(400), { max_tokens: 50 }) });
    if (!result.ok) throw new Error(result.message);
    expect([result.tokens, result.promptTokens]).toEqual([154, 104]);
    balancer.onStart(fleet[0], result.tokens);
    balancer.releaseTokens(fleet[0], result.promptTokens);
    expect(balancer.status(fleet)[0].tokens).toBe(50);
    balancer.onEnd(fleet, fleet[0], { status: 200, latencyMs: 1, tokens: result.tokens - result.promptTokens });
    expect(balancer.status(fleet)[0].tokens).toBe(0);
    // Without a readable body there is no prompt part to release early.
    const blind = balancer.pick(fleet, { body: 'not json' });
    expect(blind.ok && [blind.tokens, blind.promptTokens]).toEqual([512, 0]);
  });

  it('never shows negative tokens, whatever the order of starts and ends (lost races, zone resets)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat(3), fc.integer({ min: 1, max: 5000 })), { maxLength: 100 }), (ops) => {
        const store = createMemoryStore();
        const balancer = createBalancer(configOf({ strategy: 'least-tokens' }), { store, clock: fakeClock(), random: seededRandom(1) });
        const fleet = replicas([1, 1, 1, 1]);
        for (const [start, index, tokens] of ops) {
          if (start) balancer.onStart(fleet[index], tokens);
          else balancer.onEnd(fleet, fleet[index], { status: 200, latencyMs: 1, tokens });
          for (const row of balancer.status(fleet)) expect(row.tokens).toBeGreaterThanOrEqual(0);
        }
      }),
    );
  });

  it('counts the requests it placed without an OpenAI body (never refuses them); other strategies count none', () => {
    const balancer = createBalancer(configOf({ strategy: 'least-tokens' }), { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(1) });
    const fleet = replicas([1, 1]);
    for (const body of [undefined, 'text', { not: 'openai' }, chat('hi')]) expect(balancer.pick(fleet, { body }).ok).toBe(true);
    expect(balancer.requestsWithoutLlmBody()).toBe(3);
    const plain = createBalancer(configOf({ strategy: 'least-connections' }), { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(1) });
    plain.pick(fleet, { body: 'text' });
    expect(plain.requestsWithoutLlmBody()).toBe(0);
  });

  it('returns tokens 0 from strategies that do not count them, and onStart without tokens counts none', () => {
    const store = createMemoryStore();
    const balancer = createBalancer(configOf({ strategy: 'least-connections' }), { store, clock: fakeClock(), random: seededRandom(1) });
    const fleet = replicas([1, 1]);
    const result = balancer.pick(fleet, { body: chat('x'.repeat(4000)) });
    expect(result.ok && result.tokens).toBe(0);
    balancer.onStart(fleet[0]);
    expect(balancer.status(fleet)[0].tokens).toBe(0);
  });
});
