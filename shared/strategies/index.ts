// The strategy registry: config name → factory. Adding a strategy = one file, one case here,
// one spec, one row in the schema's one_of (shared/config/schema.ts).

import type { BalancerConfig, StrategyName } from '../config/types';
import type { Strategy } from '../types';
import { createConsistentHash } from './consistent-hash';
import { createHybrid } from './hybrid';
import { createLeastConnections } from './least-connections';
import { createLeastTokens } from './least-tokens';
import { createResponseTime } from './response-time';
import { createRoundRobin } from './round-robin';
import { createWeightedRoundRobin } from './weighted-round-robin';

// A switch, not a table of factories: under njs the module's top level runs for every request,
// and a table would be built each time.
export function createStrategy(config: BalancerConfig, name: StrategyName): Strategy {
  switch (name) {
    case 'round-robin':
      return createRoundRobin();
    case 'weighted-round-robin':
      return createWeightedRoundRobin();
    case 'least-connections':
      return createLeastConnections(config);
    case 'least-tokens':
      return createLeastTokens();
    case 'response-time':
      return createResponseTime();
    case 'consistent-hash':
      return createConsistentHash(config, createStrategy(config, config.consistent_hash.fallback));
    case 'hybrid':
      return createHybrid(config);
  }
  throw new Error('unknown strategy ' + String(name));
}
