// Model discovery on NGINX (models.discovery): `js_periodic llm_balancer.discoverModels` (one
// worker runs it, in the named location @llm_balancer_models) reads GET
// http://<address><models.path> of every current replica not in models.declared, at once, and
// keeps what each lists (shared/model-discovery.ts parses vLLM's base model and LoRA adapters,
// SGLang, llama.cpp) in the string zone llm_balancer_models:
//   "lists"    JSON {replica id: {bases, adapters} | null}: the last list of each (null: lists nothing)
//   "routing"  the same JSON when two replicas' lists differ, else "": what a pick reads. One
//              identical list everywhere (the common single-model fleet) routes nothing by model.
// A read that fails (refused, timed out) keeps the replica's last list; an answer that is not a
// model list (a 404, another JSON) means it lists nothing: it may then serve any model. Failed
// reads are not logged (the location's error_log is /dev/null: nginx would write a line per read of
// an unreachable replica): reaching a replica is what the health checks report.
// The pick uses the lists only where nginx reads the body anyway (the route path: an LLM-aware
// strategy, models.* configured, or split streaming timeouts): the js_set path never reads a body,
// and there each replica answers an unknown model itself.

import type { ServedModels } from '../../shared/model-discovery';
import { listsDiffer, parseModelList } from '../../shared/model-discovery';
import type { Replica } from '../../shared/types';
import { context } from './handlers';
import { describeError, fetchText, host, modelsDict } from './runtime';
import { MODELS_LISTS_KEY, MODELS_ROUTING_KEY } from './names';
import { scrapeTimeoutMs } from './metrics-scrape';

/** Sent as User-Agent: the replicas' access logs name who reads their model list every refresh_s. */
export const DISCOVERY_USER_AGENT = 'llm-balancer-model-discovery';

/** What one read came to: a list (or null: lists nothing), or why it failed. */
type Read = { ok: true; served: ServedModels | null } | { ok: false; problem: string };


async function readList(replica: Replica, path: string, timeoutMs: number): Promise<Read> {
  const answer = await fetchText('http://' + replica.address + path, timeoutMs, { 'User-Agent': DISCOVERY_USER_AGENT });
  if (typeof answer === 'string') {
    // Answered, but not 200: a server without a model list. Not a failure.
    if (answer.indexOf('answered HTTP') === 0) return { ok: true, served: null };
    return { ok: false, problem: answer };
  }
  let body: unknown = null;
  try {
    body = JSON.parse(answer.text);
  } catch (e) {
    return { ok: true, served: null };
  }
  return { ok: true, served: parseModelList(body) };
}

/** Whether the declared list names this replica (by id or address): then it is not asked. */
function declared(declaredReplicas: Array<{ replica: string }>, replica: Replica): boolean {
  for (let i = 0; i < declaredReplicas.length; i++) {
    if (declaredReplicas[i].replica === replica.id || declaredReplicas[i].replica === replica.address) return true;
  }
  return false;
}

/** js_periodic handler: one read of every current replica's model list, concurrently. Never throws. */
export async function discoverModels(_session?: unknown): Promise<void> {
  try {
    const ctx = context();
    const options = ctx.config.models;
    if (!options.discovery) return;
    const dict = modelsDict();
    const previousText = dict.get(MODELS_LISTS_KEY);
    const previous = (previousText ? JSON.parse(previousText) : {}) as Record<string, ServedModels | null>;
    const asked: Replica[] = [];
    const reads: Promise<Read>[] = [];
    const timeoutMs = scrapeTimeoutMs(options.timeout_s, options.refresh_s);
    for (let i = 0; i < ctx.replicas.length; i++) {
      if (declared(options.declared, ctx.replicas[i])) continue;
      asked.push(ctx.replicas[i]);
      reads.push(readList(ctx.replicas[i], options.path, timeoutMs));
    }
    const results = await Promise.all(reads);
    const lists: Record<string, ServedModels | null> = {};
    const each: Array<ServedModels | null> = [];
    for (let i = 0; i < asked.length; i++) {
      const result = results[i];
      const kept = previous[asked[i].id];
      const served = result.ok ? result.served : kept === undefined ? null : kept;
      lists[asked[i].id] = served;
      each.push(served);
    }
    const listsText = JSON.stringify(lists);
    dict.set(MODELS_LISTS_KEY, listsText);
    dict.set(MODELS_ROUTING_KEY, listsDiffer(each) ? listsText : '');
  } catch (e) {
    const ngx = host();
    ngx.log(ngx.ERR, 'llm-balancer: model discovery failed: ' + describeError(e));
  }
}
