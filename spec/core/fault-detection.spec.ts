// Faults the consecutive-failure detector misses or handles badly: a replica that fails a share
// of its requests (failures rarely consecutive), one whose connections are refused (it crashed:
// eject sooner, and let a passing probe bring it back), and one that holds requests without ever
// answering (stuck). All on a fake clock; each rule is also shown NOT firing where it must not.

import { describe, expect, it } from 'vitest';
import { createBalancer } from '../../shared/balancer';
import { recordProbe } from '../../shared/health/active';
import { createMemoryStore } from '../../shared/memory-store';
import type { Outcome, Replica } from '../../shared/types';
import { configOf, fakeClock, replicas, seededRandom } from '../helpers/core';

const OK: Outcome = { status: 200, latencyMs: 20 };
const ERROR_500: Outcome = { status: 500, latencyMs: 5 };
const REFUSED: Outcome = { status: 0, latencyMs: 1, error: 'connect-error' };
const TIMED_OUT: Outcome = { status: 0, latencyMs: 4000, error: 'timeout' };

function setup(extra: Record<string, unknown> = {}, count = 4) {
  const clock = fakeClock(1_000_000);
  const store = createMemoryStore();
  const config = configOf({ strategy: 'round-robin', ...extra });
  const balancer = createBalancer(config, { store, clock, random: seededRandom(7) });
  return { clock, store, balancer, list: replicas(new Array(count).fill(1)), config };
}

type Setup = ReturnType<typeof setup>;

function attempt(s: Setup, id: string, outcome: Outcome) {
  s.balancer.onStart(id);
  s.balancer.onEnd(s.list, id, outcome);
}

function stateOf(s: Setup, id: string) {
  return s.balancer.status(s.list).find((row) => row.id === id)!.state;
}

/** Ids picked by `count` picks, each attempt ended at once with `outcomeOf(id)` (null: left open). */
function serve(s: Setup, count: number, outcomeOf: (id: string, n: number) => Outcome | null, stepMs = 10): string[] {
  const picked: string[] = [];
  for (let n = 0; n < count; n++) {
    const result = s.balancer.pick(s.list, {});
    if (!result.ok) throw new Error(result.message);
    const id = result.replicas[0].id;
    picked.push(id);
    const outcome = outcomeOf(id, n);
    s.balancer.onStart(id);
    if (outcome !== null) s.balancer.onEnd(s.list, id, outcome);
    s.clock.advance(stepMs);
  }
  return picked;
}

describe('failure-rate ejection', () => {
  // r3 fails every third request it serves: never 5 in a row, so only the rate can catch it.
  function flakyR3() {
    let served = 0;
    return (id: string) => (id === 'r3' && ++served % 3 === 0 ? ERROR_500 : OK);
  }

  it('ejects a replica failing a third of its requests while the others succeed', () => {
    const s = setup();
    const picked = serve(s, 200, flakyR3());
    expect(stateOf(s, 'r3')).toBe('ejected');
    // Ejected after about min_requests of its own (10), not after the whole run.
    const firstIdle = picked.lastIndexOf('r3');
    expect(firstIdle).toBeLessThan(60);
    expect(picked.slice(firstIdle + 1)).not.toContain('r3');
  });

  it('never ejects on consecutive failures alone for this pattern (the rate is what catches it)', () => {
    const s = setup({ passive_health: { failure_rate_threshold: 0 } });
    serve(s, 200, flakyR3());
    expect(stateOf(s, 'r3')).toBe('healthy');
  });

  it('leaves every replica in when all fail alike (a fleet-wide cause is not an outlier)', () => {
    const s = setup();
    const counts: Record<string, number> = {};
    serve(s, 400, (id) => {
      counts[id] = (counts[id] ?? 0) + 1;
      return counts[id] % 3 === 0 ? ERROR_500 : OK;
    });
    for (const row of s.balancer.status(s.list)) expect(row.state).toBe('healthy');
  });

  it('does not judge below failure_rate_min_requests', () => {
    const s = setup({ passive_health: { failure_rate_min_requests: 1000 } });
    serve(s, 200, flakyR3());
    expect(stateOf(s, 'r3')).toBe('healthy');
  });

  it('forgets old failures: a share from long ago does not eject on one new failure', () => {
    const s = setup({ passive_health: { consecutive_failures: 1000 } });
    // 9 requests, 4 failures on r3 (44%), others fine — below min_requests, so not judged yet.
    for (let i = 0; i < 9; i++) attempt(s, 'r3', i % 2 === 0 ? ERROR_500 : OK);
    for (const id of ['r0', 'r1', 'r2']) for (let i = 0; i < 10; i++) attempt(s, id, OK);
    // A minute later (6 windows) they have decayed away; 10 good requests, then one failure.
    s.clock.advance(60_000);
    for (let i = 0; i < 10; i++) attempt(s, 'r3', OK);
    attempt(s, 'r3', ERROR_500);
    expect(stateOf(s, 'r3')).toBe('healthy');
    // Without the decay the same history would be 5 of 20 = 25%: the same steps a moment apart eject.
    const t = setup({ passive_health: { consecutive_failures: 1000 } });
    for (let i = 0; i < 9; i++) attempt(t, 'r3', i % 2 === 0 ? ERROR_500 : OK);
    for (const id of ['r0', 'r1', 'r2']) for (let i = 0; i < 10; i++) attempt(t, id, OK);
    for (let i = 0; i < 10; i++) attempt(t, 'r3', OK);
    attempt(t, 'r3', ERROR_500);
    expect(stateOf(t, 'r3')).toBe('ejected');
  });

  it('respects max_ejected_percent (two flaky replicas of four: only one out)', () => {
    const s = setup();
    const served: Record<string, number> = {};
    serve(s, 300, (id) => {
      served[id] = (served[id] ?? 0) + 1;
      return (id === 'r2' || id === 'r3') && served[id] % 3 === 0 ? ERROR_500 : OK;
    });
    const out = s.balancer.status(s.list).filter((row) => row.state === 'ejected' || row.state === 'half-open');
    expect(out.length).toBe(1);
  });
});

