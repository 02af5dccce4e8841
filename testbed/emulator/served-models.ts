// Which model names a replica answers to, as vLLM decides it: the base model's served names
// (vLLM's --served-model-name, several aliases of the ONE loaded model), then LoRA adapters.
// Pure: no I/O, no clock; server.ts asks it about each request and for GET /v1/models.
//
// Resolution of a request's `model` field (vLLM's OpenAIServing._check_model and
// _maybe_get_adapters, vllm/entrypoints/openai/engine/serving.py):
//   - absent or empty: the base model (vLLM accepts a request without `model`);
//   - a served base name: the base model;
//   - a registered adapter, or a name an adapter pattern matches: that adapter. A pattern stands
//     for vLLM's runtime LoRA resolvers (VLLM_ALLOW_RUNTIME_LORA_UPDATING with a resolver plugin,
//     e.g. a directory of adapters): the first request for a matching name registers the adapter,
//     as OpenAIServingModels.resolve_lora does;
//   - anything else: 404 with vLLM's body (see unknownModelError).
// Backwards compatibility: a replica NOT given a list of served models keeps today's behaviour and
// serves ANY name with its base model (the specs and benchmarks send `model: 'm'` and the like);
// only adapter names are told apart. Give `servedModels` to get vLLM's strict 404s.
//
// Answers name the model the way vLLM does (OpenAIServingModels.model_name): the adapter's name
// for a LoRA request, else the FIRST served base name, even when the request used another alias.

/** An adapter this replica can load, named exactly (vLLM's --lora-modules name=path). */
export interface NamedLoraAdapter {
  name: string;
  /** Its base model (vLLM's base_model_name); default: the first served base model. */
  parent?: string;
}

/** Every adapter whose name starts with `prefix` (a runtime LoRA resolver that finds them all). */
export interface LoraAdapterPattern {
  prefix: string;
  parent?: string;
}

export type LoraAdapterSource = NamedLoraAdapter | LoraAdapterPattern;

export interface ServedModelsOptions {
  /** Names of the base model (first = the name answers carry). Absent: any name is served. */
  servedModels?: readonly string[];
  /** The base name when servedModels is absent. */
  fallbackModelName: string;
  loraAdapters?: readonly LoraAdapterSource[];
}

export type ModelResolution =
  | { ok: true; adapter: null; answerModel: string }
  | { ok: true; adapter: string; parent: string; answerModel: string }
  | { ok: false; status: 404; body: VllmErrorBody };

/** vLLM's ErrorResponse (vllm/entrypoints/openai/engine/protocol.py): code is the HTTP status. */
export interface VllmErrorBody {
  error: { message: string; type: string; param: string | null; code: number };
}

/** One entry of GET /v1/models, with vLLM's ModelCard fields. */
export interface ModelCard {
  id: string;
  object: 'model';
  created: number;
  owned_by: 'vllm';
  root: string;
  parent: string | null;
  max_model_len: number | null;
  permission: ModelPermission[];
}

/** vLLM's ModelPermission with its defaults. */
export interface ModelPermission {
  id: string;
  object: 'model_permission';
  created: number;
  allow_create_engine: false;
  allow_sampling: true;
  allow_logprobs: true;
  allow_search_indices: false;
  allow_view: true;
  allow_fine_tuning: false;
  organization: '*';
  group: null;
  is_blocking: false;
}

export interface ServedModels {
  /** The base model's names; the first is what answers carry. */
  readonly baseNames: readonly string[];
  /** false: any unknown name is served by the base model (no model list was given). */
  readonly strict: boolean;
  /** Resolves a request's `model` field; registers an adapter a pattern matches. */
  resolve(model: unknown): ModelResolution;
  /** Adapters registered so far (named ones from the start, pattern matches once requested), in order. */
  registeredAdapters(): Array<{ name: string; parent: string }>;
  /** GET /v1/models data: base names, then registered adapters (vLLM's show_available_models). */
  cards(maxModelLen: number, createdSeconds: number): ModelCard[];
}

/**
 * The command line's adapter list: comma-separated `NAME` or `PREFIX*` (every name starting with
 * PREFIX), each optionally `@PARENT` (a served base name). E.g. `sql-lora,adapter-*@base-a`.
 */
