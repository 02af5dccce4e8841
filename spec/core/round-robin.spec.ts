import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createBalancer } from '../../shared/balancer';
import { createMemoryStore } from '../../shared/memory-store';
import type { Replica } from '../../shared/types';
import { configOf, fakeClock, replicas, seededRandom } from '../helpers/core';

function roundRobin(retries = 0) {
  return createBalancer(configOf({ strategy: 'round-robin', retries }), {
    store: createMemoryStore(),
    clock: fakeClock(),
    random: seededRandom(1),
  });
}

function firstPick(balancer: ReturnType<typeof roundRobin>, list: Replica[]): string {
  const result = balancer.pick(list, {});
  if (!result.ok) throw new Error(result.message);
  return result.replicas[0].id;
}

describe('round-robin', () => {
  it('rotates over the replicas in order', () => {
    const balancer = roundRobin();
    const list = replicas([1, 1, 1]);
    const picks = Array.from({ length: 7 }, () => firstPick(balancer, list));
    expect(picks).toEqual(['r0', 'r1', 'r2', 'r0', 'r1', 'r2', 'r0']);
  });

  it('gives the failover alternates in rotation order, all distinct', () => {
    const balancer = roundRobin(2);
    const result = balancer.pick(replicas([1, 1, 1, 1]), {});
    expect(result.ok && result.replicas.map((r) => r.id)).toEqual(['r0', 'r1', 'r2']);
  });

  it('ignores weights: it is the load-blind baseline', () => {
    const balancer = roundRobin();
    const list = replicas([5, 1]);
    const picks = Array.from({ length: 4 }, () => firstPick(balancer, list));
    expect(picks).toEqual(['r0', 'r1', 'r0', 'r1']);
  });

  it('stays fair while the healthy set changes: counts within 1 over every stable stretch', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ down: fc.subarray([0, 1, 2, 3, 4]), picks: fc.integer({ min: 1, max: 40 }) }), {
          minLength: 1,
          maxLength: 8,
        }),
        (stretches) => {
          const balancer = roundRobin();
          for (const stretch of stretches) {
            const list: Replica[] = replicas([1, 1, 1, 1, 1]).map((r, i) =>
              stretch.down.includes(i) ? { ...r, health: 'unhealthy' as const } : r,
            );
            const healthy = list.filter((r) => r.health !== 'unhealthy').map((r) => r.id);
            if (healthy.length === 0) continue;
            const counts: Record<string, number> = {};
            for (let i = 0; i < stretch.picks; i++) {
              const id = firstPick(balancer, list);
              expect(healthy).toContain(id);
              counts[id] = (counts[id] ?? 0) + 1;
            }
            const values = healthy.map((id) => counts[id] ?? 0);
            expect(Math.max(...values) - Math.min(...values)).toBeLessThanOrEqual(1);
          }
        },
      ),
    );
  });
});
