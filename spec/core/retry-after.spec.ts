// The Retry-After of a 503 that found no replica: the soonest any replica could take traffic
// again, from the Store, bounded to [1, 60] s. Driven through the real balancer (ejections, trials,
// active marks) on a fake clock.
import { describe, expect, it } from 'vitest';
import { createBalancer } from '../../shared/balancer';
import { recordProbe } from '../../shared/health/active';
import { createMemoryStore } from '../../shared/memory-store';
import { MAX_RETRY_AFTER_S, MIN_RETRY_AFTER_S, UNKNOWN_RECOVERY_S, retryAfterSeconds } from '../../shared/retry-after';
import type { Outcome, Replica } from '../../shared/types';
import { configOf, fakeClock, replicas, seededRandom } from '../helpers/core';

const FAIL: Outcome = { status: 502, latencyMs: 3 };

function setup(extra: Record<string, unknown>, weights = [1, 1]) {
  const clock = fakeClock(1_000_000);
  const store = createMemoryStore();
  const config = configOf(Object.assign({ strategy: 'round-robin' }, extra));
  const balancer = createBalancer(config, { store, clock, random: seededRandom(3) });
  const list = replicas(weights);
  const failOnce = (id: string) => {
    balancer.onStart(id);
    balancer.onEnd(list, id, FAIL);
  };
  return { clock, store, config, balancer, list, failOnce, retryAfter: (l: Replica[] = list) => retryAfterSeconds(config, l, store, clock.now()) };
}

const EJECT_FAST = { passive_health: { consecutive_failures: 1, base_ejection_s: 20, max_ejection_s: 100, max_ejected_percent: 100 } };

describe('retryAfterSeconds', () => {
  it('every replica ejected: until the first ejection ends, counting down', () => {
    const t = setup(EJECT_FAST);
    t.failOnce('r0');
    t.clock.advance(5_000);
    t.failOnce('r1');
    expect(t.balancer.pick(t.list, {}).ok).toBe(false);
    // r0's ejection ends 15 s from now, r1's 20 s.
    expect(t.retryAfter()).toBe(15);
    t.clock.advance(14_200);
    expect(t.retryAfter()).toBe(1);
  });

  it('a second ejection lasts twice as long, and the answer follows it', () => {
    const t = setup(Object.assign({ replicas: [] }, EJECT_FAST), [1]);
    t.failOnce('r0');
    t.clock.advance(20_000);
    // Half-open: the trial fails, ejected again for 2 × 20 s.
    expect(t.balancer.pick(t.list, {}).ok).toBe(true);
    t.failOnce('r0');
    expect(t.retryAfter()).toBe(40);
  });

  it('half-open with its trial out: 1 s (the trial may end at any moment)', () => {
    const t = setup(EJECT_FAST, [1]);
    t.failOnce('r0');
    t.clock.advance(20_000);
    expect(t.balancer.pick(t.list, {}).ok).toBe(true);
    expect(t.balancer.pick(t.list, {}).ok).toBe(false);
    expect(t.retryAfter()).toBe(MIN_RETRY_AFTER_S);
  });

  it('marked down by active checks: healthy_threshold × interval_s; without active checks configured, the default', () => {
    const t = setup({ active_health: { enabled: true, interval_s: 3, timeout_s: 1, unhealthy_threshold: 1, healthy_threshold: 4 } }, [1]);
    recordProbe(t.store, 'r0', false, { healthyThreshold: 4, unhealthyThreshold: 1 });
    expect(t.balancer.pick(t.list, {}).ok).toBe(false);
    expect(t.retryAfter()).toBe(12);
    const u = setup({}, [1]);
    recordProbe(u.store, 'r0', false, { healthyThreshold: 1, unhealthyThreshold: 1 });
    expect(u.retryAfter()).toBe(UNKNOWN_RECOVERY_S);
  });

  it('the soonest replica decides; weight-0 and draining replicas never come back by themselves', () => {
    const t = setup(EJECT_FAST, [1, 1, 0]);
    t.failOnce('r0');
    t.clock.advance(8_000);
    t.failOnce('r1');
    const list: Replica[] = [t.list[0], t.list[1], t.list[2], { id: 'r3', address: '10.0.0.9:8000', weight: 1, health: 'draining' }];
    expect(t.retryAfter(list)).toBe(12);
    // Reported unhealthy by the gateway (Kong, NGINX Plus): the default pace.
    expect(t.retryAfter([{ id: 'x', address: '10.0.0.8:8000', weight: 1, health: 'unhealthy' }])).toBe(UNKNOWN_RECOVERY_S);
  });

  it('nothing can come back by itself (no replicas, all weight 0 or draining): the most clients honour', () => {
    const t = setup({}, [0, 0]);
    expect(t.retryAfter()).toBe(MAX_RETRY_AFTER_S);
    expect(t.retryAfter([])).toBe(MAX_RETRY_AFTER_S);
  });

  it('long ejections are capped at 60 s', () => {
    const t = setup({ passive_health: { consecutive_failures: 1, base_ejection_s: 300, max_ejection_s: 600, max_ejected_percent: 100 } }, [1]);
    t.failOnce('r0');
    expect(t.retryAfter()).toBe(MAX_RETRY_AFTER_S);
  });
});
