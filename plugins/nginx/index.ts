// The NGINX njs module (built to dist/nginx/llm_balancer.js, loaded with `js_import`).
// nginx calls the handlers through the configuration plugins/nginx/generator renders (names in
// names.ts): js_set pick / retry / outcome, js_content route / admitted / wait / status / metrics, js_body_filter
// firstByte, js_periodic healthCheck / healthReport / scrapeMetrics / discoverModels / syncPeers.
// njs loads only `export default {...}`. `pickForTest` runs the core once outside nginx (the njs
// CLI smoke test, `npm start`).
// Nothing here may import the validator: njs evaluates the whole bundle for every request, and
// the schema alone cost a quarter of the throughput. nginx is handed an already validated config.
// For the same reason only the request path is bundled here: the cold handlers (status, metrics,
// the js_periodic tasks, pickForTest) are cold.ts, which build/build.js appends inside the function
// llmBalancerCold(), instantiated on the first call in a VM (njs) or context (QuickJS).

import crypto from 'crypto';
import type { ColdHandlers } from './cold-handlers';
import { admitted, firstByte, outcome, pick, retry, route, useTextHash } from './handlers';
import type { NjsRequest } from './runtime';

/** njs's built-in crypto module (both engines; Node's in specs), as far as it is used here. */
interface HashModule {
  createHash(algorithm: string): { update(text: string): { digest(encoding: string): string } };
}

/**
 * A prompt block's hash for prefix affinity: the first 32 bits of its MD5, computed by nginx's
 * native code. The JavaScript FNV loop (shared/hash.ts hashString) costs ~0.1 µs per character
 * under both njs engines, ~25 µs for one 256-character block; this ~2-5 µs (njs CLI, measured).
 * Not for secrecy: a spread-out 32-bit value, the same on every worker and every nginx node.
 */
function md5Hash(text: string): number {
  return parseInt((crypto as unknown as HashModule).createHash('md5').update(text).digest('hex').substring(0, 8), 16);
}

useTextHash(md5Hash);

// Defined by the code build/build.js appends to the bundle (the cold part, built from cold.ts).
declare function llmBalancerCold(): ColdHandlers;

function status(r: NjsRequest): void {
  llmBalancerCold().status(r);
}

function metrics(r: NjsRequest): void {
  llmBalancerCold().metrics(r);
}

function wait(r: NjsRequest): void {
  llmBalancerCold().wait(r);
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

export default { pick, retry, outcome, route, admitted, wait, status, metrics, firstByte, healthCheck, healthReport, scrapeMetrics, discoverModels, syncPeers, pickForTest };
