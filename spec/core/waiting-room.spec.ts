// The NGINX waiting room's contract (shared/waiting-room.ts), on a fake shared dict with expiry on
// a fake clock: every request leaves exactly once (granted, displaced, timed out or gone), a round
// grants only what the pool has room for (less grants not yet consumed), strictly by band, FIFO per
// tenant, fair across tenants (start-time fair queueing tags), and the cap displaces lower bands.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { claimRound, consumeGrant, dispatchRound, enter, entryMissing, leave, parseTicket, ROUND_MS, someoneWaits, verdictOf, waitingByBand, waitingEntries, waitingOrder } from '../../shared/waiting-room';
import type { WaitingDict, WaitingEntry } from '../../shared/waiting-room';

/** njs's number-typed shared dict with a zone timeout, on a clock the test moves. */
function fakeDict(clock: { now: number }, zoneTimeoutMs = 60_000): WaitingDict & { raw: Map<string, { value: number; expires: number }> } {
  const raw = new Map<string, { value: number; expires: number }>();
  const live = (key: string) => {
    const e = raw.get(key);
    if (e === undefined) return undefined;
    if (clock.now >= e.expires) {
      raw.delete(key);
      return undefined;
    }
    return e;
  };
  return {
    raw,
    get: (key) => live(key)?.value,
    set: (key, value, ttl) => void raw.set(key, { value, expires: clock.now + (ttl ?? zoneTimeoutMs) }),
    add: (key, value, ttl) => {
      if (live(key) !== undefined) return false;
      raw.set(key, { value, expires: clock.now + (ttl ?? zoneTimeoutMs) });
      return true;
    },
    delete: (key) => live(key) !== undefined && raw.delete(key),
    incr: (key, delta, init = 0) => {
      const e = live(key);
      const value = (e === undefined ? init : e.value) + delta;
      raw.set(key, { value, expires: clock.now + zoneTimeoutMs });
      return value;
    },
    keys: () => [...raw.keys()].filter((k) => live(k) !== undefined),
  };
}

