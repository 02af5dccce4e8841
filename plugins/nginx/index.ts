// The NGINX njs module (built to dist/nginx/llm_balancer.js, loaded with `js_import`).
// nginx calls the handlers through the configuration plugins/nginx/generator renders (names in
// names.ts): js_set pick / retry / outcome, js_content route / status / metrics, js_periodic
// healthCheck. njs loads only `export default {...}`.
// `pickForTest` runs the core once outside nginx (the njs CLI smoke test, `npm start`).

import { createBalancer, replicasFromConfig } from '../../shared/balancer';
import { formatErrors, validate } from '../../shared/config/validate';
import { createMemoryStore } from '../../shared/memory-store';
import type { RequestView } from '../../shared/types';
import { metrics, outcome, pick, retry, route, status } from './handlers';
import { healthCheck } from './health-check';
import { systemClock, systemRandom } from './runtime';

/**
 * Validates `configJson`, picks once for `requestJson` (a RequestView) from a fresh in-memory
 * state, and returns the PickResult (or the validation errors) as JSON.
 */
function pickForTest(configJson: string, requestJson: string): string {
  const checked = validate(JSON.parse(configJson));
  if (!checked.ok) return JSON.stringify({ ok: false, errors: formatErrors(checked.errors) });
  const balancer = createBalancer(checked.config, { store: createMemoryStore(), clock: systemClock, random: systemRandom });
  const request = JSON.parse(requestJson) as RequestView;
  return JSON.stringify(balancer.pick(replicasFromConfig(checked.config), request));
}

export default { pick, retry, outcome, route, status, metrics, healthCheck, pickForTest };
