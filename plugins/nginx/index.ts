// The NGINX njs module (built to dist/nginx/llm_balancer.js, loaded with `js_import`).
// nginx calls the handlers through the configuration plugins/nginx/generator renders (names in
// names.ts): js_set pick / retry / outcome, js_content route / status / metrics, js_body_filter
// firstByte, js_periodic healthCheck / healthReport / scrapeMetrics / discoverModels / syncPeers.
// njs loads only `export default {...}`. `pickForTest` runs the core once outside nginx (the njs
// CLI smoke test, `npm start`).
// Nothing here may import the validator: njs evaluates the whole bundle for every request, and
// the schema alone cost a quarter of the throughput. nginx is handed an already validated config.
// For the same reason only the request path is bundled here: the cold handlers (status, metrics,
// the js_periodic tasks, pickForTest) are cold.ts, which build/build.js appends inside the function
// llmBalancerCold(), instantiated on the first call in a VM (njs) or context (QuickJS).

import type { ColdHandlers } from './cold-handlers';
import { firstByte, outcome, pick, retry, route } from './handlers';
import type { NjsRequest } from './runtime';

// Defined by the code build/build.js appends to the bundle (the cold part, built from cold.ts).
declare function llmBalancerCold(): ColdHandlers;

function status(r: NjsRequest): void {
  llmBalancerCold().status(r);
}

function metrics(r: NjsRequest): void {
  llmBalancerCold().metrics(r);
}

function healthCheck(session?: unknown): Promise<void> {
  return llmBalancerCold().healthCheck(session);
}

function healthReport(session?: unknown): Promise<void> {
  return llmBalancerCold().healthReport(session);
}

function scrapeMetrics(session?: unknown): Promise<void> {
  return llmBalancerCold().scrapeMetrics(session);
}

function discoverModels(session?: unknown): Promise<void> {
  return llmBalancerCold().discoverModels(session);
}

function syncPeers(session?: unknown): Promise<void> {
  return llmBalancerCold().syncPeers(session);
}

function pickForTest(preloadedJson: string, requestJson: string): string {
  return llmBalancerCold().pickForTest(preloadedJson, requestJson);
}

export default { pick, retry, outcome, route, status, metrics, firstByte, healthCheck, healthReport, scrapeMetrics, discoverModels, syncPeers, pickForTest };
