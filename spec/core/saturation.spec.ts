// Saturation (shared/saturation.ts) and the balancer's admission gate: a pick answers `saturated`
// exactly when admission is on and every candidate of the request's pool is saturated, judged
// from fresh /metrics (stale and missing count as saturated) or from in-flight counts, on a fake clock.

import { describe, expect, it } from 'vitest';
import { createBalancer, readsReplicaLoad, saturationLimits } from '../../shared/balancer';
import { createMemoryStore } from '../../shared/memory-store';
import { poolRoom, poolSaturated, replicaRoom, saturationOf } from '../../shared/saturation';
import type { LoadSignals, SaturationLimits } from '../../shared/saturation';
import type { Replica } from '../../shared/types';
import { configOf, fakeClock, replicas, seededRandom } from '../helpers/core';

const METRICS: SaturationLimits = { metrics: true, queueThreshold: 5, kvThreshold: 0.8, maxConcurrency: 0 };
const CONCURRENCY: SaturationLimits = { metrics: false, queueThreshold: 5, kvThreshold: 0.8, maxConcurrency: 4 };

function signals(fields: Partial<LoadSignals> = {}): LoadSignals {
  return { weight: 1, inFlight: 0, waiting: 0, inFlightAtScrape: 0, kvUsage: 0.1, fresh: true, ...fields };
}

/** vLLM /metrics text. */
function metrics(running: number, waiting: number, kv: number): string {
  return [`vllm:num_requests_running{model_name="m"} ${running}`, `vllm:num_requests_waiting{model_name="m"} ${waiting}`, `vllm:kv_cache_usage_perc{model_name="m"} ${kv}`, ''].join('\n');
}

describe('saturationOf', () => {
  it.each<[string, Partial<LoadSignals>, SaturationLimits, string | null]>([
    ['room', {}, METRICS, null],
    ['waiting at the threshold', { waiting: 5 }, METRICS, 'queue'],
    ['waiting just under it', { waiting: 4 }, METRICS, null],
    ['a weight-2 replica holds twice the queue', { waiting: 9, weight: 2 }, METRICS, null],
    ["this gateway's requests since the scrape count", { waiting: 3, inFlight: 6, inFlightAtScrape: 4 }, METRICS, 'queue'],
    ['requests ended since the scrape do not lower it', { waiting: 4, inFlight: 1, inFlightAtScrape: 5 }, METRICS, null],
    ['KV at the threshold', { kvUsage: 0.8 }, METRICS, 'kv'],
    ['stale or missing metrics', { fresh: false }, METRICS, 'stale'],
    ['only KV reported', { waiting: null, kvUsage: 0.5 }, METRICS, null],
    ['in flight at the limit', { inFlight: 4 }, CONCURRENCY, 'concurrency'],
    ['in flight under a weighted limit', { inFlight: 7, weight: 2 }, CONCURRENCY, null],
    ['metrics ignored when judged by concurrency', { fresh: false, waiting: 50 }, CONCURRENCY, null],
    ['both: either saturates', { inFlight: 4 }, { ...METRICS, maxConcurrency: 4 }, 'concurrency'],
  ])('%s', (_, fields, limits, expected) => {
    expect(saturationOf(signals(fields), limits)).toBe(expected);
  });

  it('a pool is saturated only when every replica is, and an empty one never', () => {
    expect(poolSaturated([signals({ waiting: 9 }), signals({ kvUsage: 0.9 })], METRICS)).toBe(true);
    expect(poolSaturated([signals({ waiting: 9 }), signals()], METRICS)).toBe(false);
    expect(poolSaturated([], METRICS)).toBe(false);
  });
});

