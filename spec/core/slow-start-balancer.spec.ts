// Slow start inside the balancer: which replicas ramp (new ones, recovered ones) and which do not
// (everyone at a gateway's start), for a weight-using strategy. Counts only; the clock is fake.
import { describe, expect, it } from 'vitest';
import { createBalancer } from '../../shared/balancer';
import { recordProbe } from '../../shared/health/active';
import { createMemoryStore } from '../../shared/memory-store';
import type { Replica } from '../../shared/types';
import { configOf, fakeClock, replicas, seededRandom } from '../helpers/core';

function shares(b: ReturnType<typeof createBalancer>, fleet: Replica[], picks: number): Record<string, number> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < picks; i++) {
    const result = b.pick(fleet, {});
    if (!result.ok) throw new Error(result.message);
    counts[result.replicas[0].id] = (counts[result.replicas[0].id] ?? 0) + 1;
  }
  return counts;
}

/** Picks until the half-open `id` wins its trial (other picks are not started), and lets the trial succeed. */
function recover(b: ReturnType<typeof createBalancer>, fleet: Replica[], id: string): void {
  for (let i = 0; i < 10; i++) {
    const result = b.pick(fleet, {});
    if (result.ok && result.replicas[0].id === id) {
      b.onStart(result.replicas[0]);
      b.onEnd(fleet, result.replicas[0], { status: 200, latencyMs: 5 });
      return;
    }
  }
  throw new Error(`${id} never got its trial`);
}

function setup(slowStart: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const store = createMemoryStore();
  const clock = fakeClock();
  const config = configOf({ strategy: 'weighted-round-robin', slow_start: slowStart, passive_health: { consecutive_failures: 1, max_ejected_percent: 50 }, ...extra });
  const balancer = createBalancer(config, { store, clock, random: seededRandom(3) });
  return { store, clock, balancer };
}

describe('slow start in the balancer', () => {
  it('changes nothing at a gateway start: the replicas there were established before it, shares stay exact', () => {
    const { balancer, clock } = setup({ window_s: 60 });
    expect(shares(balancer, replicas([1, 1, 1]), 300)).toEqual({ r0: 100, r1: 100, r2: 100 });
    clock.advance(30_000);
    expect(shares(balancer, replicas([1, 1, 1]), 300)).toEqual({ r0: 100, r1: 100, r2: 100 });
  });

  it('ramps a replica that recovers from ejection: 10% of its weight at first, linear to full over the window', () => {
    const { balancer, clock } = setup({ window_s: 60 });
    const fleet = replicas([1, 1, 1]);
    shares(balancer, fleet, 3);
    // r2 fails once: ejected for 30 s.
    balancer.onStart(fleet[2]);
    balancer.onEnd(fleet, fleet[2], { status: 0, latencyMs: 1, error: 'connect-error' });
    expect(shares(balancer, fleet, 20).r2).toBeUndefined();
    clock.advance(31_000);
    // r2's half-open trial succeeds: it is back, available from now.
    recover(balancer, fleet, 'r2');
    // Weights 1 : 1 : 0.1 → r2 gets 1 in 21.
    expect(shares(balancer, fleet, 210)).toEqual({ r0: 100, r1: 100, r2: 10 });
    clock.advance(30_000); // half the window: 0.5
    expect(shares(balancer, fleet, 250)).toEqual({ r0: 100, r1: 100, r2: 50 });
    clock.advance(30_000); // the window is over
    expect(shares(balancer, fleet, 300)).toEqual({ r0: 100, r1: 100, r2: 100 });
  });

  it('ramps a replica added later (Kong Admin API, NGINX Plus), and one the gateway reported unhealthy that comes back', () => {
    const { balancer, clock } = setup({ window_s: 100, aggression: 1, min_weight_percent: 20 });
    const two = replicas([1, 1]).slice(0, 2);
    shares(balancer, two, 10);
    clock.advance(500_000);
    const three = replicas([1, 1, 1]);
    // r2 is new: 20% (the floor) of its weight.
    expect(shares(balancer, three, 220)).toEqual({ r0: 100, r1: 100, r2: 20 });
    clock.advance(200_000);
    const sick = three.map((r) => (r.id === 'r0' ? { ...r, health: 'unhealthy' as const } : r));
    expect(shares(balancer, sick, 20).r0).toBeUndefined();
    clock.advance(10_000);
    // r0 is healthy again: it ramps from the floor although it was known before.
    expect(shares(balancer, three, 220)).toEqual({ r0: 20, r1: 100, r2: 100 });
  });

  it('restarts the ramp when active checks mark a replica up again', () => {
    const { balancer, store, clock } = setup({ window_s: 60 }, { active_health: { enabled: true, unhealthy_threshold: 1, healthy_threshold: 1 } });
    const fleet = replicas([1, 1, 1]);
    shares(balancer, fleet, 3);
    const thresholds = { healthyThreshold: 1, unhealthyThreshold: 1 };
    // Down and up again with no request in between (an idle gateway): the probe itself restarts the ramp.
    recordProbe(store, 'r1', false, thresholds, clock.now());
    clock.advance(5_000);
    recordProbe(store, 'r1', true, thresholds, clock.now());
    expect(shares(balancer, fleet, 210)).toEqual({ r0: 100, r1: 10, r2: 100 });
  });

  it('is off by default: a recovered replica gets its full share at once', () => {
    const { balancer, clock } = setup({});
    const fleet = replicas([1, 1, 1]);
    shares(balancer, fleet, 3);
    balancer.onStart(fleet[2]);
    balancer.onEnd(fleet, fleet[2], { status: 0, latencyMs: 1, error: 'connect-error' });
    clock.advance(31_000);
    recover(balancer, fleet, 'r2');
    expect(shares(balancer, fleet, 300)).toEqual({ r0: 100, r1: 100, r2: 100 });
  });
});
