import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { slowStartFactor, type SlowStartConfig } from '../../shared/slow-start';

const SINCE = 1_700_000_000_000; // a replica became available at this clock reading (ms)
const WINDOW_S = 60;

function config(overrides: Partial<SlowStartConfig> = {}): SlowStartConfig {
  // Envoy's defaults: linear ramp, 10% floor.
  return Object.assign({ windowS: WINDOW_S, aggression: 1, minWeightPercent: 10 }, overrides);
}

/** The clock reading at `fraction` of the window after SINCE. */
function at(fraction: number, windowS = WINDOW_S): number {
  return SINCE + fraction * windowS * 1000;
}

describe('slowStartFactor', () => {
  // [aggression, fraction of the window elapsed, expected factor] with the 10% floor.
  it.each([
    // aggression 1: linear, (t/w)
    [1, 0, 0.1],
    [1, 0.1, 0.1],
    [1, 0.25, 0.25],
    [1, 0.5, 0.5],
    [1, 1, 1],
    [1, 1.5, 1],
    // aggression 2: faster start, (t/w)^(1/2)
    [2, 0, 0.1],
    [2, 0.1, Math.sqrt(0.1)],
    [2, 0.25, 0.5],
    [2, 0.5, Math.SQRT1_2],
    [2, 1, 1],
    [2, 1.5, 1],
    // aggression 0.5: slower start, (t/w)^2
    [0.5, 0, 0.1],
    [0.5, 0.1, 0.1], // 0.01 is below the floor
    [0.5, 0.25, 0.1], // 0.0625 is below the floor
    [0.5, 0.5, 0.25],
    [0.5, 1, 1],
    [0.5, 1.5, 1],
  ])('aggression %f at %f of the window -> %f', (aggression, fraction, expected) => {
    expect(slowStartFactor(config({ aggression }), SINCE, at(fraction))).toBeCloseTo(expected, 12);
  });

  it('applies the minimum early in the window and lets the ramp take over once it is higher', () => {
    expect(slowStartFactor(config(), SINCE, at(0.05))).toBe(0.1);
    expect(slowStartFactor(config({ minWeightPercent: 0 }), SINCE, at(0.05))).toBeCloseTo(0.05, 12);
    expect(slowStartFactor(config({ minWeightPercent: 30 }), SINCE, at(0.2))).toBe(0.3);
    expect(slowStartFactor(config({ minWeightPercent: 30 }), SINCE, at(0.4))).toBeCloseTo(0.4, 12);
  });

  it('is 1 from the end of the window on, and just below 1 one millisecond before', () => {
    expect(slowStartFactor(config(), SINCE, SINCE + WINDOW_S * 1000)).toBe(1);
    expect(slowStartFactor(config(), SINCE, SINCE + WINDOW_S * 1000 - 1)).toBeLessThan(1);
    expect(slowStartFactor(config(), SINCE, SINCE + 365 * 86_400_000)).toBe(1);
  });

  it.each([0, -5, NaN])('is 1 when the window is %f (slow start disabled), even under clock skew', (windowS) => {
    const disabled = config({ windowS });
    expect(slowStartFactor(disabled, SINCE, SINCE)).toBe(1);
    expect(slowStartFactor(disabled, SINCE, SINCE + 1000)).toBe(1);
    expect(slowStartFactor(disabled, SINCE, SINCE - 1000)).toBe(1);
  });

  it.each([null, undefined])('is 1 when the start time is unknown (%s)', (since) => {
    expect(slowStartFactor(config(), since as number | null, SINCE)).toBe(1);
  });

  it('is the minimum when now is before the start (clock skew)', () => {
    expect(slowStartFactor(config(), SINCE, SINCE - 1)).toBe(0.1);
    expect(slowStartFactor(config({ minWeightPercent: 25 }), SINCE, SINCE - 60_000)).toBe(0.25);
    expect(slowStartFactor(config({ minWeightPercent: 0 }), SINCE, SINCE - 1)).toBe(0);
  });

  it.each([0, -1, NaN])('treats aggression %f as 1 (linear)', (aggression) => {
    for (const fraction of [0, 0.3, 0.5, 0.9, 1.2]) {
      expect(slowStartFactor(config({ aggression }), SINCE, at(fraction))).toBe(slowStartFactor(config(), SINCE, at(fraction)));
    }
  });

  it.each([
    [150, 0.3, 1],
    [-20, 0.05, 0.05],
    [NaN, 0.05, 0.05],
  ])('clamps a minimum of %f percent into [0, 100] instead of returning NaN', (minWeightPercent, fraction, expected) => {
    expect(slowStartFactor(config({ minWeightPercent }), SINCE, at(fraction))).toBeCloseTo(expected, 12);
  });

  it('treats a NaN time as an unknown start', () => {
    expect(slowStartFactor(config(), NaN, SINCE)).toBe(1);
    expect(slowStartFactor(config(), SINCE, NaN)).toBe(1);
  });

  const configs = fc.record({
    windowS: fc.double({ min: 0.001, max: 3600, noNaN: true }),
    aggression: fc.double({ min: 0.05, max: 20, noNaN: true }),
    minWeightPercent: fc.double({ min: 0, max: 100, noNaN: true }),
  });

  it('never decreases as time passes (property)', () => {
    fc.assert(
      fc.property(configs, fc.integer({ min: -10_000_000, max: 10_000_000 }), fc.integer({ min: -10_000_000, max: 10_000_000 }), (c, d1, d2) => {
        const early = Math.min(d1, d2);
        const late = Math.max(d1, d2);
        expect(slowStartFactor(c, SINCE, SINCE + early)).toBeLessThanOrEqual(slowStartFactor(c, SINCE, SINCE + late));
      }),
      { numRuns: 2000 },
    );
  });

  it('always lies within [minWeightPercent / 100, 1] (property)', () => {
    fc.assert(
      fc.property(configs, fc.integer({ min: -10_000_000, max: 10_000_000 }), (c, delta) => {
        const factor = slowStartFactor(c, SINCE, SINCE + delta);
        expect(factor).toBeGreaterThanOrEqual(c.minWeightPercent / 100);
        expect(factor).toBeLessThanOrEqual(1);
      }),
      { numRuns: 2000 },
    );
  });

  it('never returns NaN, whatever the numbers (property)', () => {
    fc.assert(
      fc.property(
        fc.record({ windowS: fc.double(), aggression: fc.double(), minWeightPercent: fc.double() }),
        fc.option(fc.double(), { nil: null }),
        fc.double(),
        (c, since, now) => {
          const factor = slowStartFactor(c, since, now);
          expect(Number.isNaN(factor)).toBe(false);
          expect(factor).toBeGreaterThanOrEqual(0);
          expect(factor).toBeLessThanOrEqual(1);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