describe('room before saturation', () => {
  it.each<[string, Partial<LoadSignals>, SaturationLimits, number]>([
    ['queue: up to the threshold', { waiting: 2 }, METRICS, 3],
    ["queue: this gateway's requests since the scrape use it up", { waiting: 2, inFlight: 3, inFlightAtScrape: 1 }, METRICS, 1],
    ['queue: a weight-2 replica holds twice', { waiting: 2, weight: 2 }, METRICS, 8],
    ['saturated: none', { waiting: 5 }, METRICS, 0],
    ['stale: none', { fresh: false }, METRICS, 0],
    ['KV reported alone, below its threshold: unbounded', { waiting: null }, METRICS, Infinity],
    ['concurrency: the rest of the bound', { inFlight: 1 }, CONCURRENCY, 3],
    ['concurrency: weighted', { inFlight: 1, weight: 2 }, CONCURRENCY, 7],
    ['both: the smaller', { waiting: 4, inFlight: 1, inFlightAtScrape: 1 }, { ...METRICS, maxConcurrency: 4 }, 1],
  ])('%s', (_, fields, limits, expected) => {
    expect(replicaRoom(signals(fields), limits)).toBe(expected);
  });

  it('is zero exactly when saturated, and a pool has the sum of its replicas', () => {
    for (const fields of [{}, { waiting: 5 }, { waiting: 4 }, { fresh: false }, { kvUsage: 0.9 }, { waiting: 3, inFlight: 4, inFlightAtScrape: 2 }]) {
      expect(replicaRoom(signals(fields), METRICS) === 0).toBe(saturationOf(signals(fields), METRICS) !== null);
    }
    expect(poolRoom([signals({ waiting: 1 }), signals({ waiting: 3 }), signals({ fresh: false })], METRICS)).toBe(6);
    expect(poolRoom([], METRICS)).toBe(0);
  });
});

