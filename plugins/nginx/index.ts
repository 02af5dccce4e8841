// The NGINX njs module (built to dist/nginx/llm_balancer.js, loaded with `js_import`).
// nginx calls the handlers through the configuration plugins/nginx/generator renders (names in
// names.ts): js_set pick / retry / outcome, js_content route / status / metrics, js_periodic
// healthCheck / healthReport / scrapeMetrics / discoverModels / syncPeers. njs loads only `export default {...}`.
// `pickForTest` runs the core once outside nginx (the njs CLI smoke test, `npm start`).
// Nothing here may import the validator: njs evaluates the whole bundle for every request, and
// the schema alone cost a quarter of the throughput. nginx is handed an already validated config.

import { createBalancer, replicasFromConfig } from '../../shared/balancer';
import type { BalancerConfig } from '../../shared/config/types';
import { createMemoryStore } from '../../shared/memory-store';
import type { RequestView } from '../../shared/types';
import { firstByte, metrics, outcome, pick, retry, route, status } from './handlers';
import { healthCheck, healthReport } from './health-check';
import { scrapeMetrics } from './metrics-scrape';
import { discoverModels } from './model-discovery';
import { syncPeers } from './peers';
import { systemClock, systemRandom } from './runtime';

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

export default { pick, retry, outcome, route, status, metrics, firstByte, healthCheck, healthReport, scrapeMetrics, discoverModels, syncPeers, pickForTest };
