import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createBalancer } from '../../shared/balancer';
import { MARKED_DOWN_COUNT_KEY, recordProbe } from '../../shared/health/active';
import { classifyOutcome } from '../../shared/health/passive';
import { createMemoryStore } from '../../shared/memory-store';
import type { Outcome, Replica } from '../../shared/types';
import { configOf, fakeClock, replicas, seededRandom } from '../helpers/core';

const STRATEGIES = ['round-robin', 'weighted-round-robin', 'least-connections', 'response-time', 'consistent-hash', 'hybrid'];
const FAIL: Outcome = { status: 502, latencyMs: 3 };
const OK: Outcome = { status: 200, latencyMs: 20 };

function setup(extra: Record<string, unknown> = {}, weights = [1, 1, 1, 1]) {
  const clock = fakeClock(0);
  const store = createMemoryStore();
  const balancer = createBalancer(configOf({ strategy: 'round-robin', ...extra }), { store, clock, random: seededRandom(4) });
  return { clock, store, balancer, list: replicas(weights) };
}

function fail(balancer: ReturnType<typeof setup>['balancer'], list: Replica[], id: string, times: number, outcome = FAIL) {
  for (let i = 0; i < times; i++) {
    balancer.onStart(id);
    balancer.onEnd(list, id, outcome);
  }
}

function stateOf(balancer: ReturnType<typeof setup>['balancer'], list: Replica[], id: string) {
  return balancer.status(list).find((s) => s.id === id)!;
}

