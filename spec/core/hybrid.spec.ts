import { describe, expect, it } from 'vitest';
import { createBalancer } from '../../shared/balancer';
import { createMemoryStore } from '../../shared/memory-store';
import { rendezvousOrder } from '../../shared/strategies/consistent-hash';
import { createHybrid } from '../../shared/strategies/hybrid';
import type { StrategyContext } from '../../shared/types';
import { configOf, fakeClock, replicas, seededRandom, view } from '../helpers/core';

const config = configOf({ strategy: 'hybrid', hash_key: { source: 'body', name: 'user' }, hybrid: { max_concurrent: 2 } });

function context(hashKey: string | null): StrategyContext {
  return { request: {}, hashKey, requestTokens: 0, llm: null, random: seededRandom(1), now: 0, nextCursor: () => 0 };
}

describe('hybrid', () => {
  it('is sticky by key while the sticky replica has room', () => {
    const views = [view('a'), view('b'), view('c')];
    const home = rendezvousOrder(views, 'user-42')[0].id;
    expect(createHybrid(config).order(views, context('user-42'), 1)[0].id).toBe(home);
  });

  it('moves a sticky key off its replica once that replica reaches max_concurrent', () => {
    const views = [view('a'), view('b'), view('c')];
    const ring = rendezvousOrder(views, 'user-42').map((v) => v.id);
    const busy = views.map((v) => (v.id === ring[0] ? { ...v, inFlight: 2 } : v));
    const order = createHybrid(config).order(busy, context('user-42'), 3).map((v) => v.id);
    expect(order).toEqual([ring[1], ring[2], ring[0]]);
  });

  it('without a key: drops saturated replicas, then takes the best latency cost', () => {
    const views = [
      view('fast-but-full', { ewmaMs: 5, samples: 9, inFlight: 2 }),
      view('slow', { ewmaMs: 200, samples: 9 }),
      view('medium', { ewmaMs: 40, samples: 9, inFlight: 1 }),
    ];
    expect(createHybrid(config).order(views, context(null), 3).map((v) => v.id)).toEqual(['medium', 'slow', 'fast-but-full']);
  });

  it('when every replica is saturated it still routes (least cost), never refuses', () => {
    const views = [view('a', { ewmaMs: 50, samples: 1, inFlight: 3 }), view('b', { ewmaMs: 10, samples: 1, inFlight: 2 })];
    expect(createHybrid(config).order(views, context(null), 1)[0].id).toBe('b');
  });

  it('with sticky off ignores the key', () => {
    const loose = configOf({ strategy: 'hybrid', hybrid: { sticky: false } });
    const views = [view('a', { ewmaMs: 100, samples: 4 }), view('b', { ewmaMs: 10, samples: 4 })];
    for (const key of ['k1', 'k2', 'k3', 'k4']) expect(createHybrid(loose).order(views, context(key), 1)[0].id).toBe('b');
  });

  it('reads the key from the JSON body field end to end (OpenAI `user`)', () => {
    const balancer = createBalancer(config, { store: createMemoryStore(), clock: fakeClock(), random: seededRandom(2) });
    const list = replicas([1, 1, 1, 1]);
    const first = balancer.pick(list, { body: { model: 'm', user: 'alice' } });
    const second = balancer.pick(list, { body: { model: 'm', user: 'alice', messages: [] } });
    expect(first.ok && second.ok && first.replicas[0].id === second.replicas[0].id).toBe(true);
  });
});
