// The NGINX njs module (built to dist/nginx/llm_balancer.js, loaded with `js_import`).
// This file is the adapter's entry: it turns nginx's request into the core's RequestView and back.
// At this stage it exposes the core through `pickForTest`, which the njs smoke test calls in the
// real njs interpreter; the per-request handlers (js_set pick, log-phase outcome, js_periodic
// health checks, shared-dict state) arrive with the NGINX target.

import { createBalancer, createMemoryStore, formatErrors, replicasFromConfig, validate } from '../../shared/index';
import type { RequestView } from '../../shared/index';
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

export default { pickForTest };