describe('eligibility', () => {
  it('never picks an unhealthy, draining, zero-weight or ejected replica while another remains (every strategy)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...STRATEGIES),
        fc.array(fc.constantFrom('healthy', 'unhealthy', 'draining', 'zero', 'ejected'), { minLength: 1, maxLength: 8 }),
        fc.array(fc.string({ maxLength: 6 }), { minLength: 1, maxLength: 10 }),
        (strategy, states, keys) => {
          const { balancer, list } = setup({
            strategy,
            retries: 3,
            hash_key: { source: 'header', name: 'x-key' },
            passive_health: { consecutive_failures: 1, max_ejected_percent: 100 },
          });
          const current: Replica[] = list.slice(0, states.length);
          while (current.length < states.length) current.push({ id: `r${current.length}`, address: `10.0.1.${current.length}:80`, weight: 1 });
          states.forEach((state, i) => {
            if (state === 'unhealthy' || state === 'draining') current[i] = { ...current[i], health: state };
            if (state === 'zero') current[i] = { ...current[i], weight: 0 };
            if (state === 'ejected') fail(balancer, current, current[i].id, 1);
          });
          const usable = current.filter((_, i) => states[i] === 'healthy').map((r) => r.id);
          for (const key of keys) {
            const result = balancer.pick(current, { headers: { 'x-key': key } });
            if (usable.length === 0) {
              expect(result).toMatchObject({ ok: false, reason: 'no-healthy-replica' });
              continue;
            }
            if (!result.ok) throw new Error(result.message);
            const ids = result.replicas.map((r) => r.id);
            expect(new Set(ids).size).toBe(ids.length);
            expect(ids.length).toBe(Math.min(4, usable.length));
            for (const id of ids) expect(usable).toContain(id);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('fails with a typed reason when no replica is left, or routes to all in panic mode', () => {
    const down = replicas([1, 1]).map((r) => ({ ...r, health: 'unhealthy' as const }));
    expect(setup().balancer.pick(down, {})).toMatchObject({ ok: false, reason: 'no-healthy-replica' });
    expect(setup().balancer.pick([], {})).toMatchObject({ ok: false, reason: 'no-replicas' });
    const panic = setup({ on_no_healthy: 'panic', retries: 1 }).balancer.pick(down, {});
    expect(panic.ok && panic.replicas.map((r) => r.id).sort()).toEqual(['r0', 'r1']);
    // Panic never routes to weight 0: that is an operator's explicit "off".
    const off = setup({ on_no_healthy: 'panic' }).balancer.pick([{ id: 'z', address: 'z:1', weight: 0 }], {});
    expect(off).toMatchObject({ ok: false, reason: 'no-healthy-replica' });
  });

  it('respects active health-check thresholds (unhealthy after N failed probes, healthy after M passes)', () => {
    const { balancer, store, list } = setup({}, [1, 1]);
    const thresholds = { healthyThreshold: 2, unhealthyThreshold: 3 };
    expect(recordProbe(store, 'r0', false, thresholds)).toBe(true);
    expect(recordProbe(store, 'r0', false, thresholds)).toBe(true);
    expect(recordProbe(store, 'r0', false, thresholds)).toBe(false);
    expect(stateOf(balancer, list, 'r0').state).toBe('unhealthy');
    for (let i = 0; i < 5; i++) expect(balancer.pick(list, {})).toMatchObject({ ok: true, replicas: [{ id: 'r1' }] });
    expect(recordProbe(store, 'r0', true, thresholds)).toBe(false);
    expect(recordProbe(store, 'r0', false, thresholds)).toBe(false); // a failure resets the passing streak
    expect(recordProbe(store, 'r0', true, thresholds)).toBe(false);
    expect(recordProbe(store, 'r0', true, thresholds)).toBe(true);
    expect(stateOf(balancer, list, 'r0').state).toBe('healthy');
    expect(store.get(MARKED_DOWN_COUNT_KEY)).toBe(0);
  });

  it('keeps the count of marked-down replicas exact, so picks may skip the per-replica marks when it is 0', () => {
    const { balancer, store, list } = setup({}, [1, 1, 1]);
    const thresholds = { healthyThreshold: 1, unhealthyThreshold: 1 };
    recordProbe(store, 'r0', false, thresholds);
    recordProbe(store, 'r0', false, thresholds); // already down: no double count
    recordProbe(store, 'r1', false, thresholds);
    expect(store.get(MARKED_DOWN_COUNT_KEY)).toBe(2);
    for (let i = 0; i < 6; i++) expect(balancer.pick(list, {})).toMatchObject({ ok: true, replicas: [{ id: 'r2' }] });
    recordProbe(store, 'r0', true, thresholds);
    recordProbe(store, 'r0', true, thresholds); // already up: no double count
    expect(store.get(MARKED_DOWN_COUNT_KEY)).toBe(1);
    recordProbe(store, 'r1', true, thresholds);
    expect(store.get(MARKED_DOWN_COUNT_KEY)).toBe(0);
    expect(balancer.status(list).map((s) => s.state)).toEqual(['healthy', 'healthy', 'healthy']);
  });
});

describe('passive health (outlier detection)', () => {
  it.each<[Outcome, string[], string]>([
    [{ status: 502, latencyMs: 1 }, ['5xx'], 'failure'],
    [{ status: 503, latencyMs: 1 }, ['connect-error'], 'success'],
    [{ status: 429, latencyMs: 1 }, ['connect-error', 'timeout', '5xx'], 'success'],
    [{ status: 429, latencyMs: 1 }, ['429'], 'failure'],
    [{ status: 0, latencyMs: 1, error: 'connect-error' }, ['connect-error'], 'failure'],
    [{ status: 0, latencyMs: 1, error: 'timeout' }, ['timeout'], 'failure'],
    [{ status: 0, latencyMs: 1, error: 'timeout' }, ['5xx'], 'success'],
    [{ status: 499, latencyMs: 1, error: 'aborted' }, ['5xx', 'connect-error'], 'neutral'],
    [{ status: 404, latencyMs: 1 }, ['5xx'], 'success'],
  ])('classifies %j with kinds %j as %s', (outcome, kinds, verdict) => {
    expect(classifyOutcome(outcome, kinds as never)).toBe(verdict);
  });

  it('ejects after N consecutive failures; a success in between resets the count', () => {
    const { balancer, list } = setup({ passive_health: { consecutive_failures: 3 } });
    fail(balancer, list, 'r0', 2);
    fail(balancer, list, 'r0', 1, OK);
    fail(balancer, list, 'r0', 2);
    expect(stateOf(balancer, list, 'r0').state).toBe('healthy');
    fail(balancer, list, 'r0', 1);
    expect(stateOf(balancer, list, 'r0').state).toBe('ejected');
    for (let i = 0; i < 9; i++) {
      const result = balancer.pick(list, {});
      expect(result.ok && result.replicas[0].id).not.toBe('r0');
    }
  });

  it('ejects for base × ejections, capped; after expiry exactly one trial decides', () => {
    const { balancer, list, clock } = setup({
      retries: 0,
      passive_health: { consecutive_failures: 1, base_ejection_s: 30, max_ejection_s: 70 },
    });
    fail(balancer, list, 'r0', 1);
    expect(stateOf(balancer, list, 'r0')).toMatchObject({ state: 'ejected', ejectedUntil: 30_000, ejections: 1 });
    clock.set(30_000);
    expect(stateOf(balancer, list, 'r0').state).toBe('half-open');
    // Round robin reaches r0 within 4 picks; exactly one of them is its trial.
    const picks = Array.from({ length: 8 }, () => {
      const result = balancer.pick(list, {});
      return result.ok ? result.replicas[0].id : 'none';
    });
    expect(picks.filter((id) => id === 'r0')).toHaveLength(1);
    // The trial fails: ejected again at once, for 2 × 30 s.
    balancer.onStart('r0');
    balancer.onEnd(list, 'r0', FAIL);
    expect(stateOf(balancer, list, 'r0')).toMatchObject({ state: 'ejected', ejectedUntil: 90_000, ejections: 2 });
    clock.set(90_000);
    fail(balancer, list, 'r0', 1); // third ejection: 3 × 30 = 90 s, capped at 70 s
    expect(stateOf(balancer, list, 'r0')).toMatchObject({ ejectedUntil: 160_000, ejections: 3 });
    clock.set(160_000);
    fail(balancer, list, 'r0', 1, OK); // a successful trial closes it
    expect(stateOf(balancer, list, 'r0')).toMatchObject({ state: 'healthy', ejectedUntil: null });
    const counts: Record<string, number> = {};
    for (let i = 0; i < 8; i++) {
      const result = balancer.pick(list, {});
      if (result.ok) counts[result.replicas[0].id] = (counts[result.replicas[0].id] ?? 0) + 1;
    }
    expect(counts.r0).toBe(2);
  });

  it('forgets the ejection history after staying healthy for max_ejection_s', () => {
    const { balancer, list, clock } = setup({ passive_health: { consecutive_failures: 1, base_ejection_s: 10, max_ejection_s: 100 } });
    fail(balancer, list, 'r0', 1);
    clock.set(10_000);
    fail(balancer, list, 'r0', 1, OK);
    clock.set(10_000 + 100_000);
    fail(balancer, list, 'r0', 1);
    expect(stateOf(balancer, list, 'r0')).toMatchObject({ ejections: 1, ejectedUntil: 120_000 });
  });

  it('releases a lost trial after one base ejection period so the replica is not stuck half-open', () => {
    const { balancer, list, clock } = setup({ retries: 0, passive_health: { consecutive_failures: 1, base_ejection_s: 10 } });
    fail(balancer, list, 'r0', 1);
    clock.set(10_000);
    const trialTaken = () =>
      Array.from({ length: 4 }, () => {
        const result = balancer.pick(list, {});
        return result.ok ? result.replicas[0].id : 'none';
      }).includes('r0');
    expect(trialTaken()).toBe(true); // claimed; its log never arrives
    expect(trialTaken()).toBe(false);
    clock.set(20_001);
    expect(trialTaken()).toBe(true);
  });

  it('ejects at most max_ejected_percent of the replicas, but always at least one', () => {
    const ten = setup({ passive_health: { consecutive_failures: 1, max_ejected_percent: 20 } }, Array(10).fill(1));
    for (const r of ten.list) fail(ten.balancer, ten.list, r.id, 1);
    expect(ten.balancer.status(ten.list).filter((s) => s.state === 'ejected')).toHaveLength(2);
    const three = setup({ passive_health: { consecutive_failures: 1, max_ejected_percent: 10 } }, [1, 1, 1]);
    for (const r of three.list) fail(three.balancer, three.list, r.id, 1);
    expect(three.balancer.status(three.list).filter((s) => s.state === 'ejected')).toHaveLength(1);
  });

  it('does not count client aborts against the replica, and can be switched off', () => {
    const aborted = setup({ passive_health: { consecutive_failures: 1 } });
    fail(aborted.balancer, aborted.list, 'r0', 5, { status: 499, latencyMs: 1, error: 'aborted' });
    expect(stateOf(aborted.balancer, aborted.list, 'r0')).toMatchObject({ state: 'healthy', failures: 0, samples: 0 });
    const off = setup({ passive_health: { enabled: false, consecutive_failures: 1 } });
    fail(off.balancer, off.list, 'r0', 5);
    expect(stateOf(off.balancer, off.list, 'r0')).toMatchObject({ state: 'healthy', failures: 5 });
  });

  it('counts only the configured failure kinds: 429 is not a failure unless listed', () => {
    const { balancer, list } = setup({ passive_health: { consecutive_failures: 2 } });
    fail(balancer, list, 'r0', 3, { status: 429, latencyMs: 1 });
    expect(stateOf(balancer, list, 'r0').state).toBe('healthy');
    const strict = setup({ passive_health: { consecutive_failures: 2, failure_kinds: ['429'] } });
    fail(strict.balancer, strict.list, 'r0', 2, { status: 429, latencyMs: 1 });
    expect(stateOf(strict.balancer, strict.list, 'r0').state).toBe('ejected');
  });
});
