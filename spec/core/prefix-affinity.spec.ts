import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createBalancer, prefixTableKeys } from '../../shared/balancer';
import { hashString } from '../../shared/hash';
import { createMemoryStore } from '../../shared/memory-store';
import { deepestMatch, encodeEntry, matchDepths, recordRoute, replicaTag, slotKey } from '../../shared/prefix-table';
import { imbalanced, underBound } from '../../shared/strategies/prefix-affinity';
import type { Replica } from '../../shared/types';
import { configOf, fakeClock, replicas, seededRandom, view } from '../helpers/core';
import { prefixOwnerId } from '../helpers/prefix';

/** A chat body: a shared system prompt, then the conversation's turns. */
function chat(system: string, turns: string[]): Record<string, unknown> {
  const messages = [{ role: 'system', content: system }];
  turns.forEach((text, i) => messages.push({ role: i % 2 === 0 ? 'user' : 'assistant', content: text }));
  return { model: 'm', messages };
}

const SYSTEMS = ['A', 'B', 'C', 'D'].map((letter) => `You are agent ${letter}. `.repeat(120)); // ~2,500 characters each

function balancerWith(options: Record<string, unknown> = {}, seed = 1) {
  const store = createMemoryStore();
  const clock = fakeClock();
  const balancer = createBalancer(configOf({ strategy: 'prefix-affinity', prefix_affinity: options }), { store, clock, random: seededRandom(seed) });
  return { store, balancer };
}

/** Picks, starts and (unless `hold`) ends one request; returns the replica id. */
function send(b: ReturnType<typeof balancerWith>['balancer'], fleet: Replica[], body: unknown, hold = false): string {
  const result = b.pick(fleet, { body });
  if (!result.ok) throw new Error(result.message);
  b.onStart(result.replicas[0], result.tokens);
  if (!hold) b.onEnd(fleet, result.replicas[0], { status: 200, latencyMs: 5 });
  return result.replicas[0].id;
}

describe('prefix table', () => {
  it('finds the deepest block a candidate was sent, and misses blocks overwritten in their slot', () => {
    const store = createMemoryStore();
    const a = replicaTag('a');
    const b = replicaTag('b');
    recordRoute(store, [11, 22, 33], 1024, a);
    recordRoute(store, [11, 22], 1024, b);
    // Block 33 still names a (the whole 3-block prefix went there); 11 and 22 now name b.
    expect(deepestMatch(store, [11, 22, 33], 1024, [a, b])).toEqual({ depth: 3, index: 0 });
    expect(deepestMatch(store, [11, 22, 44], 1024, [a, b])).toEqual({ depth: 2, index: 1 });
    // a is not a candidate (ejected): the deepest block held by a candidate counts.
    expect(deepestMatch(store, [11, 22, 33], 1024, [b])).toEqual({ depth: 2, index: 0 });
    // Per candidate: how deep each one's prefix goes (least-tokens' uncached prompt).
    expect(matchDepths(store, [11, 22, 33], 1024, [a, b, replicaTag('c')])).toEqual([3, 2, 0]);
    expect(matchDepths(store, [11, 22, 44], 1024, [a, b])).toEqual([0, 2]);
    expect(matchDepths(store, [], 1024, [a])).toEqual([0]);
    // A block with the same slot (1024 + 11) replaces 11: the lookup of 11 is a miss.
    recordRoute(store, [1024 + 11], 1024, a);
    expect(deepestMatch(store, [11], 1024, [a, b])).toEqual({ depth: 0, index: -1 });
    expect(store.get(slotKey(11, 1024))).toBe(encodeEntry(a, 1024 + 11));
  });

  it('encodes tag and hash exactly for every 21-bit tag and 32-bit hash', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 21 - 1 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), (tag, hash) => {
        const entry = encodeEntry(tag, hash);
        expect(Number.isSafeInteger(entry)).toBe(true);
        expect(entry % 2 ** 32).toBe(hash);
        expect(Math.floor(entry / 2 ** 32)).toBe(tag);
      }),
    );
  });
});

