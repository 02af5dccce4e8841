import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createBalancer } from '../../shared/balancer';
import { createMemoryStore } from '../../shared/memory-store';
import { loadBound, rendezvousOrder } from '../../shared/strategies/consistent-hash';
import type { ReplicaView } from '../../shared/types';
import { configOf, fakeClock, replicas, seededRandom, view } from '../helpers/core';

const KEYS = Array.from({ length: 10_000 }, (_, i) => `session-${i}`);

function owners(views: ReplicaView[]): string[] {
  return KEYS.map((key) => rendezvousOrder(views, key)[0].id);
}

function views(n: number, weight = 1): ReplicaView[] {
  return Array.from({ length: n }, (_, i) => view(`replica-${i}`, { weight }));
}

describe('consistent-hash (weighted rendezvous)', () => {
  it.each([4, 8, 16])('moves at most ~1/N of 10,000 keys when one of N=%i replicas leaves or joins', (n) => {
    const base = owners(views(n));
    const removed = owners(views(n).filter((v) => v.id !== 'replica-1'));
    const added = owners(views(n + 1));
    const movedOnRemove = base.filter((owner, i) => owner !== removed[i]).length;
    const movedOnAdd = base.filter((owner, i) => owner !== added[i]).length;
    expect(movedOnRemove / KEYS.length).toBeLessThanOrEqual(1.3 / n);
    expect(movedOnAdd / KEYS.length).toBeLessThanOrEqual(1.3 / (n + 1));
    // Only the departed replica's keys move, and only keys go TO the new replica.
    base.forEach((owner, i) => {
      if (owner !== 'replica-1') expect(removed[i]).toBe(owner);
      if (added[i] !== owner) expect(added[i]).toBe(`replica-${n}`);
    });
  });

  it('spreads keys evenly over equal replicas and in proportion to weight', () => {
    const even = owners(views(5));
    for (let i = 0; i < 5; i++) {
      const share = even.filter((o) => o === `replica-${i}`).length / KEYS.length;
      expect(share).toBeGreaterThan(0.17);
      expect(share).toBeLessThan(0.23);
    }
    const weighted = owners([view('big', { weight: 3 }), view('small', { weight: 1 })]);
    const bigShare = weighted.filter((o) => o === 'big').length / KEYS.length;
    expect(bigShare).toBeGreaterThan(0.72);
    expect(bigShare).toBeLessThan(0.78);
  });

  it('is deterministic per key and independent of candidate order', () => {
    const list = views(6);
    const reversed = [...list].reverse();
    for (const key of KEYS.slice(0, 200)) expect(rendezvousOrder(reversed, key)[0].id).toBe(rendezvousOrder(list, key)[0].id);
  });

  function hashBalancer(extra: Record<string, unknown> = {}) {
    return createBalancer(
      configOf({ strategy: 'consistent-hash', hash_key: { source: 'header', name: 'x-session-id' }, retries: 2, ...extra }),
      { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(3) },
    );
  }

  it('keeps a key on its replica across requests and lists the next ring replicas as alternates', () => {
    const balancer = hashBalancer();
    const list = replicas([1, 1, 1, 1]);
    const first = balancer.pick(list, { headers: { 'x-session-id': 'alice' } });
    for (let i = 0; i < 20; i++) {
      const again = balancer.pick(list, { headers: { 'x-session-id': 'alice' } });
      expect(again).toEqual(first);
    }
    expect(first.ok && new Set(first.replicas.map((r) => r.id)).size).toBe(3);
  });

  it('never lets a replica exceed ceil(c × average) in flight, even when every key is the same', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('hot', 'hot', 'hot', 'a', 'b'), fc.boolean()), { maxLength: 150 }),
        fc.constantFrom(1.0, 1.25, 2),
        (ops, c) => {
          const balancer = hashBalancer({ consistent_hash: { balance_factor: c } });
          const list = replicas([1, 1, 1, 1]);
          const open: string[] = [];
          for (const [key, finish] of ops) {
            if (finish && open.length > 0) {
              balancer.onEnd(list, open.shift()!, { status: 200, latencyMs: 5 });
              continue;
            }
            const before = balancer.status(list);
            const total = before.reduce((sum, s) => sum + s.inFlight, 0);
            const result = balancer.pick(list, { headers: { 'x-session-id': key } });
            if (!result.ok) throw new Error(result.message);
            const id = result.replicas[0].id;
            balancer.onStart(id);
            open.push(id);
            const after = balancer.status(list).find((s) => s.id === id)!;
            expect(after.inFlight).toBeLessThanOrEqual(Math.ceil((c * (total + 1)) / 4));
          }
        },
      ),
    );
  });

  it('computes the weighted bound counting the request being placed', () => {
    const list = [view('a', { inFlight: 3, weight: 3 }), view('b', { inFlight: 1, weight: 1 })];
    expect(loadBound(list, 1.25, list[0])).toBe(Math.ceil((1.25 * 5 * 3) / 4));
  });

  it('falls back to the configured strategy when the request has no key', () => {
    const balancer = hashBalancer({ consistent_hash: { fallback: 'round-robin' }, retries: 0 });
    const list = replicas([1, 1, 1]);
    const ids = Array.from({ length: 6 }, () => {
      const result = balancer.pick(list, { headers: {} });
      return result.ok ? result.replicas[0].id : 'none';
    });
    expect(ids).toEqual(['r0', 'r1', 'r2', 'r0', 'r1', 'r2']);
  });

  it('balance_factor 0 disables the bound: a hot key stays put however loaded', () => {
    const balancer = hashBalancer({ consistent_hash: { balance_factor: 0 } });
    const list = replicas([1, 1, 1, 1]);
    const picks = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const result = balancer.pick(list, { headers: { 'x-session-id': 'hot' } });
      if (!result.ok) throw new Error(result.message);
      balancer.onStart(result.replicas[0].id);
      picks.add(result.replicas[0].id);
    }
    expect(picks.size).toBe(1);
  });
});