describe('the admission gate in pick', () => {
  function setup(admission: Record<string, unknown>, extra: Record<string, unknown> = {}) {
    const store = createMemoryStore();
    const clock = fakeClock();
    const config = configOf({ strategy: 'least-connections', admission: { enabled: true, ...admission }, ...extra });
    const balancer = createBalancer(config, { store, clock, random: seededRandom(3) });
    return { store, clock, balancer, config };
  }

  it('is off by default, and then never answers saturated (and scrapes nothing for it)', () => {
    const config = configOf({});
    expect(saturationLimits(config)).toBeNull();
    expect(readsReplicaLoad(config)).toBe(false);
    const balancer = createBalancer(config, { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(1) });
    const fleet = replicas([1, 1]);
    for (let i = 0; i < 50; i++) expect(balancer.pick(fleet, {}).ok).toBe(true);
  });

  it('by metrics: fresh room lets requests through; all queues full, stale or never scraped holds them', () => {
    const { balancer, clock, config } = setup({});
    expect(readsReplicaLoad(config)).toBe(true);
    const fleet = replicas([1, 1]);
    // Never scraped: unknown load counts as saturated.
    expect(balancer.pick(fleet, {})).toMatchObject({ ok: false, reason: 'saturated', message: 'all 2 available replicas are saturated' });
    balancer.onReplicaMetrics(fleet[0], metrics(8, 7, 0.5));
    balancer.onReplicaMetrics(fleet[1], metrics(8, 1, 0.5));
    const ok = balancer.pick(fleet, {});
    expect(ok.ok && ok.replicas[0].id).toBeTruthy();
    balancer.onReplicaMetrics(fleet[1], metrics(8, 6, 0.5));
    expect(balancer.pick(fleet, {})).toMatchObject({ ok: false, reason: 'saturated' });
    balancer.onReplicaMetrics(fleet[1], metrics(8, 0, 0.85));
    expect(balancer.pick(fleet, {})).toMatchObject({ ok: false, reason: 'saturated' });
    balancer.onReplicaMetrics(fleet[1], metrics(8, 0, 0.3));
    expect(balancer.pick(fleet, {}).ok).toBe(true);
    // The scrape ages past replica_metrics.stale_after_s (5 s): no longer trusted as room.
    clock.advance(5001);
    expect(balancer.pick(fleet, {})).toMatchObject({ ok: false, reason: 'saturated' });
  });

  it("by metrics: this gateway's own requests since the scrape fill the room it showed", () => {
    const { balancer } = setup({ queue_threshold: 3 });
    const fleet = replicas([1]);
    balancer.onReplicaMetrics(fleet[0], metrics(4, 0, 0.2));
    for (let i = 0; i < 3; i++) {
      const result = balancer.pick(fleet, {});
      expect(result.ok).toBe(true);
      if (result.ok) balancer.onStart(result.replicas[0]);
    }
    expect(balancer.pick(fleet, {})).toMatchObject({ ok: false, reason: 'saturated' });
    balancer.onEnd(fleet, fleet[0], { status: 200, latencyMs: 100 });
    expect(balancer.pick(fleet, {}).ok).toBe(true);
  });

  it('by concurrency: in flight per weight up to max_concurrency, then held until one ends', () => {
    const { balancer } = setup({ saturation: 'concurrency', max_concurrency: 2 });
    const fleet: Replica[] = [
      { id: 'big', address: 'big:1', weight: 2 },
      { id: 'small', address: 'small:1', weight: 1 },
    ];
    const started: string[] = [];
    for (let i = 0; i < 6; i++) {
      const result = balancer.pick(fleet, {});
      expect(result.ok).toBe(true);
      if (result.ok) {
        balancer.onStart(result.replicas[0]);
        started.push(result.replicas[0].id);
      }
    }
    expect(started.filter((id) => id === 'big').length).toBe(4);
    expect(balancer.pick(fleet, {})).toMatchObject({ ok: false, reason: 'saturated' });
    balancer.onEnd(fleet, 'small', { status: 200, latencyMs: 50 });
    const next = balancer.pick(fleet, {});
    expect(next.ok && next.replicas[0].id).toBe('small');
  });

  it('judges the pool of the request: one model saturated, another with room', () => {
    const { balancer } = setup(
      { saturation: 'concurrency', max_concurrency: 1 },
      { models: { declared: [{ replica: 'a', models: ['llama'] }, { replica: 'b', models: ['qwen'] }] }, replicas: [{ id: 'a', address: 'a:1' }, { id: 'b', address: 'b:1' }] },
    );
    const fleet: Replica[] = [
      { id: 'a', address: 'a:1', weight: 1 },
      { id: 'b', address: 'b:1', weight: 1 },
    ];
    balancer.onStart('a');
    expect(balancer.pick(fleet, { body: { model: 'llama', messages: [] } })).toMatchObject({
      ok: false,
      reason: 'saturated',
      message: 'all 1 available replicas serving the model `llama` are saturated',
    });
    const qwen = balancer.pick(fleet, { body: { model: 'qwen', messages: [] } });
    expect(qwen.ok && qwen.replicas[0].id).toBe('b');
  });

  it('room(): what the request\'s pool takes before saturation; an admitted pick is not held again', () => {
    const { balancer } = setup(
      { saturation: 'concurrency', max_concurrency: 2 },
      { models: { declared: [{ replica: 'a', models: ['llama'] }, { replica: 'b', models: ['qwen'] }] }, replicas: [{ id: 'a', address: 'a:1' }, { id: 'b', address: 'b:1' }] },
    );
    const fleet: Replica[] = [
      { id: 'a', address: 'a:1', weight: 1 },
      { id: 'b', address: 'b:1', weight: 1 },
    ];
    balancer.onStart('a');
    expect(balancer.room(fleet, { model: 'llama' })).toBe(1);
    expect(balancer.room(fleet, { model: 'qwen' })).toBe(2);
    balancer.onStart('a');
    expect(balancer.room(fleet, { model: 'llama' })).toBe(0);
    expect(balancer.pick(fleet, { model: 'llama' })).toMatchObject({ ok: false, reason: 'saturated' });
    const admitted = balancer.pick(fleet, { model: 'llama' }, true);
    expect(admitted.ok && admitted.replicas[0].id).toBe('a');
    // Nothing to wait for: an unknown model, or no healthy candidate, is not held.
    expect(balancer.room(fleet, { model: 'mistral' })).toBe(Infinity);
    expect(balancer.room([{ id: 'a', address: 'a:1', weight: 1, health: 'unhealthy' }], { model: 'llama' })).toBe(Infinity);
  });

  it('room() is unbounded without admission', () => {
    const balancer = createBalancer(configOf({ strategy: 'least-connections' }), { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(1) });
    expect(balancer.room([{ id: 'a', address: 'a:1', weight: 1 }], {})).toBe(Infinity);
  });

  it('leaves a failing pool to its own answers: no healthy replica is not saturation', () => {
    const { balancer } = setup({ saturation: 'concurrency', max_concurrency: 1 });
    const fleet: Replica[] = [{ id: 'a', address: 'a:1', weight: 1, health: 'unhealthy' }];
    expect(balancer.pick(fleet, {})).toMatchObject({ ok: false, reason: 'no-healthy-replica' });
  });
});
