// The Kong adapter's waiting room (plugins/kong/admission.ts) on its own: the fast path, waiting
// while the pick says saturated, dispatch in the queue's order when capacity frees (strict
// priority, then turns across tenants), displacement, a full queue, a throwing pick, and stop.
import { afterEach, describe, expect, it } from 'vitest';
import { createAdmissionGate } from '../plugins/kong/admission';
import type { AdmissionGate, Admitted } from '../plugins/kong/admission';
import type { PickResult } from '../shared/types';

const gates: AdmissionGate[] = [];
afterEach(() => {
  for (const g of gates.splice(0)) g.stop();
});

/** A pool with `free` slots: each ok pick takes one. */
function pool(free: number) {
  const state = { free, picks: [] as string[] };
  const attempt = (who: string) => (): PickResult => {
    if (state.free <= 0) return { ok: false, reason: 'saturated', message: 'full' };
    state.free--;
    state.picks.push(who);
    return { ok: true, replicas: [{ id: 'r', address: 'r:1', weight: 1 }], tokens: 0, promptTokens: 0 };
  };
  return { state, attempt };
}

/** A gate whose requests all bring these limits (their plugin instance's max_queue and max_wait_s). */
function gate(maxQueue = 10, maxWaitMs = 60_000) {
  const g = createAdmissionGate();
  gates.push(g);
  return {
    admit: (pool: string, band: number, tenant: () => Promise<string>, attempt: () => PickResult) => g.admit(pool, () => Promise.resolve(band), tenant, attempt, { maxQueue, maxWaitMs }),
    wake: () => g.wake(),
    status: () => g.status(),
    stop: () => g.stop(),
    /** The same gate with other limits (another plugin instance sharing it). */
    withLimits: (queue: number, waitMs: number) => ({ admit: (pool: string, band: number, tenant: () => Promise<string>, attempt: () => PickResult) => g.admit(pool, () => Promise.resolve(band), tenant, attempt, { maxQueue: queue, maxWaitMs: waitMs }) }),
  };
}

const tenant = (name: string) => () => Promise.resolve(name);
const flush = () => new Promise((resolve) => setImmediate(resolve));

describe('the Kong admission gate', () => {
  it('picks at once while the pool has room and nobody waits', async () => {
    const g = gate();
    const p = pool(1);
    expect((await g.admit('', 0, tenant('a'), p.attempt('first'))).kind).toBe('picked');
    expect(p.state.picks).toEqual(['first']);
  });

  it('dispatches the waiting in the queue order when capacity frees: higher band first, then turns across tenants', async () => {
    const g = gate();
    const p = pool(0);
    const order: string[] = [];
    const wait = (band: number, who: string, name: string) =>
      g.admit('', band, tenant(who), p.attempt(name)).then((a: Admitted) => {
        order.push(name + ':' + a.kind);
      });
    const all = [wait(0, 'noisy', 'n1'), wait(0, 'noisy', 'n2'), wait(0, 'noisy', 'n3'), wait(0, 'quiet', 'q1'), wait(1, 'vip', 'v1')];
    await flush();
    expect(g.status().waiting).toEqual([
      { band: 1, waiting: 1 },
      { band: 0, waiting: 4 },
    ]);
    p.state.free = 3;
    g.wake();
    await flush();
    expect(p.state.picks).toEqual(['v1', 'n1', 'q1']);
    p.state.free = 2;
    g.wake();
    await Promise.all(all);
    expect(p.state.picks).toEqual(['v1', 'n1', 'q1', 'n2', 'n3']);
    expect(order.every((o) => o.endsWith(':picked'))).toBe(true);
    expect(g.status()).toMatchObject({ waiting: [], admittedAfterWait: 5 });
  });

  it('a newcomer waits behind those already waiting, even when a slot has just freed', async () => {
    const g = gate();
    const p = pool(0);
    const first = g.admit('', 0, tenant('a'), p.attempt('first'));
    await flush();
    p.state.free = 1;
    // The newcomer arrives before any wake: the slot goes to the one that waited.
    const second = g.admit('', 0, tenant('b'), p.attempt('second'));
    await flush();
    expect(p.state.picks).toEqual(['first']);
    expect((await first).kind).toBe('picked');
    p.state.free = 1;
    g.wake();
    expect((await second).kind).toBe('picked');
  });

  it('full: a higher band displaces the newest lower-band waiter, an equal band is refused', async () => {
    const g = gate(2);
    const p = pool(0);
    const low1 = g.admit('', 0, tenant('a'), p.attempt('low1'));
    const low2 = g.admit('', 0, tenant('a'), p.attempt('low2'));
    await flush();
    expect(await g.admit('', 0, tenant('b'), p.attempt('low3'))).toMatchObject({ kind: 'rejected', because: 'full' });
    const high = g.admit('', 1, tenant('c'), p.attempt('high'));
    expect(await low2).toMatchObject({ kind: 'rejected', because: 'displaced' });
    p.state.free = 2;
    g.wake();
    expect((await high).kind).toBe('picked');
    expect((await low1).kind).toBe('picked');
    expect(g.status().rejected).toEqual({ shed: 0, full: 1, timeout: 0, displaced: 1 });
  });

  it('separate pools do not block each other', async () => {
    const g = gate();
    const busy = pool(0);
    const idle = pool(1);
    const waiting = g.admit('llama', 0, tenant('a'), busy.attempt('llama'));
    await flush();
    expect((await g.admit('qwen', 0, tenant('a'), idle.attempt('qwen'))).kind).toBe('picked');
    g.stop();
    expect(await waiting).toMatchObject({ kind: 'rejected', because: 'timeout' });
  });

  it('a pick that throws while waiting is handed back as failed, and the next waiter still goes', async () => {
    const g = gate();
    const p = pool(0);
    let calls = 0;
    const throwing = (): PickResult => {
      if (calls++ === 0) return { ok: false, reason: 'saturated', message: 'full' };
      throw new Error('boom');
    };
    const bad = g.admit('', 0, tenant('a'), throwing);
    const good = g.admit('', 0, tenant('a'), p.attempt('good'));
    await flush();
    p.state.free = 1;
    g.wake();
    expect(await bad).toMatchObject({ kind: 'failed' });
    expect((await good).kind).toBe('picked');
  });

  it('instances sharing a gate keep their own deadlines and caps', async () => {
    const g = gate(10, 60_000);
    const strict = g.withLimits(1, 100);
    const p = pool(0);
    const patient = g.admit('', 0, tenant('a'), p.attempt('patient'));
    // The strict instance's cap of 1 is already reached by the patient request.
    expect(await strict.admit('', 0, tenant('b'), p.attempt('refused'))).toMatchObject({ kind: 'rejected', because: 'full' });
    expect(await g.withLimits(5, 100).admit('', 0, tenant('b'), p.attempt('short'))).toMatchObject({ kind: 'rejected', because: 'timeout' });
    p.state.free = 1;
    g.wake();
    expect((await patient).kind).toBe('picked');
  });

  it('times a waiter out at its deadline (the gate polls while anyone waits)', async () => {
    const g = gate(10, 120);
    const p = pool(0);
    expect(await g.admit('', 0, tenant('a'), p.attempt('late'))).toMatchObject({ kind: 'rejected', because: 'timeout' });
    expect(p.state.picks).toEqual([]);
  });
});