describe('prefix-affinity', () => {
  it('sends every turn of a conversation, and other conversations with the same system prompt, to one replica', () => {
    const { balancer } = balancerWith();
    const fleet = replicas([1, 1, 1, 1]);
    const homes: Record<string, Set<string>> = {};
    for (let turn = 1; turn <= 4; turn++) {
      for (let s = 0; s < SYSTEMS.length; s++) {
        for (let conversation = 0; conversation < 3; conversation++) {
          const turns = Array.from({ length: turn }, (_, i) => `conversation ${s}-${conversation} turn ${i} `.repeat(8));
          (homes[s] ??= new Set()).add(send(balancer, fleet, chat(SYSTEMS[s], turns)));
        }
      }
    }
    for (const s of Object.keys(homes)) expect([...homes[s]], `system prompt ${s}`).toHaveLength(1);
  });

  it('with placement least-load, spreads different prefixes by load (no match: least load, random ties)', () => {
    const { balancer } = balancerWith({ placement: 'least-load' });
    const fleet = replicas([1, 1, 1, 1]);
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add(send(balancer, fleet, chat(`Unique prompt ${i}. `.repeat(100), ['hi']), true));
    expect(seen.size).toBe(4);
  });

  it('a hot prefix never piles onto one replica: past the bound it moves, and every replica stays within it', () => {
    const { balancer } = balancerWith({ balance_factor: 1.25 });
    const fleet = replicas([1, 1, 1, 1]);
    const counts: Record<string, number> = {};
    // 40 requests of the same prefix, all held in flight.
    for (let i = 0; i < 40; i++) {
      const id = send(balancer, fleet, chat(SYSTEMS[0], [`question ${i}`]), true);
      counts[id] = (counts[id] ?? 0) + 1;
      const total = Object.values(counts).reduce((s, n) => s + n, 0);
      for (const n of Object.values(counts)) expect(n).toBeLessThanOrEqual(Math.ceil((1.25 * total) / 4) + 1);
    }
    expect(Object.keys(counts)).toHaveLength(4);
  });

  it('without the bound (balance_factor 0) and within the thresholds the hot prefix stays put', () => {
    const { balancer } = balancerWith({ balance_factor: 0, balance_abs: 1000 });
    const fleet = replicas([1, 1, 1, 1]);
    const homes = new Set<string>();
    for (let i = 0; i < 20; i++) homes.add(send(balancer, fleet, chat(SYSTEMS[1], [`question ${i}`]), true));
    expect(homes.size).toBe(1);
  });

  it('goes to least load when the spread passes both thresholds, whatever the match', () => {
    expect(imbalanced([view('a', { inFlight: 20 }), view('b', { inFlight: 3 })], 16, 1.5)).toBe(true);
    // Absolute gap too small, or ratio too small: balanced.
    expect(imbalanced([view('a', { inFlight: 10 }), view('b', { inFlight: 3 })], 16, 1.5)).toBe(false);
    expect(imbalanced([view('a', { inFlight: 120 }), view('b', { inFlight: 100 })], 16, 1.5)).toBe(false);
    // Per weight: 20 on a weight-2 replica is 10.
    expect(imbalanced([view('a', { inFlight: 20, weight: 2 }), view('b', { inFlight: 0 })], 16, 1.5)).toBe(false);
    expect(underBound([view('a', { inFlight: 2 }), view('b', { inFlight: 0 })], view('a', { inFlight: 2 }), 1.25)).toBe(false);
    expect(underBound([view('a', { inFlight: 1 }), view('b', { inFlight: 1 })], view('a', { inFlight: 1 }), 1.25)).toBe(true);
    expect(underBound([view('a', { inFlight: 9 }), view('b', { inFlight: 0 })], view('a', { inFlight: 9 }), 0)).toBe(true);
  });

  it('needs min_match of the prompt: a long new question after a short shared opening is placed by load (least-load) or its owner (rendezvous)', () => {
    const opening = 'Shared opening. '.repeat(20); // 320 characters: one 256-character block
    const fleet = replicas([1, 1]);
    {
      const { balancer } = balancerWith({ min_match: 0.5, placement: 'least-load' });
      const first = send(balancer, fleet, chat(opening, ['x'.repeat(2000)]), true);
      // Same opening, a different 2,000-character question: 1 of ~9 blocks matches (< 0.5): least load → the other replica.
      const second = send(balancer, fleet, chat(opening, ['y'.repeat(2000)]), true);
      expect(second).not.toBe(first);
    }
    {
      // Rendezvous: the match is too short to count, so the owner of the first block decides — the
      // same opening, the same owner (the first went there too, the table being empty).
      const { balancer } = balancerWith({ min_match: 0.5 });
      const first = send(balancer, fleet, chat(opening, ['x'.repeat(2000)]), true);
      const second = send(balancer, fleet, chat(opening, ['y'.repeat(2000)]), true);
      expect(first).toBe(prefixOwnerId(fleet, chat(opening, ['x'])));
      expect(second).toBe(first);
    }
  });

  it('ignores requests without an OpenAI body (least load), and records nothing for them', () => {
    const { balancer, store } = balancerWith();
    const fleet = replicas([1, 1]);
    const a = send(balancer, fleet, undefined, true);
    const b = send(balancer, fleet, { not: 'openai' }, true);
    expect(a).not.toBe(b);
    expect(Object.keys(store.dump()).filter((key) => key.startsWith('pa:'))).toEqual([]);
  });
});

describe("the prompt's block hash comes from the balancer's deps (hashText: the NGINX module gives nginx's MD5)", () => {
  const hashText = (text: string) => hashString('other:' + text);
  it.each([
    ['prefix-affinity', {}],
    ['least-tokens', {}],
    ['llm', {}],
  ])('%s hashes the prompt with it, and records the slots prefixTableKeys names with the same hash', (strategy, extra) => {
    const store = createMemoryStore();
    let calls = 0;
    const counting = (text: string) => {
      calls++;
      return hashText(text);
    };
    const config = configOf(Object.assign({ strategy }, extra));
    const balancer = createBalancer(config, { store, clock: fakeClock(), random: seededRandom(1), hashText: counting });
    const fleet = replicas([1, 1, 1]);
    const body = chat(SYSTEMS[0], ['hello']);
    const result = balancer.pick(fleet, { body });
    if (!result.ok) throw new Error(result.message);
    balancer.onStart(result.replicas[0], result.tokens);
    balancer.onEnd(fleet, result.replicas[0], { status: 200, latencyMs: 5 });
    expect(calls).toBeGreaterThan(0);
    const ours = prefixTableKeys(config, { body }, false, hashText);
    const fnv = prefixTableKeys(config, { body });
    expect(ours.length).toBeGreaterThan(0);
    for (const key of ours) expect(store.get(key), key).not.toBeUndefined();
    // The JavaScript default names other slots: chains of two hashes never match.
    expect(fnv.filter((key) => !ours.includes(key) && store.get(key) !== undefined)).toEqual([]);
  });
});
