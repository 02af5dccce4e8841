// bench:capacity's search and table (bench/shootout/capacity.ts) on scripted goodput curves: the
// bisection finds the highest rate meeting the goodput target within its precision, widens the
// bracket down when the low end already fails, and reports ratios to the reference row per seed.
import { describe, expect, it } from 'vitest';
import { GOODPUT_TARGET, renderCapacity, searchCapacity } from '../bench/shootout/capacity';
import type { RowCapacity } from '../bench/shootout/capacity';

/** Goodput that meets the target up to `capacity` req/s and misses it above. */
const cliff = (capacity: number) => async (rate: number) => (rate <= capacity ? GOODPUT_TARGET + 0.05 : GOODPUT_TARGET - 0.2);

describe('capacity search', () => {
  it.each([12, 25, 40, 77])('finds a capacity of %d req/s from a reference of 20 within the bisection precision', async (capacity) => {
    const found = await searchCapacity(cliff(capacity), 20, 6);
    expect(found.capacityPerS).toBeLessThanOrEqual(capacity);
    const [low, high] = found.bracket;
    expect(low).toBe(found.capacityPerS);
    expect(high).not.toBeNull();
    // Six geometric halvings of [5, 80] leave a bracket within ~5% of its ends.
    expect((high as number) / low).toBeLessThan(1.06);
    expect(high as number).toBeGreaterThan(capacity);
    // Every probe's verdict follows the goodput it measured.
    for (const probe of found.probes) expect(probe.feasible).toBe(probe.goodput >= GOODPUT_TARGET);
  });

  it('reports the top of the bracket as a lower bound when even it is met, and 0 when nothing is', async () => {
    expect(await searchCapacity(cliff(1000), 20, 3)).toMatchObject({ capacityPerS: 80, bracket: [80, null] });
    const none = await searchCapacity(cliff(0.5), 20, 3);
    expect(none.capacityPerS).toBe(0);
    // The low end was halved twice before giving up: 5, 2.5, 1.3 req/s.
    expect(none.probes.map((p) => p.ratePerS)).toEqual([5, 2.5, 1.3]);
  });

  it('judges against the target it is given (a share of the idle goodput)', async () => {
    const curve = async (rate: number) => (rate <= 30 ? 0.8 : 0.6);
    expect((await searchCapacity(curve, 20, 5)).capacityPerS).toBe(0);
    const found = await searchCapacity(curve, 20, 5, 0.72);
    expect(found.capacityPerS).toBeGreaterThan(25);
    expect(found.capacityPerS).toBeLessThanOrEqual(30);
  });

  it('widens the bracket down when the low end misses the target', async () => {
    const found = await searchCapacity(cliff(3), 20, 4);
    expect(found.capacityPerS).toBeGreaterThan(2);
    expect(found.capacityPerS).toBeLessThanOrEqual(3);
  });

  it('tables the median capacity and the median of per-seed ratios to the reference', () => {
    const row = (seed: number, name: string, capacityPerS: number, open = false): RowCapacity => ({ mix: 'mixed', seed, row: name, capacityPerS, bracket: [capacityPerS, open ? null : capacityPerS * 1.05], probes: [], idleGoodput: 0.9, target: 0.81 });
    const table = renderCapacity([row(1, 'nginx round robin', 10), row(1, 'llm', 15), row(2, 'nginx round robin', 20), row(2, 'llm', 26, true)], 'nginx round robin');
    expect(table).toContain('| mixed | nginx round robin | 10.0, 20.0 | 15.0 | 1.00x | 81% (90%), 81% (90%) |');
    expect(table).toContain('| mixed | llm | 15.0, 26.0+ | 20.5 | 1.40x |');
    expect(table).not.toContain('oracle');
  });

  it("adds each row's ratio to the oracle's capacity of the same seed when the oracle ran", () => {
    const row = (seed: number, name: string, capacityPerS: number): RowCapacity => ({ mix: 'fleet-prefixes', seed, row: name, capacityPerS, bracket: [capacityPerS, capacityPerS * 1.05], probes: [], idleGoodput: 0.8, target: 0.72 });
    const table = renderCapacity([row(1, 'nginx round robin', 4), row(1, 'llm', 9), row(1, 'oracle', 10), row(2, 'nginx round robin', 3), row(2, 'llm', 12), row(2, 'oracle', 12)], 'nginx round robin');
    expect(table).toContain('| vs nginx round robin (median of seeds) | vs oracle (median of seeds) |');
    // llm: 9 / 10 and 12 / 12 of the oracle's, median 0.95.
    expect(table).toContain('| fleet-prefixes | llm | 9.0, 12.0 | 10.5 | 3.13x | 0.95x | 72% (80%), 72% (80%) |');
    expect(table).toContain('| fleet-prefixes | oracle | 10.0, 12.0 | 11.0 | 3.25x | 1.00x |');
  });
});