describe('waiting room', () => {
  it('tickets name the entry, and only w| keys parse', () => {
    const clock = { now: 1000 };
    const dict = fakeDict(clock);
    const r = enter(dict, 'llama|3 8b', 2, 'team a|b', 5000, 10);
    expect(r.queued).toBe(true);
    if (!r.queued) return;
    expect(parseTicket(r.entry.key)).toEqual(r.entry);
    expect(r.entry).toMatchObject({ pool: 'llama|3 8b', tenant: 'team a|b', band: 2, deadline: 5000 });
    for (const bad of ['seq', 'n|x', 'w|1|2', 'w|a|0|1|5|p|t', 'w|1|0|1|5|%E0%A4%A|t']) expect(parseTicket(bad)).toBeNull();
    expect(someoneWaits(dict, 'llama|3 8b')).toBe(true);
    expect(someoneWaits(dict, 'other')).toBe(false);
  });

  it('grants by band, then fairly across tenants (interleaved, a late tenant not behind the backlog), FIFO per tenant', () => {
    const clock = { now: 0 };
    const dict = fakeDict(clock);
    const add = (band: number, tenant: string) => {
      const r = enter(dict, '', band, tenant, 1e9, 100);
      if (!r.queued) throw new Error('not queued');
      return r.entry;
    };
    for (let i = 0; i < 6; i++) add(0, 'noisy');
    add(0, 'quiet');
    add(0, 'quiet');
    add(1, 'premium');
    const order: string[] = [];
    const grantOne = () => {
      const granted = dispatchRound(dict, clock.now, () => 1);
      for (const g of granted) {
        order.push(g.tenant);
        consumeGrant(dict, g);
      }
    };
    for (let i = 0; i < 4; i++) grantOne();
    expect(order).toEqual(['premium', 'noisy', 'quiet', 'noisy']);
    // A tenant arriving now starts at the band's virtual time: it goes within one turn of each tenant.
    add(0, 'late');
    for (let i = 0; i < 3; i++) grantOne();
    expect(order.slice(4)).toEqual(['quiet', 'noisy', 'late']);
    for (let i = 0; i < 5; i++) grantOne();
    expect(order.slice(7)).toEqual(['noisy', 'noisy', 'noisy']);
    expect(someoneWaits(dict, '')).toBe(false);
  });

  it('a round grants what the pool has room for, less the grants not yet consumed', () => {
    const clock = { now: 0 };
    const dict = fakeDict(clock);
    for (let i = 0; i < 5; i++) enter(dict, 'p', 0, '', 1e9, 100);
    const first = dispatchRound(dict, 0, () => 2);
    expect(first.length).toBe(2);
    // Not consumed yet: the room the balancer sees does not show them in flight.
    expect(dispatchRound(dict, 0, () => 2)).toEqual([]);
    consumeGrant(dict, first[0]);
    expect(dispatchRound(dict, 0, () => 2).length).toBe(1);
    // Unconsumed grants expire (their requests vanished) and stop holding room: the last two go.
    clock.now = 6000;
    expect(dispatchRound(dict, clock.now, () => 2).length).toBe(2);
  });

  it("the waiter of a request whose client left sees it gone (after one tick's grace), and a grant it never used stops holding room", () => {
    const clock = { now: 0 };
    const dict = fakeDict(clock);
    const r = enter(dict, 'p', 0, '', 1e9, 10);
    if (!r.queued) throw new Error('not queued');
    expect(leave(dict, r.entry)).toBe(true);
    expect(leave(dict, r.entry)).toBe(false);
    // The verdict of a removal by another worker is written right after it: one tick of grace.
    expect(verdictOf(dict, r.entry, 0, false)).toBe('waiting');
    expect(entryMissing(dict, r.entry)).toBe(true);
    expect(verdictOf(dict, r.entry, 25, true)).toBe('gone');
    // Granted, then the client left before its pick: the grant is withdrawn with it.
    const g = enter(dict, 'p', 0, '', 1e9, 10);
    if (!g.queued) throw new Error('not queued');
    expect(dispatchRound(dict, 0, () => 1).map((e) => e.key)).toEqual([g.entry.key]);
    expect(leave(dict, g.entry)).toBe(false);
    const h = enter(dict, 'p', 0, '', 1e9, 10);
    expect(dispatchRound(dict, 0, () => 1).map((e) => e.key)).toEqual([h.queued && h.entry.key]);
  });

  it('a round corrects the waiting counts a dead worker left wrong, so a healthy pool stops queueing newcomers', () => {
    const clock = { now: 0 };
    const dict = fakeDict(clock);
    dict.set('n|p', 5);
    expect(someoneWaits(dict, 'p')).toBe(true);
    dispatchRound(dict, 0, () => 0);
    expect(someoneWaits(dict, 'p')).toBe(false);
    enter(dict, 'q', 0, '', 1e9, 10);
    enter(dict, 'q', 0, '', 1e9, 10);
    dict.set('n|q', 7);
    dispatchRound(dict, 0, () => 1);
    expect(dict.get('n|q')).toBe(1);
  });

  it('one round per ROUND_MS across all workers', () => {
    const clock = { now: 0 };
    const dict = fakeDict(clock);
    expect(claimRound(dict)).toBe(true);
    expect(claimRound(dict)).toBe(false);
    clock.now = ROUND_MS;
    expect(claimRound(dict)).toBe(true);
  });

  it('at the cap a higher band displaces the newest of the lowest band; an equal band is refused', () => {
    const clock = { now: 0 };
    const dict = fakeDict(clock);
    const low1 = enter(dict, 'p', 0, 'a', 1e9, 3);
    const low2 = enter(dict, 'p', 0, 'b', 1e9, 3);
    enter(dict, 'p', 1, 'c', 1e9, 3);
    expect(enter(dict, 'p', 0, 'd', 1e9, 3)).toEqual({ queued: false, displaced: null });
    const high = enter(dict, 'p', 2, 'e', 1e9, 3);
    expect(high.queued && high.displaced?.key).toBe(low2.queued && low2.entry.key);
    if (!low2.queued || !low1.queued) return;
    expect(verdictOf(dict, low2.entry, 0, false)).toBe('displaced');
    expect(verdictOf(dict, low1.entry, 0, false)).toBe('waiting');
    expect(waitingByBand(dict)).toEqual([
      { band: 2, waiting: 1 },
      { band: 1, waiting: 1 },
      { band: 0, waiting: 1 },
    ]);
  });

  it('every request leaves exactly once; rounds grant within room, in queue order per pool', () => {
    type Op =
      | { kind: 'enter'; pool: string; band: number; tenant: string; wait: number }
      | { kind: 'round'; room: number }
      | { kind: 'consume'; pick: number }
      | { kind: 'leave'; pick: number }
      | { kind: 'tick'; ms: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 5, arbitrary: fc.record({ kind: fc.constant('enter' as const), pool: fc.constantFrom('p', 'q'), band: fc.integer({ min: 0, max: 2 }), tenant: fc.constantFrom('a', 'b', 'c'), wait: fc.integer({ min: 5, max: 200 }) }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('round' as const), room: fc.integer({ min: 0, max: 3 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('consume' as const), pick: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('leave' as const), pick: fc.nat() }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 1, max: 40 }) }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 150 }), fc.integer({ min: 1, max: 8 }), (ops, cap) => {
        const clock = { now: 0 };
        const dict = fakeDict(clock);
        const waiting = new Map<string, WaitingEntry>();
        const granted = new Map<string, WaitingEntry>();
        const outcome = new Map<string, string>();
        const missing = new Set<string>();
        const lastGrantedSeq = new Map<string, number>();
        const end = (e: WaitingEntry, how: string) => {
          expect(outcome.has(e.key), `${e.key} left twice (${outcome.get(e.key)}, then ${how})`).toBe(false);
          expect(waiting.has(e.key)).toBe(true);
          waiting.delete(e.key);
          outcome.set(e.key, how);
        };
        for (const o of ops) {
          if (o.kind === 'enter') {
            const inPool = [...waiting.values()].filter((e) => e.pool === o.pool);
            const r = enter(dict, o.pool, o.band, o.tenant, clock.now + o.wait, cap);
            if (inPool.length < cap) expect(r.queued && r.displaced).toBe(null);
            if (!r.queued) expect(inPool.every((e) => e.band >= o.band)).toBe(true);
            if (r.displaced) {
              const lowest = Math.min(...inPool.map((e) => e.band));
              expect(r.displaced.band).toBe(lowest);
              expect(lowest).toBeLessThan(o.band);
              end(r.displaced, 'displaced');
            }
            if (r.queued) waiting.set(r.entry.key, r.entry);
          } else if (o.kind === 'round') {
            const before = [...waiting.values()].filter((e) => clock.now < e.deadline);
            const out = dispatchRound(dict, clock.now, () => o.room);
            for (const pool of ['p', 'q']) {
              const got = out.filter((e) => e.pool === pool);
              const pending = [...granted.values()].filter((e) => e.pool === pool).length;
              expect(got.length).toBeLessThanOrEqual(Math.max(0, o.room - pending));
              const eligible = before.filter((e) => e.pool === pool).sort(waitingOrder);
              // Exactly the first of the queue, in its order.
              expect(got.map((e) => e.key)).toEqual(eligible.slice(0, got.length).map((e) => e.key));
              if (got.length < Math.max(0, o.room - pending)) expect(got.length).toBe(eligible.length);
            }
            for (const g of out) {
              const fifo = `${g.pool}|${g.band}|${g.tenant}`;
              expect(g.seq).toBeGreaterThan(lastGrantedSeq.get(fifo) ?? -1);
              lastGrantedSeq.set(fifo, g.seq);
              end(g, 'granted');
              granted.set(g.key, g);
            }
          } else if (o.kind === 'consume') {
            const list = [...granted.values()];
            if (list.length === 0) continue;
            const g = list[o.pick % list.length];
            expect(verdictOf(dict, g, clock.now, false)).toBe('go');
            consumeGrant(dict, g);
            granted.delete(g.key);
          } else if (o.kind === 'leave') {
            const list = [...waiting.values()];
            if (list.length === 0) continue;
            const e = list[o.pick % list.length];
            expect(leave(dict, e)).toBe(true);
            end(e, 'gone');
          } else {
            clock.now += o.ms;
            // Every waiter's tick.
            for (const e of [...waiting.values()]) {
              const verdict = verdictOf(dict, e, clock.now, missing.has(e.key));
              if (verdict === 'timeout') end(e, 'timeout');
              else expect(verdict).toBe('waiting');
              if (entryMissing(dict, e)) missing.add(e.key);
            }
            // Grants left unconsumed expire with their requests.
            for (const g of [...granted.values()]) if (dict.get(`g|${g.seq}|${encodeURIComponent(g.pool)}`) === undefined) granted.delete(g.key);
          }
        }
        // The dict agrees with the model: exactly the waiting ones remain, counted per pool.
        expect(new Set(waitingEntries(dict).map((e) => e.key))).toEqual(new Set(waiting.keys()));
        for (const pool of ['p', 'q']) expect(someoneWaits(dict, pool)).toBe([...waiting.values()].some((e) => e.pool === pool));
      }),
      { numRuns: 300 },
    );
  });
});
