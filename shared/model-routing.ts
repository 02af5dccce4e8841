// Which replicas may serve a request's model, and how well placed each is for a LoRA adapter.
// Pure: the adapters hand in what each replica serves (declared in the config and/or discovered
// from the replica: model-discovery.ts) and the request's model name; nothing here does I/O.
//
// Serving a model. A replica serves a name when it is one of its base models or a LoRA adapter it
// lists. With dynamic loading allowed (vLLM --enable-lora with runtime loading or a resolver), a
// replica also can-load an adapter whose base model it serves: the adapter's base is learnt from
// any replica that lists it (or the config); an adapter no list names yet may go anywhere (its
// resolver will fetch it). A replica whose list is unknown (nothing declared,
// discovery off or not answered yet) is kept as a candidate for every model: it may serve it, and
// dropping it would turn "not learnt yet" into "not found". The model is not found only when every
// replica's list is known and none serves (or, with dynamic loading, can load) it: the gateway then
// answers 404 model_not_found itself instead of letting one replica say so.
//
// Adapter affinity (the scores of llm-d's LoRA-affinity scorer): an adapter in use on a replica
// (vLLM's running_lora_adapters: its weights sit in a GPU slot) 1.0; a free GPU slot 0.8 (loading it
// evicts nothing); the adapter among the waiting requests' (a load is under way or queued) 0.6; every
// slot taken by other adapters 0 (loading it there evicts one, the eviction storm users of small
// --max-loras report). A replica that reports no slots (not vLLM, or metrics stale) scores as a free
// slot: nothing says it would evict. adapterFilter keeps the best-scored replicas among those under a
// bounded-load ceiling (the one prefix-affinity uses), so a hot adapter spreads to the next best
// replicas once its own are loaded past the bound, instead of piling onto them.

import { adapterTag } from './adapter-slots';
import { loadCeiling } from './strategies/consistent-hash';
import type { LoraSlots, ServedModels } from './model-discovery';
import type { RequestView } from './types';

/** What one replica serves, as far as the gateway knows. */
export interface ReplicaModels {
  /** Its base models and adapters (declared and/or discovered); null when unknown. */
  served: ServedModels | null;
  /** Its GPU adapter slots (vLLM /metrics); null when not reported. */
  lora: LoraSlots | null;
}

/** The outcome of filtering replicas by model. */
export type ModelCandidates =
  /** The request names no model (and no default applies): every replica. */
  | { kind: 'any' }
  /** The ids (in the order given) that serve, can load, or may serve the model. */
  | { kind: 'only'; ids: string[] }
  /** Every replica's list is known and none serves it. */
  | { kind: 'not-found' };

export interface ModelAlias {
  /** The public name clients send. */
  name: string;
  /** The served name it stands for. */
  model: string;
}

/**
 * The body's `model` (any OpenAI request: chat, completion, embeddings...), or null when the body
 * is not an object or names none. Read on its own: a body without a prompt still names its model.
 */
export function requestedModel(body: unknown): string | null {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return null;
  const model = (body as { model?: unknown }).model;
  return typeof model === 'string' && model !== '' ? model : null;
}

/**
 * The served model of a request body: its `model` through the aliases, or the default when the
 * body (a JSON object) names none. null when the body is not an object (unread, too large, not
 * JSON): the model is then unknown, and neither the default nor a filter may be assumed.
 */
export function bodyModel(body: unknown, aliases: ModelAlias[], defaultModel: string | null): string | null {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return null;
  return resolveModel(requestedModel(body), aliases, defaultModel);
}

/**
 * The admission pool of a request (both gateways' waiting rooms): the served model it routes to
 * (the adapter's resolved `view.model`, else the body's through aliases and the default, as the
 * pick resolves it) when requests are routed by model — each model's replicas saturate on their
 * own, and one model's queue must not hold another's — else the one pool ''.
 */
export function admissionPool(aliases: ModelAlias[], defaultModel: string | null, view: RequestView, routed: boolean): string {
  if (!routed) return '';
  const model = view.model !== undefined ? view.model : bodyModel(view.body, aliases, defaultModel);
  return model === null || model === undefined ? '' : model;
}

/**
 * The prompt key a routed request's prefix chain is built from: the model first, so the blocks of
 * one prompt sent to two models (or two adapters of one base) never share a table entry.
 */
export function modelPromptKey(model: string, promptKey: string): string {
  return model + '\n' + promptKey;
}

