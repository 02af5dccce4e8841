// The strategy registry: config name → factory. Adding a strategy = one file, one case here,
// one spec, one row in the schema's one_of (shared/config/schema.ts).

import type { BalancerConfig, StrategyName } from '../config/types';
import type { Store, Strategy } from '../types';
import { createConsistentHash } from './consistent-hash';
import { createHybrid } from './hybrid';
import { createLeastConnections } from './least-connections';
import { createLeastTokens } from './least-tokens';
import { createPrefixAffinity } from './prefix-affinity';
import { createLlm } from './llm';
import { createResponseTime } from './response-time';
import { createRoundRobin } from './round-robin';
import { createWeightedRoundRobin } from './weighted-round-robin';

/**
 * Stands in when a strategy is built only to ask what it reads: using it is a bug. Built on
 * demand, not at module level (njs evaluates the top level for every request).
 */
function noStore(): Store {
  const misuse = (): never => {
    throw new Error('strategy built without a store');
  };
  return { get: misuse, set: misuse, incr: misuse, delete: misuse };
}

// A switch, not a table of factories: under njs the module's top level runs for every request,
// and a table would be built each time.
// `store`: for strategies with routing memory of their own (prefix-affinity's table); omitted
// when only asking what a strategy reads.
export function createStrategy(config: BalancerConfig, name: StrategyName, store?: Store): Strategy {
  switch (name) {
    case 'round-robin':
      return createRoundRobin();
    case 'weighted-round-robin':
      return createWeightedRoundRobin();
    case 'least-connections':
      return createLeastConnections(config);
    case 'least-tokens':
      return createLeastTokens(config, store === undefined ? noStore() : store);
    case 'response-time':
      return createResponseTime();
    case 'llm':
      return createLlm(config, store === undefined ? noStore() : store);
    case 'prefix-affinity':
      return createPrefixAffinity(config, store === undefined ? noStore() : store);
    case 'consistent-hash':
      return createConsistentHash(config, createStrategy(config, config.consistent_hash.fallback, store));
    case 'hybrid':
      return createHybrid(config);
  }
  throw new Error('unknown strategy ' + String(name));
}