describe('connect errors', () => {
  it('eject after consecutive_connect_errors (default 2), sooner than consecutive_failures (5)', () => {
    const s = setup();
    attempt(s, 'r1', REFUSED);
    expect(stateOf(s, 'r1')).toBe('healthy');
    attempt(s, 'r1', REFUSED);
    expect(stateOf(s, 'r1')).toBe('ejected');
  });

  it('a success or another kind of failure in between resets the connect-error count', () => {
    const s = setup();
    attempt(s, 'r1', REFUSED);
    attempt(s, 'r1', OK);
    attempt(s, 'r1', REFUSED);
    expect(stateOf(s, 'r1')).toBe('healthy');
    attempt(s, 'r1', ERROR_500);
    attempt(s, 'r1', REFUSED);
    expect(stateOf(s, 'r1')).toBe('healthy');
  });

  it('do not eject when connect-error is not a configured failure kind', () => {
    const s = setup({ passive_health: { failure_kinds: ['5xx'] } });
    for (let i = 0; i < 5; i++) attempt(s, 'r1', REFUSED);
    expect(stateOf(s, 'r1')).toBe('healthy');
  });

  it('a passing active probe lifts a connect-error ejection at once, and the replica is picked again', () => {
    const s = setup({ passive_health: { consecutive_connect_errors: 1 } });
    attempt(s, 'r1', REFUSED);
    expect(stateOf(s, 'r1')).toBe('ejected');
    const thresholds = { healthyThreshold: 2, unhealthyThreshold: 3 };
    recordProbe(s.store, 'r1', false, thresholds, s.clock.now());
    expect(stateOf(s, 'r1')).toBe('ejected');
    s.clock.advance(1000);
    recordProbe(s.store, 'r1', true, thresholds, s.clock.now());
    expect(stateOf(s, 'r1')).toBe('healthy');
    expect(serve(s, 8, () => OK)).toContain('r1');
  });

  it('a passing probe does NOT lift an ejection for errors or timeouts (a hung or flaky replica still passes /health)', () => {
    for (const outcome of [ERROR_500, TIMED_OUT]) {
      const s = setup({ passive_health: { consecutive_failures: 2 } });
      attempt(s, 'r1', outcome);
      attempt(s, 'r1', outcome);
      expect(stateOf(s, 'r1')).toBe('ejected');
      recordProbe(s.store, 'r1', true, { healthyThreshold: 1, unhealthyThreshold: 1 }, s.clock.now());
      expect(stateOf(s, 'r1')).toBe('ejected');
    }
  });
});