/** The served name a request asks for: its body's model through the aliases, else the default. */
export function resolveModel(requested: string | null, aliases: ModelAlias[], defaultModel: string | null): string | null {
  if (requested === null || requested === '') return defaultModel;
  for (let i = 0; i < aliases.length; i++) if (aliases[i].name === requested) return aliases[i].model;
  return requested;
}

function isOwn(record: Record<string, string>, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(record, key);
}

/** The base model of adapter `model` as any replica lists it; null when none lists it as an adapter. */
export function adapterBase(model: string, replicas: Array<ReplicaModels | null>): string | null {
  for (let i = 0; i < replicas.length; i++) {
    const served = replicas[i] === null ? null : (replicas[i] as ReplicaModels).served;
    if (served !== null && isOwn(served.adapters, model)) return served.adapters[model];
  }
  return null;
}

/** Whether a replica serves `model` (a base model or an adapter it lists). */
export function servesModel(served: ServedModels, model: string): boolean {
  return served.bases.indexOf(model) >= 0 || isOwn(served.adapters, model);
}

/**
 * The candidates for `model` among `ids` (models[i] belongs to ids[i]). `base` is the adapter's
 * base model when `model` is an adapter (adapterBase, or the config), consulted only with dynamic loading.
 */
export function replicasForModel(ids: string[], models: Array<ReplicaModels | null>, model: string | null, dynamicLoading: boolean, base: string | null): ModelCandidates {
  if (model === null) return { kind: 'any' };
  const kept: string[] = [];
  let allKnown = true;
  for (let i = 0; i < ids.length; i++) {
    const served = models[i] === null ? null : (models[i] as ReplicaModels).served;
    if (served === null) {
      allKnown = false;
      kept.push(ids[i]);
    } else if (servesModel(served, model) || (dynamicLoading && base !== null && served.bases.indexOf(base) >= 0)) {
      kept.push(ids[i]);
    }
  }
  // Loaded on demand: a name no list has yet (an adapter its resolver will fetch) is not unknown.
  if (kept.length === 0 && allKnown) return dynamicLoading ? { kind: 'any' } : { kind: 'not-found' };
  return { kind: 'only', ids: kept };
}

/** Affinity scores, in llm-d's order: loaded > free slot > loading > full. */
export const ADAPTER_LOADED = 1;
export const ADAPTER_FREE_SLOT = 0.8;
export const ADAPTER_LOADING = 0.6;
/** Slots full, but the adapter loading it would evict is loaded on another replica too (adapterScores). */
export const ADAPTER_EVICTS_COPY = 0.6;
export const ADAPTER_SLOTS_FULL = 0;

/**
 * How well a replica is placed to run `adapter` now (see the header). `sent`: the tags of the
 * adapters the gateway last sent it (adapter-slots.ts), null when not tracked: an adapter sent there
 * recently counts as loaded, and those adapters take slots as the running ones do.
 */
export function adapterAffinity(lora: LoraSlots | null, adapter: string, sent: number[] | null): number {
  if (lora === null) return ADAPTER_FREE_SLOT;
  const tag = adapterTag(adapter);
  if (lora.running.indexOf(adapter) >= 0 || (sent !== null && sent.indexOf(tag) >= 0)) return ADAPTER_LOADED;
  if (lora.maxLoras === null || occupiedSlots(lora, sent) < lora.maxLoras) return ADAPTER_FREE_SLOT;
  if (lora.waiting.indexOf(adapter) >= 0) return ADAPTER_LOADING;
  return ADAPTER_SLOTS_FULL;
}

/** Distinct adapters running on the replica or sent to it recently. */
function occupiedSlots(lora: LoraSlots, sent: number[] | null): number {
  const tags: number[] = sent === null ? [] : sent.slice(0);
  for (let i = 0; i < lora.running.length; i++) {
    const tag = adapterTag(lora.running[i]);
    if (tags.indexOf(tag) < 0) tags.push(tag);
  }
  return tags.length;
}

/**
 * Each candidate's affinity to `adapter` (adapterAffinity), where a replica whose slots are all
 * taken scores ADAPTER_EVICTS_COPY instead of 0 when the adapter it would evict (the least recently
 * sent there) is also loaded on another candidate: evicting a second copy costs no reload later.
 * Measured offline (the core in front of the emulator's engines, 16 and 24 Zipf adapters over 4
 * replicas of 4 slots): ~0.8x the adapter loads of scoring every full replica 0.
 */
