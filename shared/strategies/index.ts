// The strategy registry: config name → factory. Adding a strategy = one file, one line here,
// one spec, one row in the schema's one_of (shared/config/schema.ts).

import type { BalancerConfig, StrategyName } from '../config/types';
import type { Strategy } from '../types';
import { createConsistentHash } from './consistent-hash';
import { createHybrid } from './hybrid';
import { createLeastConnections } from './least-connections';
import { createResponseTime } from './response-time';
import { createRoundRobin } from './round-robin';
import { createWeightedRoundRobin } from './weighted-round-robin';

export const strategyFactories: Record<StrategyName, (config: BalancerConfig) => Strategy> = {
  'round-robin': createRoundRobin,
  'weighted-round-robin': createWeightedRoundRobin,
  'least-connections': createLeastConnections,
  'response-time': createResponseTime,
  'consistent-hash': (config) => createConsistentHash(config, createStrategy(config, config.consistent_hash.fallback)),
  hybrid: createHybrid,
};

export function createStrategy(config: BalancerConfig, name: StrategyName): Strategy {
  return strategyFactories[name](config);
}