describe('stuck-replica detection', () => {
  /** Holds `n` attempts open on `id` (started, never ended). */
  function hold(s: Setup, id: string, n: number) {
    for (let i = 0; i < n; i++) s.balancer.onStart(id);
  }

  it.each(['round-robin', 'least-connections', 'weighted-round-robin', 'least-tokens', 'llm'])(
    '%s: a replica holding requests without progress while the others progress gets no new ones',
    (strategy) => {
      const s = setup({ strategy, passive_health: { stuck_after_s: 5 } });
      hold(s, 'r2', 3);
      // Others answer for 6 s; r2 answers nothing.
      for (let t = 0; t < 6; t++) {
        for (const id of ['r0', 'r1', 'r3']) attempt(s, id, OK);
        s.clock.advance(1000);
      }
      expect(stateOf(s, 'r2')).toBe('stuck');
      // One pick per stuck_after_s may still try it (a lost log phase must not rest it for good):
      // the first picks use that trial (it hangs too); none after it within the window.
      const picked = serve(s, 40, (id) => (id === 'r2' ? null : OK), 10);
      expect(picked.filter((id) => id === 'r2').length).toBeLessThanOrEqual(1);
      expect(picked.slice(4)).not.toContain('r2');
    },
  );

  it('is not stuck before stuck_after_s, and comes back as soon as it answers', () => {
    const s = setup({ passive_health: { stuck_after_s: 5 } });
    hold(s, 'r2', 1);
    s.clock.advance(4000);
    attempt(s, 'r0', OK);
    expect(stateOf(s, 'r2')).toBe('healthy');
    s.clock.advance(2000);
    attempt(s, 'r0', OK);
    expect(stateOf(s, 'r2')).toBe('stuck');
    s.balancer.onEnd(s.list, 'r2', OK);
    hold(s, 'r2', 1);
    expect(stateOf(s, 'r2')).toBe('healthy');
    expect(serve(s, 8, () => OK)).toContain('r2');
  });

  it('a first byte (onProgress) counts as progress: a replica streaming long answers is not stuck', () => {
    const s = setup({ passive_health: { stuck_after_s: 5 } });
    hold(s, 'r2', 2);
    for (let t = 0; t < 12; t++) {
      s.clock.advance(1000);
      attempt(s, 'r0', OK);
      if (t % 4 === 0) s.balancer.onProgress('r2');
    }
    expect(stateOf(s, 'r2')).toBe('healthy');
  });

  it('a timeout or refused connection is not progress', () => {
    const s = setup({ passive_health: { stuck_after_s: 5, consecutive_failures: 1000, consecutive_connect_errors: 1000, failure_rate_threshold: 0 } });
    hold(s, 'r2', 3);
    s.clock.advance(3000);
    attempt(s, 'r2', TIMED_OUT);
    attempt(s, 'r2', REFUSED);
    s.clock.advance(3000);
    attempt(s, 'r0', OK);
    expect(stateOf(s, 'r2')).toBe('stuck');
  });

  it('singles nobody out when every replica stalls alike (no other progress)', () => {
    const s = setup({ passive_health: { stuck_after_s: 5 } });
    for (const id of ['r0', 'r1', 'r2', 'r3']) hold(s, id, 1);
    s.clock.advance(10_000);
    const picked = serve(s, 8, () => null, 0);
    expect(new Set(picked).size).toBe(4);
  });

  it('stuck_after_s 0 (or passive health off) disables it', () => {
    for (const extra of [{ passive_health: { stuck_after_s: 0 } }, { passive_health: { enabled: false, stuck_after_s: 5 } }]) {
      const s = setup(extra);
      hold(s, 'r2', 3);
      for (let t = 0; t < 10; t++) {
        attempt(s, 'r0', OK);
        s.clock.advance(1000);
      }
      expect(stateOf(s, 'r2')).toBe('healthy');
      expect(serve(s, 8, () => OK)).toContain('r2');
    }
  });

  it('never leaves a pick without a candidate: the only replica stays pickable while stuck', () => {
    const s = setup({ passive_health: { stuck_after_s: 5 } }, 2);
    hold(s, 'r1', 1);
    attempt(s, 'r0', OK);
    s.clock.advance(6000);
    attempt(s, 'r0', OK);
    // r0 ejected: r1, stuck, is all there is.
    s.list = [{ ...s.list[0], health: 'unhealthy' } as Replica, s.list[1]];
    const result = s.balancer.pick(s.list, {});
    expect(result.ok && result.replicas[0].id).toBe('r1');
  });
});