export function adapterScores(candidates: AdapterCandidate[], adapter: string): number[] {
  const scores: number[] = [];
  for (let i = 0; i < candidates.length; i++) {
    const c = candidates[i];
    let score = adapterAffinity(c.lora, adapter, c.sent);
    if (score === ADAPTER_SLOTS_FULL && c.sent !== null && c.sent.length > 0 && loadedElsewhere(candidates, i, c.sent[c.sent.length - 1])) score = ADAPTER_EVICTS_COPY;
    scores.push(score);
  }
  return scores;
}

/** Whether a candidate other than `except` runs or was sent the adapter of `tag`. */
function loadedElsewhere(candidates: AdapterCandidate[], except: number, tag: number): boolean {
  for (let j = 0; j < candidates.length; j++) {
    if (j === except) continue;
    const other = candidates[j];
    if (other.sent !== null && other.sent.indexOf(tag) >= 0) return true;
    if (other.lora !== null) for (let k = 0; k < other.lora.running.length; k++) if (adapterTag(other.lora.running[k]) === tag) return true;
  }
  return false;
}

/** A candidate as adapterFilter sees it. */
export interface AdapterCandidate {
  inFlight: number;
  weight: number;
  lora: LoraSlots | null;
  /** The gateway's record of the adapters it last sent the replica (adapter-slots.ts); null when not tracked. */
  sent: number[] | null;
}

/** Whether each candidate is under the bounded-load ceiling (loadCeiling); balanceFactor 0: no bound. */
export function underLoadBound(candidates: Array<{ inFlight: number; weight: number }>, balanceFactor: number): boolean[] {
  let total = 0;
  let totalWeight = 0;
  for (let i = 0; i < candidates.length; i++) {
    total += candidates[i].inFlight;
    totalWeight += candidates[i].weight;
  }
  const under: boolean[] = [];
  for (let i = 0; i < candidates.length; i++) {
    const c = candidates[i];
    under.push(balanceFactor <= 0 || totalWeight <= 0 || c.inFlight + 1 <= loadCeiling(balanceFactor, total, totalWeight, c.weight));
  }
  return under;
}

/**
 * The indexes of the candidates to keep for `adapter`: those with the best affinity among the ones
 * under the bounded-load ceiling (underLoadBound); when none is under it, the best affinity among
 * all (a full fleet still serves). Never empty for a non-empty input.
 */
export function adapterFilter(candidates: AdapterCandidate[], adapter: string, balanceFactor: number): number[] {
  const under = underLoadBound(candidates, balanceFactor);
  const anyUnder = under.indexOf(true) >= 0;
  const scores = adapterScores(candidates, adapter);
  let best = -1;
  for (let i = 0; i < candidates.length; i++) if ((under[i] || !anyUnder) && scores[i] > best) best = scores[i];
  const kept: number[] = [];
  for (let i = 0; i < candidates.length; i++) if ((under[i] || !anyUnder) && scores[i] === best) kept.push(i);
  return kept;
}

/** One entry of the gateway's own GET /v1/models (OpenAI's Model object; `parent` as vLLM writes it). */
export interface ModelCard {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  /** The base model of a LoRA adapter, or the served name an alias stands for; null for a base model. */
  parent: string | null;
}

/**
 * The gateway's answer to GET /v1/models: every name the available replicas serve (base models,
 * then LoRA adapters with their parent), then the aliases; each once, in first-seen order. null
 * when no replica's list is known (the gateway then lets a replica answer).
 */
export function modelList(lists: Array<ServedModels | null>, aliases: ModelAlias[]): { object: 'list'; data: ModelCard[] } | null {
  const data: ModelCard[] = [];
  const seen = Object.create(null) as Record<string, boolean>;
  let known = false;
  const add = (id: string, parent: string | null) => {
    if (seen[id]) return;
    seen[id] = true;
    data.push({ id: id, object: 'model', created: 0, owned_by: 'llm-balancer', parent: parent });
  };
  for (let i = 0; i < lists.length; i++) {
    const served = lists[i];
    if (served === null) continue;
    known = true;
    for (let j = 0; j < served.bases.length; j++) add(served.bases[j], null);
  }
  for (let i = 0; i < lists.length; i++) {
    const served = lists[i];
    if (served === null) continue;
    const names = Object.keys(served.adapters);
    for (let j = 0; j < names.length; j++) add(names[j], served.adapters[names[j]]);
  }
  if (!known) return null;
  for (let i = 0; i < aliases.length; i++) add(aliases[i].name, aliases[i].model);
  return { object: 'list', data: data };
}
