// The cold handlers of the njs module: the status and metrics pages, the js_periodic tasks and the
// command-line smoke test. build/build.js bundles this entry on its own and appends it to the module
// (dist/nginx/llm_balancer.js) inside one function that index.ts calls on first use.
// Why: the njs engine runs every request in a fresh VM that evaluates the module's top level again,
// and every top-level function costs there (this part of the bundle, ~a quarter of it, cost 6-11 µs
// of nginx CPU per request, bench:gateway on njs 0.8.9). Inside a function that no request calls,
// it is compiled once and never instantiated on the request path. QuickJS keeps a context's module
// (js_context_reuse), so there it costs nothing either way.
// The bundle shares no module state with the hot part: it has its own copy of handlers.ts's
// cached context (built the first time a cold handler runs in a VM or context), and everything
// that must be consistent lives in the shared dict zones.

import { createBalancer, replicasFromConfig } from '../../shared/balancer';
import type { BalancerConfig } from '../../shared/config/types';
import { createMemoryStore } from '../../shared/memory-store';
import type { RequestView } from '../../shared/types';
import type { ColdHandlers } from './cold-handlers';
import { metrics, status } from './handlers';
import { healthCheck, healthReport } from './health-check';
import { scrapeMetrics } from './metrics-scrape';
import { discoverModels } from './model-discovery';
import { syncPeers } from './peers';
import { systemClock, systemRandom } from './runtime';
import { wait } from './waiting';

/**
 * Picks once for `requestJson` (a RequestView) from a fresh in-memory state, with the config of
 * `preloadedJson` (what `llm-balancer nginx-config` writes: already validated), and returns the
 * PickResult as JSON.
 */
function pickForTest(preloadedJson: string, requestJson: string): string {
  const config = (JSON.parse(preloadedJson) as { config: BalancerConfig }).config;
  const balancer = createBalancer(config, { store: createMemoryStore(), clock: systemClock, random: systemRandom });
  const request = JSON.parse(requestJson) as RequestView;
  return JSON.stringify(balancer.pick(replicasFromConfig(config), request));
}

// Defined by the wrapper build/build.js puts around this bundle (inside the function index.ts
// calls): the handlers are handed over through it, since the bundle has no exports.
declare function llmBalancerColdHandOver(handlers: ColdHandlers): void;

llmBalancerColdHandOver({ status, metrics, wait, healthCheck, healthReport, scrapeMetrics, discoverModels, syncPeers, pickForTest });
