// The admission queue's contract (shared/admission-queue.ts): strict priority across bands,
// round robin over tenants within a band, FIFO within a tenant, a size cap with displacement of a
// lower band, deadlines, and every waiter leaving exactly once. Properties over random sequences
// of arrivals, dispatches, disconnects and expiries, checked against a plain model.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createAdmissionQueue } from '../../shared/admission-queue';
import type { Waiter } from '../../shared/admission-queue';

type Op =
  | { kind: 'offer'; band: number; tenant: string; wait: number }
  | { kind: 'take' }
  | { kind: 'remove'; pick: number }
  | { kind: 'tick'; ms: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('offer' as const), band: fc.integer({ min: -1, max: 2 }), tenant: fc.constantFrom('a', 'b', 'c', 'd'), wait: fc.integer({ min: 1, max: 50 }) }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'take' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 1, max: 20 }) }) },
);

function waiter(key: number, band: number, tenant: string, deadline: number): Waiter<null> {
  return { key, band, tenant, deadline, value: null };
}

describe('admission queue', () => {
  it('every waiter leaves exactly once, the cap holds, and each dispatch is the highest band waiting, FIFO per tenant', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), fc.integer({ min: 1, max: 12 }), (ops, cap) => {
        const queue = createAdmissionQueue<null>(cap);
        // The model: who waits now, by key.
        const waiting = new Map<number, Waiter<null>>();
        const left = new Map<number, string>();
        const leave = (w: Waiter<null>, how: string) => {
          expect(waiting.has(w.key), `key ${w.key} left (${how}) while not waiting`).toBe(true);
          expect(left.has(w.key)).toBe(false);
          waiting.delete(w.key);
          left.set(w.key, how);
        };
        const lastTaken = new Map<string, number>();
        let now = 0;
        let next = 1;
        for (const o of ops) {
          if (o.kind === 'offer') {
            const w = waiter(next++, o.band, o.tenant, now + o.wait);
            const lowest = Math.min(...[...waiting.values()].map((x) => x.band));
            const result = queue.offer(w);
            if (o.band < 0) expect(result).toEqual({ queued: false, displaced: null });
            else if (waiting.size < cap) expect(result).toEqual({ queued: true, displaced: null });
            else if (waiting.size > 0 && lowest < o.band) {
              expect(result.queued).toBe(true);
              expect(result.displaced?.band).toBe(lowest);
            } else expect(result).toEqual({ queued: false, displaced: null });
            if (result.displaced) leave(result.displaced, 'displaced');
            if (result.queued) waiting.set(w.key, w);
          } else if (o.kind === 'take') {
            const peeked = queue.peek();
            const taken = queue.take();
            expect(taken).toBe(peeked);
            if (waiting.size === 0) expect(taken).toBeNull();
            else {
              expect(taken).not.toBeNull();
              const w = taken as Waiter<null>;
              expect(w.band).toBe(Math.max(...[...waiting.values()].map((x) => x.band)));
              const flow = w.band + '/' + w.tenant;
              expect(w.key).toBeGreaterThan(lastTaken.get(flow) ?? 0);
              lastTaken.set(flow, w.key);
              leave(w, 'taken');
            }
          } else if (o.kind === 'remove') {
            const keys = [...waiting.keys()];
            const key = keys.length > 0 ? keys[o.pick % keys.length] : 999999;
            const w = waiting.get(key);
            expect(queue.remove(key)).toBe(w !== undefined);
            if (w) leave(w, 'removed');
            expect(queue.remove(key)).toBe(false);
          } else {
            now += o.ms;
            const due = [...waiting.values()].filter((w) => w.deadline <= now).map((w) => w.key);
            const expired = queue.expire(now);
            expect(expired.map((w) => w.key).sort((x, y) => x - y)).toEqual(due.sort((x, y) => x - y));
            for (let i = 1; i < expired.length; i++) expect(expired[i].deadline).toBeGreaterThanOrEqual(expired[i - 1].deadline);
            for (const w of expired) leave(w, 'expired');
          }
          expect(queue.size()).toBe(waiting.size);
          expect(queue.size()).toBeLessThanOrEqual(cap);
          const soonest = waiting.size === 0 ? null : Math.min(...[...waiting.values()].map((w) => w.deadline));
          expect(queue.nextDeadline()).toBe(soonest);
        }
        // Drained: whoever still waits leaves now, by dispatch.
        for (let w = queue.take(); w !== null; w = queue.take()) leave(w, 'taken');
        expect(waiting.size).toBe(0);
        expect(queue.bands()).toEqual([]);
      }),
      { numRuns: 400 },
    );
  });

  it('is fair across tenants within a band: while two tenants both wait, their dispatches differ by at most one', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('a', 'b', 'c'), { minLength: 1, maxLength: 60 }), fc.array(fc.boolean(), { maxLength: 120 }), (arrivals, script) => {
        // Arrivals interleaved with dispatches (true: the next arrival, false: a dispatch).
        const queue = createAdmissionQueue<null>(1000);
        const remaining: Record<string, number> = { a: 0, b: 0, c: 0 };
        const taken: Record<string, number> = { a: 0, b: 0, c: 0 };
        // The dispatch counts when a tenant last started waiting (joined with nothing waiting).
        const since: Record<string, Record<string, number>> = {};
        let key = 1;
        let a = 0;
        const arrive = () => {
          const tenant = arrivals[a++];
          if (remaining[tenant] === 0) since[tenant] = { ...taken };
          remaining[tenant]++;
          queue.offer(waiter(key++, 0, tenant, 1e9));
        };
        const dispatch = () => {
          const w = queue.take();
          if (w === null) return;
          remaining[w.tenant]--;
          taken[w.tenant]++;
          // Two tenants waiting since both joined: neither got more than one turn more than the other.
          for (const x of ['a', 'b', 'c']) {
            for (const y of ['a', 'b', 'c']) {
              if (x === y || remaining[x] === 0 || remaining[y] === 0) continue;
              const start = since[x].a + since[x].b + since[x].c >= since[y].a + since[y].b + since[y].c ? since[x] : since[y];
              expect(Math.abs(taken[x] - start[x] - (taken[y] - start[y]))).toBeLessThanOrEqual(1);
            }
          }
        };
        for (const step of script) {
          if (step && a < arrivals.length) arrive();
          else dispatch();
        }
        while (a < arrivals.length) arrive();
        while (queue.size() > 0) dispatch();
      }),
      { numRuns: 400 },
    );
  });

  it('a tenant sending four times as much gets every other dispatch, not four in five', () => {
    const queue = createAdmissionQueue<null>(100);
    let key = 1;
    for (let i = 0; i < 8; i++) queue.offer(waiter(key++, 0, 'noisy', 1e9));
    queue.offer(waiter(key++, 0, 'quiet', 1e9));
    queue.offer(waiter(key++, 0, 'quiet', 1e9));
    const order: string[] = [];
    for (let i = 0; i < 4; i++) order.push((queue.take() as Waiter<null>).tenant);
    expect(order).toEqual(['noisy', 'quiet', 'noisy', 'quiet']);
  });

  it('strict priority: a later high-band waiter goes before every low-band one; sheddable ones never wait', () => {
    const queue = createAdmissionQueue<string>(3);
    expect(queue.offer({ key: 1, band: 0, tenant: 't', deadline: 100, value: 'low-1' }).queued).toBe(true);
    expect(queue.offer({ key: 2, band: 0, tenant: 't', deadline: 100, value: 'low-2' }).queued).toBe(true);
    expect(queue.offer({ key: 3, band: -1, tenant: 't', deadline: 100, value: 'shed' }).queued).toBe(false);
    expect(queue.offer({ key: 4, band: 1, tenant: 'u', deadline: 100, value: 'high' }).queued).toBe(true);
    // Full: a high-band newcomer displaces the newest low-band waiter; a low-band one is refused.
    const full = queue.offer({ key: 5, band: 1, tenant: 'u', deadline: 100, value: 'high-2' });
    expect(full.queued).toBe(true);
    expect(full.displaced?.value).toBe('low-2');
    expect(queue.offer({ key: 6, band: 0, tenant: 'v', deadline: 100, value: 'low-3' })).toEqual({ queued: false, displaced: null });
    expect(queue.bands()).toEqual([
      { band: 1, waiting: 2 },
      { band: 0, waiting: 1 },
    ]);
    expect([queue.take()?.value, queue.take()?.value, queue.take()?.value, queue.take()]).toEqual(['high', 'high-2', 'low-1', null]);
  });
});
