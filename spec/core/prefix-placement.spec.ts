// Prefix placement without shared state: two balancers with their own stores (two gateway nodes)
// must send a prefix neither table knows to the same replica, for every prefix-aware strategy.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createBalancer } from '../../shared/balancer';
import { createMemoryStore } from '../../shared/memory-store';
import { readLlmRequest } from '../../shared/llm-request';
import { prefixBlockHashes } from '../../shared/prefix-blocks';
import { prefixOwner, presumedDepth } from '../../shared/prefix-placement';
import { recordRoute, replicaTag } from '../../shared/prefix-table';
import type { Replica } from '../../shared/types';
import { configOf, fakeClock, replicas, seededRandom, view } from '../helpers/core';
import { prefixOwnerId } from '../helpers/prefix';

const PREFIX_STRATEGIES = ['prefix-affinity', 'least-tokens', 'llm'] as const;

/** A chat body: a system prompt and one user question. */
function chat(system: string, question: string): Record<string, unknown> {
  return { model: 'm', max_tokens: 100, messages: [{ role: 'system', content: system }, { role: 'user', content: question }] };
}

/** A system prompt of ~2,000 characters (8 blocks), distinct per seed text. */
const systemPrompt = (name: string) => `You are assistant ${name}. Follow the house rules. `.repeat(40);

function node(strategy: string, seed: number, options: Record<string, unknown> = {}) {
  const store = createMemoryStore();
  const balancer = createBalancer(configOf({ strategy, prefix_affinity: options }), { store, clock: fakeClock(), random: seededRandom(seed) });
  return { store, balancer };
}

type Node = ReturnType<typeof node>;

/** Picks, starts and (unless `hold`) ends one request; the replica id. */
function send(n: Node, fleet: Replica[], body: unknown, hold = false): string {
  const result = n.balancer.pick(fleet, { body });
  if (!result.ok) throw new Error(result.message);
  n.balancer.onStart(result.replicas[0], result.tokens);
  if (!hold) n.balancer.onEnd(fleet, result.replicas[0], { status: 200, latencyMs: 5, tokens: result.tokens });
  return result.replicas[0].id;
}

