// What a replica serves, read from the replica itself: the model list of GET /v1/models and vLLM's
// `vllm:lora_requests_info` gauge on /metrics. The adapters fetch both on an interval; this module
// only parses them: pure, never throws (anything it cannot read yields null or is skipped).
//
// GET /v1/models (OpenAI's list format: {"object": "list", "data": [{"id": ...}, ...]}):
// - vLLM lists the served model (and its --served-model-name aliases) with `root` (the weights'
//   path or repo) and `parent: null`, then every LoRA adapter it has registered (--lora-modules,
//   or loaded at runtime through /v1/load_lora_adapter or a resolver) with `parent` = the base
//   model's served name. A listed adapter is REGISTERED, not necessarily in a GPU slot: which
//   adapters occupy the slots is what `vllm:lora_requests_info` tells.
// - SGLang lists its served model name(s) the same way (`owned_by: "sglang"`); LoRA adapters given
//   with --lora-paths appear with `parent` on releases that list them, without it on older ones
//   (then they are simply served names).
// - llama.cpp's llama-server answers {"object": "list", "data": [{"id": <alias or file>}], "models": [...]}:
//   `data` is read, the extra `models` array (its own format) is ignored.
// An entry without a non-empty string `id` is skipped; duplicate ids count once. A `parent` that is
// not a non-empty string (null, missing) makes the entry a base model.
//
// vllm:lora_requests_info (a gauge; vLLM's metrics docs and the Gateway API Inference Extension's
// model-server protocol): labels `running_lora_adapters` and `waiting_lora_adapters` (comma-separated
// adapter names of the requests running / waiting; some releases write `name:count` items) and
// `max_lora` (GPU adapter slots; `max_loras` is accepted too). Its VALUE is the time of the update:
// prometheus_client keeps every label set ever written, so the text can hold several series, and
// only the one with the greatest value is current (the inference extension reads it the same way).

/** A replica's served names as its /v1/models lists them. */
export interface ServedModels {
  /** Base models (entries without a parent), in listed order. */
  bases: string[];
  /** LoRA adapter name -> its base model's served name. */
  adapters: Record<string, string>;
}

/** vLLM's current LoRA slot use, from the newest vllm:lora_requests_info series. */
export interface LoraSlots {
  /** Adapters of the running requests (each occupies a GPU slot). */
  running: string[];
  /** Adapters of the waiting requests (queued, possibly for a slot). */
  waiting: string[];
  /** GPU adapter slots (vLLM --max-loras); null when the label is missing or not a number. */
  maxLoras: number | null;
}

function nonEmptyString(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null;
}

/** The served models of a parsed /v1/models answer; null when it is not an OpenAI model list. */
export function parseModelList(body: unknown): ServedModels | null {
  if (body === null || typeof body !== 'object') return null;
  const data = (body as { data?: unknown }).data;
  if (!Array.isArray(data)) return null;
  const bases: string[] = [];
  const adapters = Object.create(null) as Record<string, string>;
  const seen = Object.create(null) as Record<string, boolean>;
  for (let i = 0; i < data.length; i++) {
    const entry = data[i];
    if (entry === null || typeof entry !== 'object') continue;
    const id = nonEmptyString((entry as { id?: unknown }).id);
    if (id === null || seen[id]) continue;
    seen[id] = true;
    const parent = nonEmptyString((entry as { parent?: unknown }).parent);
    if (parent !== null && parent !== id) adapters[id] = parent;
    else bases.push(id);
  }
  return { bases: bases, adapters: adapters };
}

/** A stable text of a list (order-free), to tell a changed list from a repeat and two replicas' lists apart; '' for none. */
export function listSignature(served: ServedModels | null): string {
  if (served === null) return '';
  const adapters = Object.keys(served.adapters).sort();
  const parts: string[] = [];
  for (let i = 0; i < adapters.length; i++) parts.push(adapters[i] + '<' + served.adapters[adapters[i]]);
  return JSON.stringify([served.bases.slice().sort(), parts]);
}

/** Whether any two of the lists differ (then requests must be routed by model; one list everywhere routes nothing). */
export function listsDiffer(lists: Array<ServedModels | null>): boolean {
  for (let i = 1; i < lists.length; i++) if (listSignature(lists[i]) !== listSignature(lists[0])) return true;
  return false;
}

/** The adapter names of one label value: comma-separated, trimmed, a `:count` suffix dropped. */
function adapterNames(value: string): string[] {
  const names: string[] = [];
  const parts = value.split(',');
  for (let i = 0; i < parts.length; i++) {
    let name = parts[i].trim();
    const colon = name.lastIndexOf(':');
    if (colon > 0 && /^\d+$/.test(name.slice(colon + 1))) name = name.slice(0, colon);
    if (name !== '' && names.indexOf(name) < 0) names.push(name);
  }
  return names;
}

/** Label name -> unescaped value of a `{...}` block (the text between the braces). */
function parseLabels(block: string): Record<string, string> {
  const labels = Object.create(null) as Record<string, string>;
  let i = 0;
  const n = block.length;
  while (i < n) {
    while (i < n && (block.charAt(i) === ',' || block.charAt(i) === ' ')) i++;
    const eq = block.indexOf('=', i);
    if (eq < 0) break;
    const name = block.slice(i, eq).trim();
    i = eq + 1;
    if (block.charAt(i) !== '"') break;
    i++;
    let value = '';
    while (i < n && block.charAt(i) !== '"') {
      const c = block.charAt(i);
      if (c === '\\' && i + 1 < n) {
        const next = block.charAt(i + 1);
        value += next === 'n' ? '\n' : next;
        i += 2;
      } else {
        value += c;
        i++;
      }
    }
    i++;
    labels[name] = value;
  }
  return labels;
}

/** The end of a label block starting just after `{` (quote-aware), or -1. */
function closingBrace(line: string, from: number): number {
  let quoted = false;
  for (let i = from; i < line.length; i++) {
    const c = line.charAt(i);
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === '}') return i;
  }
  return -1;
}

const LORA_INFO = 'vllm:lora_requests_info';

/** The newest vllm:lora_requests_info series of a /metrics text; null when there is none. */
export function parseLoraSlots(text: string): LoraSlots | null {
  if (typeof text !== 'string' || text.indexOf(LORA_INFO) < 0) return null;
  let best: LoraSlots | null = null;
  let bestTime = -Infinity;
  const lines = text.split('\n');
  for (let l = 0; l < lines.length; l++) {
    const line = lines[l].trim();
    if (line.indexOf(LORA_INFO + '{') !== 0) continue;
    const open = LORA_INFO.length;
    const close = closingBrace(line, open + 1);
    if (close < 0) continue;
    const valueText = line.slice(close + 1).trim().split(/\s+/)[0];
    const time = Number(valueText);
    if (valueText === '' || !isFinite(time) || time < bestTime) continue;
    const labels = parseLabels(line.slice(open + 1, close));
    const slotsText = labels.max_lora !== undefined ? labels.max_lora : labels.max_loras;
    const slots = slotsText !== undefined && /^\d+$/.test(slotsText.trim()) ? Number(slotsText.trim()) : null;
    bestTime = time;
    best = {
      running: adapterNames(labels.running_lora_adapters !== undefined ? labels.running_lora_adapters : ''),
      waiting: adapterNames(labels.waiting_lora_adapters !== undefined ? labels.waiting_lora_adapters : ''),
      maxLoras: slots,
    };
  }
  return best;
}