export function parseLoraAdapterList(text: string): LoraAdapterSource[] | string {
  const sources: LoraAdapterSource[] = [];
  for (const item of text.split(',').map((part) => part.trim()).filter((part) => part !== '')) {
    const at = item.indexOf('@');
    const target = at < 0 ? item : item.slice(0, at);
    const parent = at < 0 ? undefined : item.slice(at + 1);
    if (target === '' || target === '*' || parent === '') return `'${item}' is not NAME, PREFIX* or either with @PARENT`;
    const source: LoraAdapterSource = target.endsWith('*') ? { prefix: target.slice(0, -1) } : { name: target };
    if (parent !== undefined) source.parent = parent;
    sources.push(source);
  }
  return sources.length > 0 ? sources : 'the adapter list is empty';
}

/** vLLM's 404 for a model it does not serve (OpenAIServing._check_model). */
export function unknownModelError(model: string): VllmErrorBody {
  return { error: { message: `The model \`${model}\` does not exist.`, type: 'NotFoundError', param: 'model', code: 404 } };
}

/** Where an emulated adapter "lives": vLLM lists an adapter's local path as its root. */
export function adapterRoot(name: string): string {
  return `/adapters/${name}`;
}

function permission(createdSeconds: number, index: number): ModelPermission {
  return {
    // vLLM draws a random id per listing; a fixed one keeps the emulator's answers reproducible.
    id: `modelperm-emulated-${index}`,
    object: 'model_permission',
    created: createdSeconds,
    allow_create_engine: false,
    allow_sampling: true,
    allow_logprobs: true,
    allow_search_indices: false,
    allow_view: true,
    allow_fine_tuning: false,
    organization: '*',
    group: null,
    is_blocking: false,
  };
}

export function createServedModels(options: ServedModelsOptions): ServedModels {
  const strict = options.servedModels !== undefined;
  const baseNames = strict ? options.servedModels!.slice() : [options.fallbackModelName];
  if (baseNames.length === 0) throw new Error('servedModels must name at least one model');
  for (const name of baseNames) if (typeof name !== 'string' || name === '') throw new Error('served model names must be non-empty strings');
  const sources = options.loraAdapters ?? [];
  const parentOf = (source: LoraAdapterSource): string => {
    const parent = source.parent ?? baseNames[0];
    if (!baseNames.includes(parent)) throw new Error(`adapter parent '${parent}' is not a served model (${baseNames.join(', ')})`);
    return parent;
  };
  const patterns: Array<{ prefix: string; parent: string }> = [];
  // Insertion order is listing order: named adapters first (registered at start, as --lora-modules
  // are), then pattern matches in the order they were first requested.
  const registered = new Map<string, string>();
  for (const source of sources) {
    if ('name' in source) {
      if (source.name === '' || baseNames.includes(source.name)) throw new Error(`adapter name '${source.name}' is empty or a base model's name`);
      registered.set(source.name, parentOf(source));
    } else {
      if (source.prefix === '') throw new Error('an adapter pattern needs a non-empty prefix');
      patterns.push({ prefix: source.prefix, parent: parentOf(source) });
    }
  }

  return {
    baseNames,
    strict,
    resolve(model) {
      const base = { ok: true as const, adapter: null, answerModel: baseNames[0] };
      if (typeof model !== 'string' || model === '' || baseNames.includes(model)) return base;
      const known = registered.get(model);
      if (known !== undefined) return { ok: true, adapter: model, parent: known, answerModel: model };
      for (const pattern of patterns) {
        if (model.startsWith(pattern.prefix)) {
          registered.set(model, pattern.parent);
          return { ok: true, adapter: model, parent: pattern.parent, answerModel: model };
        }
      }
      return strict ? { ok: false, status: 404, body: unknownModelError(model) } : base;
    },
    registeredAdapters: () => Array.from(registered, ([name, parent]) => ({ name, parent })),
    cards(maxModelLen, createdSeconds) {
      const cards: ModelCard[] = baseNames.map((name) => ({
        id: name,
        object: 'model',
        created: createdSeconds,
        owned_by: 'vllm',
        // vLLM's root is the --model path, the same for every served alias of it; the emulator has
        // no weights, so the first served name stands for that path.
        root: baseNames[0],
        parent: null,
        max_model_len: maxModelLen,
        permission: [],
      }));
      for (const [name, parent] of registered) {
        // vLLM leaves max_model_len unset (null) on adapter cards.
        cards.push({ id: name, object: 'model', created: createdSeconds, owned_by: 'vllm', root: adapterRoot(name), parent, max_model_len: null, permission: [] });
      }
      cards.forEach((card, index) => card.permission.push(permission(createdSeconds, index)));
      return cards;
    },
  };
}