describe('prefix placement: the rendezvous owner of an unknown prefix', () => {
  it.each(PREFIX_STRATEGIES)('%s: two nodes with their own state place the same new prompts on the same replica (the owner)', (strategy) => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 2, max: 6 }),
        fc.integer({ min: 1, max: 1000 }),
        fc.boolean(),
        (names, size, seed, weighted) => {
          // least-tokens and llm divide load by weight, which outweighs the presumed share on an idle
          // weighted fleet, and break the remaining ties at random: their agreement needs equal weights.
          const fleet = replicas(Array.from({ length: size }, (_, i) => (weighted && strategy === 'prefix-affinity' ? 1 + (i % 3) : 1)));
          const a = node(strategy, seed);
          const b = node(strategy, seed + 7919);
          for (let i = 0; i < names.length; i++) {
            const body = chat(systemPrompt(names[i]), `question ${i}`);
            const picked = send(a, fleet, body);
            expect(send(b, fleet, body)).toBe(picked);
            expect(picked).toBe(prefixOwnerId(fleet, body));
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it.each(PREFIX_STRATEGIES)('%s with placement least-load: the two nodes disagree on some new prompts (what rendezvous fixes)', (strategy) => {
    const fleet = replicas([1, 1, 1, 1]);
    const a = node(strategy, 1, { placement: 'least-load' });
    const b = node(strategy, 2, { placement: 'least-load' });
    let disagreements = 0;
    for (let i = 0; i < 40; i++) {
      const body = chat(systemPrompt('p' + i), 'hello');
      if (send(a, fleet, body) !== send(b, fleet, body)) disagreements++;
    }
    expect(disagreements).toBeGreaterThan(10);
  });

  it('a conversation keeps its owner as it grows (the key is the first block), so a node that never saw it sends its later turn where the first went', () => {
    const fleet = replicas([1, 1, 1, 1, 1]);
    for (let c = 0; c < 30; c++) {
      const first = node('prefix-affinity', 1);
      const other = node('prefix-affinity', 2);
      const system = `Short rules ${c}. `.repeat(5); // < one block: the user's first words complete block 0
      const turn1 = { model: 'm', messages: [{ role: 'system', content: system }, { role: 'user', content: `conversation ${c} asks something long enough `.repeat(8) }] };
      const turn3 = {
        model: 'm',
        messages: (turn1.messages as Array<{ role: string; content: string }>).concat([
          { role: 'assistant', content: 'an answer '.repeat(30) },
          { role: 'user', content: 'and a follow-up '.repeat(20) },
        ]),
      };
      expect(send(other, fleet, turn3)).toBe(send(first, fleet, turn1));
    }
  });

  it('the owner changes for about 1/N of prefixes when one of N replicas leaves, and only for those it owned', () => {
    const fleet = replicas([1, 1, 1, 1, 1]);
    const views = fleet.map((r) => view(r.id));
    const remaining = views.slice(0, 4);
    let moved = 0;
    const prompts = 2000;
    for (let i = 0; i < prompts; i++) {
      const hashes = prefixBlockHashes(`prompt ${i} `.repeat(40), 256, 128);
      const before = views[prefixOwner(views, hashes)].id;
      const after = remaining[prefixOwner(remaining, hashes)].id;
      if (before !== after) {
        moved++;
        expect(before).toBe('r4');
      }
    }
    expect(moved / prompts).toBeGreaterThan(0.15);
    expect(moved / prompts).toBeLessThan(0.25);
  });

  it('owns prefixes in proportion to weight (weighted rendezvous)', () => {
    const views = [view('a', { weight: 1 }), view('b', { weight: 3 })];
    let b = 0;
    for (let i = 0; i < 4000; i++) if (prefixOwner(views, prefixBlockHashes(`doc ${i} `.repeat(40), 256, 1)) === 1) b++;
    expect(b / 4000).toBeGreaterThan(0.72);
    expect(b / 4000).toBeLessThan(0.78);
  });

  it('has no owner without a full block, and presumes min_match of the blocks, at least one, at most all', () => {
    expect(prefixOwner([view('a')], [])).toBe(-1);
    expect(prefixOwner([], [123])).toBe(-1);
    expect(presumedDepth(0, 0.3)).toBe(0);
    expect(presumedDepth(10, 0.3)).toBe(3);
    expect(presumedDepth(10, 0.31)).toBe(4);
    expect(presumedDepth(10, 0)).toBe(1);
    expect(presumedDepth(10, 1)).toBe(10);
  });
});

describe('prefix-affinity placement under the load guards', () => {
  it('spills a hot new prefix past the bounded-load ceiling, owner first, every replica within the bound', () => {
    // min_match 1: the table never counts (each question differs), so every pick goes through the owner.
    const n = node('prefix-affinity', 3, { min_match: 1, balance_factor: 1.25 });
    const fleet = replicas([1, 1, 1, 1]);
    const system = systemPrompt('hot');
    const owner = prefixOwnerId(fleet, chat(system, 'x'));
    const counts: Record<string, number> = {};
    for (let i = 0; i < 24; i++) {
      const id = send(n, fleet, chat(system, `question number ${i} `.repeat(30)), true);
      if (i === 0) expect(id).toBe(owner);
      counts[id] = (counts[id] ?? 0) + 1;
      const total = i + 1;
      for (const held of Object.values(counts)) expect(held).toBeLessThanOrEqual(Math.ceil((1.25 * total) / 4));
    }
    expect(Object.keys(counts).length).toBe(4);
    // The owner stays the fullest: it takes every request while it has room.
    expect(counts[owner]).toBe(Math.max(...Object.values(counts)));
  });

  it('the imbalance thresholds send a new prefix to least load even with its owner under the bound', () => {
    const fleet = replicas([1, 1]);
    const system = systemPrompt('imbalance');
    const owner = prefixOwnerId(fleet, chat(system, 'x'));
    // No bound, thresholds at 2 in flight and 1.5x: the owner takes the first three, then least load.
    const n = node('prefix-affinity', 4, { min_match: 1, balance_factor: 0, balance_abs: 2, balance_rel: 1.5 });
    const picks: string[] = [];
    for (let i = 0; i < 4; i++) picks.push(send(n, fleet, chat(system, `question number ${i} `.repeat(30)), true));
    expect(picks.slice(0, 3)).toEqual([owner, owner, owner]);
    expect(picks[3]).not.toBe(owner);
  });

  it.each(PREFIX_STRATEGIES)('%s: the table wins when it knows the prefix, wherever the owner is', (strategy) => {
    const fleet = replicas([1, 1, 1]);
    const body = chat(systemPrompt('known'), 'what now?');
    const owner = prefixOwnerId(fleet, body);
    const holder = fleet.find((r) => r.id !== owner)!.id;
    const n = node(strategy, 5);
    const parsed = readLlmRequest(body);
    if (!parsed.ok) throw new Error(parsed.message);
    recordRoute(n.store, prefixBlockHashes(parsed.request.promptKey, 256, 128), 8192, replicaTag(holder));
    expect(send(n, fleet, body)).toBe(holder);
  });
});

describe('least-tokens and llm: the owner of an unknown prefix is presumed, not known, to hold it', () => {
  const fleet = replicas([1, 1]);
  const body = chat(systemPrompt('tokens'), 'a question'); // ~2,000 characters: 8 blocks, ~500 tokens
  const owner = prefixOwnerId(fleet, body);
  const other = fleet.find((r) => r.id !== owner)!.id;

  it('least-tokens counts the full prompt in flight on the owner (no discount for a presumption), and the discount on a known holder', () => {
    const n = node('least-tokens', 6);
    const unknown = n.balancer.pick(fleet, { body });
    if (!unknown.ok) throw new Error(unknown.message);
    expect(unknown.replicas[0].id).toBe(owner);
    const full = unknown.tokens;
    // The same prompt again: the table now knows the owner holds its 8 blocks (512 tokens, capped at the prompt).
    const known = n.balancer.pick(fleet, { body });
    if (!known.ok) throw new Error(known.message);
    expect(known.replicas[0].id).toBe(owner);
    expect(known.tokens).toBeLessThan(full);
    expect(full - known.tokens).toBeGreaterThan(400);
  });

  it('least-tokens: load beyond the presumed share (min_match of the prompt) overrides the owner', () => {
    const n = node('least-tokens', 7);
    // ~500-token prompt, presumed 3 of 8 blocks = 192 tokens: 100 tokens more in flight on the owner still lose to it, 400 do not.
    n.balancer.onStart(owner, 100);
    expect(send(n, fleet, chat(systemPrompt('tokens'), 'a question'))).toBe(owner);
    const m = node('least-tokens', 7);
    m.balancer.onStart(owner, 400);
    expect(send(m, fleet, chat(systemPrompt('tokens'), 'a question'))).toBe(other);
    // least-load placement: the 100 extra tokens decide alone.
    const l = node('least-tokens', 7, { placement: 'least-load' });
    l.balancer.onStart(owner, 100);
    expect(send(l, fleet, chat(systemPrompt('tokens'), 'a question'))).toBe(other);
  });

  it('llm: a busier owner loses to load; an idle one wins; a real match elsewhere beats the presumption', () => {
    // Idle: only the presumed prefix score differs.
    expect(send(node('llm', 8), fleet, body)).toBe(owner);
    // Two requests in flight on the owner (queue and token scores both favour the other by their full weight).
    const busy = node('llm', 8);
    busy.balancer.onStart(owner, 600);
    busy.balancer.onStart(owner, 600);
    expect(send(busy, fleet, body)).toBe(other);
  });
});
