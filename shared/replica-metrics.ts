// Reads the load signals a balancer uses out of the Prometheus text exposition (format 0.0.4) that
// a model server serves on GET /metrics. The adapters fetch the text on an interval; this module
// only parses it: pure, one pass over the text, O(length), and it never throws (any input that is
// not a string, and any line it cannot read, yields nulls, never an exception).
//
// Servers and names (metricNames() below), from their production-metrics docs:
// - vLLM (V1 engine): gauges vllm:num_requests_running, vllm:num_requests_waiting,
//   vllm:kv_cache_usage_perc; counters vllm:prefix_cache_queries / vllm:prefix_cache_hits, which
//   prometheus_client exposes as vllm:prefix_cache_queries_total / vllm:prefix_cache_hits_total.
//   Older V1 releases (0.8.x) name the last three vllm:gpu_cache_usage_perc,
//   vllm:gpu_prefix_cache_queries_total, vllm:gpu_prefix_cache_hits_total; during the deprecation
//   a server can expose both spellings (the old one behind --show-hidden-metrics-for-version), so
//   the current name wins whenever it has a usable series (counting both would double them).
// - SGLang (--enable-metrics): gauges sglang:num_running_reqs, sglang:num_queue_reqs and
//   sglang:token_usage (tokens held / token capacity, already a 0..1 fraction). SGLang has no
//   prefix-cache query/hit counters under these names: prefixQueries/prefixHits stay null.
// - llama.cpp's llama-server (--metrics): gauges llamacpp:requests_processing (slots busy) and
//   llamacpp:requests_deferred (requests waiting for a free slot); counters
//   llamacpp:prompt_tokens_total (prompt tokens COMPUTED, i.e. cached ones excluded) and
//   llamacpp:prompt_tokens_cached_total (prompt tokens reused from a slot's cache; recent builds).
//   Tokens looked up are then computed + cached, so prefixQueries is their sum and prefixHits the
//   cached ones; a server without the cached counter gives no hit rate (both null). KV usage:
//   llamacpp:kv_cache_usage_ratio, which older builds exported and current ones (0.7.0, checked
//   against the real server in spec/llama-server.spec.ts) no longer do.
// - Hugging Face TGI: gauges tgi_batch_current_size (running) and tgi_queue_size (waiting), from
//   its metrics reference; it exports no KV usage and no prefix-cache counters.
// Only the listed names are read: `_total`-less counter spellings, `_created` series and every
// other family are skipped.
//
// Several series of one metric: one server process can expose a metric once per label set, e.g.
// vLLM V1 with data parallelism writes one series per engine (engine="0", engine="1"), each engine
// with its own batch, queue and KV cache. running, waiting and the prefix counters are counts of
// things, and the replica's total is the SUM over its engines. kvUsage is a fraction of ONE
// engine's KV pool: two engines at 0.6 do not make 1.2. The MAX is taken: the fullest engine is the
// one that preempts or queues first, and an average would hide it. A caveat for SGLang: by default
// only the first attention-TP rank's scheduler exports, so nothing is counted twice; a server
// started with --enable-metrics-for-all-schedulers writes the same batch once per TP rank, and the
// sum over-counts by the TP size.
//
// Lines: `name{labels} value [timestamp]` or `name value`. `#` lines (HELP, TYPE, comments) and blank
// lines are skipped. Label values are scanned quote-aware, with backslash escapes, so a value
// holding spaces, commas, `}` or `\"` cannot end the label block early. Values are decimal floats
// (scientific notation included); NaN, +Inf, -Inf and anything unparsable make the series ignored,
// and so do negative counts (a count below zero is not a measurement). kvUsage is clamped to
// [0, 1]. Whatever follows the value (a timestamp, an OpenMetrics exemplar) is ignored.
//
// `server` says whose names were read: 'vllm' if any of the vLLM names above has a well-formed
// sample line (whatever its value), else 'sglang' for any SGLang one, else 'llamacpp', else 'tgi',
// else 'unknown'. Fields are then read from that family only, so an odd text mixing two never blends
// a vLLM count with an SGLang one.

/** The load of one replica as its /metrics text reports it; null where the text has no usable series. */
export interface ReplicaLoad {
  /** Requests in the running batch (vLLM vllm:num_requests_running; SGLang sglang:num_running_reqs; llama.cpp llamacpp:requests_processing; TGI tgi_batch_current_size). null when the text has no such metric. */
  running: number | null;
  /** Requests queued (vLLM vllm:num_requests_waiting; SGLang sglang:num_queue_reqs; llama.cpp llamacpp:requests_deferred; TGI tgi_queue_size). */
  waiting: number | null;
  /** KV-cache usage as a fraction 0..1 (vLLM vllm:kv_cache_usage_perc, or the older vllm:gpu_cache_usage_perc; SGLang sglang:token_usage). */
  kvUsage: number | null;
  /** Prefix-cache counters when present, in tokens (vLLM vllm:prefix_cache_queries_total / vllm:prefix_cache_hits_total; older vllm:gpu_prefix_cache_queries_total / _hits_total; llama.cpp computed + cached prompt tokens / cached ones). */
  prefixQueries: number | null;
  prefixHits: number | null;
  /** Which server family the names came from. */
  server: 'vllm' | 'sglang' | 'llamacpp' | 'tgi' | 'unknown';
}

/** The metric names read for each field of ReplicaLoad, in order of preference. */
export interface MetricNames {
  /** Gauges, summed over series. */
  readonly running: readonly string[];
  /** Gauges, summed over series. */
  readonly waiting: readonly string[];
  /** Gauges (fractions 0..1), maximum over series, clamped to [0, 1]. vLLM's current name before its deprecated one. */
  readonly kvUsage: readonly string[];
  /** Counters (tokens looked up in the prefix cache), summed over series. Current vLLM name before the deprecated one. */
  readonly prefixQueries: readonly string[];
  /** Counters (of those tokens, the ones found), summed over series. Current vLLM name before the deprecated one. */
  readonly prefixHits: readonly string[];
}

/**
 * The names read, per field, in order of preference. A function, not a module-level constant:
 * njs evaluates the bundle's top level for every request, and these arrays cost every proxied
 * request, scraped or not. Each call returns a new table.
 */
export function metricNames(): MetricNames {
  return {
    running: ['vllm:num_requests_running', 'sglang:num_running_reqs', 'llamacpp:requests_processing', 'tgi_batch_current_size'],
    waiting: ['vllm:num_requests_waiting', 'sglang:num_queue_reqs', 'llamacpp:requests_deferred', 'tgi_queue_size'],
    kvUsage: ['vllm:kv_cache_usage_perc', 'vllm:gpu_cache_usage_perc', 'sglang:token_usage', 'llamacpp:kv_cache_usage_ratio'],
    // llama.cpp's counts the prompt tokens computed, not looked up: the cached ones are added below.
    prefixQueries: ['vllm:prefix_cache_queries_total', 'vllm:gpu_prefix_cache_queries_total', 'llamacpp:prompt_tokens_total'],
    prefixHits: ['vllm:prefix_cache_hits_total', 'vllm:gpu_prefix_cache_hits_total', 'llamacpp:prompt_tokens_cached_total'],
  };
}

type Field = 'running' | 'waiting' | 'kvUsage' | 'prefixQueries' | 'prefixHits';
type Family = 'vllm' | 'sglang' | 'llamacpp' | 'tgi';

/** The server family a metric name belongs to, by its prefix (TGI's names use `_`, the others `:`). */
function familyOf(name: string): Family {
  if (name.indexOf('vllm:') === 0) return 'vllm';
  if (name.indexOf('sglang:') === 0) return 'sglang';
  if (name.indexOf('llamacpp:') === 0) return 'llamacpp';
  return 'tgi';
}

function fields(): Field[] {
  return ['running', 'waiting', 'kvUsage', 'prefixQueries', 'prefixHits'];
}

interface NameEntry {
  field: Field;
  /** Position in metricNames()[field]: lower is preferred. */
  rank: number;
  family: Family;
}

// Built on first use, not at module level: njs evaluates a module's top level for EVERY request
// (the NGINX module imports this file), and an index and a regular expression built there cost
// every proxied request, scraped or not (measured in bench:gateway).
let nameIndex: Record<string, NameEntry | undefined> | null = null;
let decimal: RegExp | null = null;

/** Metric name -> what it feeds. A null-prototype record, so names like `constructor` find nothing. */
function nameIndexOf(): Record<string, NameEntry | undefined> {
  if (nameIndex !== null) return nameIndex;
  const index = Object.create(null) as Record<string, NameEntry | undefined>;
  const table = metricNames();
  const all = fields();
  for (let f = 0; f < all.length; f++) {
    const names = table[all[f]];
    for (let r = 0; r < names.length; r++) {
      index[names[r]] = { field: all[f], rank: r, family: familyOf(names[r]) };
    }
  }
  nameIndex = index;
  return index;
}

/** A decimal float as the exposition writes it: 3, 3.0, .5, -1.5e-3, 1.2345e+06. NaN and ±Inf do not match (they are ignored anyway). */
function decimalPattern(): RegExp {
  if (decimal === null) decimal = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
  return decimal;
}

function isBlank(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\r';
}

function skipBlanks(text: string, i: number, end: number): number {
  while (i < end && isBlank(text.charAt(i))) i++;
  return i;
}

/** From just after `{`: the index just after the matching `}`, or -1 if the line ends first. */
function skipLabels(text: string, i: number, end: number): number {
  let quoted = false;
  while (i < end) {
    const c = text.charAt(i);
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') {
      quoted = true;
    } else if (c === '}') {
      return i + 1;
    }
    i++;
  }
  return -1;
}

function emptyTotals(table: MetricNames, all: Field[]): Record<Field, (number | null)[]> {
  const totals = Object.create(null) as Record<Field, (number | null)[]>;
  for (let f = 0; f < all.length; f++) {
    const slots: (number | null)[] = [];
    for (let r = 0; r < table[all[f]].length; r++) slots.push(null);
    totals[all[f]] = slots;
  }
  return totals;
}

/** Parses a /metrics text into the replica's load. Never throws. */
export function parseReplicaMetrics(text: string): ReplicaLoad {
  const load: ReplicaLoad = { running: null, waiting: null, kvUsage: null, prefixQueries: null, prefixHits: null, server: 'unknown' };
  if (typeof text !== 'string') return load;

  const table = metricNames();
  const all = fields();
  const totals = emptyTotals(table, all);
  const index = nameIndexOf();
  const pattern = decimalPattern();
  let sawVllm = false;
  let sawSglang = false;
  let sawLlamacpp = false;
  let sawTgi = false;
  const length = text.length;
  let lineStart = 0;
  while (lineStart < length) {
    let end = text.indexOf('\n', lineStart);
    if (end < 0) end = length;
    let i = skipBlanks(text, lineStart, end);
    lineStart = end + 1;
    if (i >= end || text.charAt(i) === '#') continue;
    const nameStart = i;
    while (i < end && text.charAt(i) !== '{' && !isBlank(text.charAt(i))) i++;
    const entry = index[text.slice(nameStart, i)];
    if (entry === undefined) continue;

    i = skipBlanks(text, i, end);
    if (i < end && text.charAt(i) === '{') {
      i = skipLabels(text, i + 1, end);
      if (i < 0) continue;
      i = skipBlanks(text, i, end);
    }
    const valueStart = i;
    while (i < end && !isBlank(text.charAt(i))) i++;
    if (i === valueStart) continue;
    if (entry.family === 'vllm') sawVllm = true;
    else if (entry.family === 'sglang') sawSglang = true;
    else if (entry.family === 'llamacpp') sawLlamacpp = true;
    else sawTgi = true;

    const valueText = text.slice(valueStart, i);
    if (!pattern.test(valueText)) continue;
    let value = Number(valueText);
    if (!isFinite(value)) continue;
    if (value === 0) value = 0; // -0 -> 0
    const isFraction = entry.field === 'kvUsage';
    if (value < 0 && !isFraction) continue;

    const slots = totals[entry.field];
    const previous = slots[entry.rank];
    if (previous === null) slots[entry.rank] = value;
    else slots[entry.rank] = isFraction ? Math.max(previous, value) : previous + value;
  }

  const family: Family | null = sawVllm ? 'vllm' : sawSglang ? 'sglang' : sawLlamacpp ? 'llamacpp' : sawTgi ? 'tgi' : null;
  if (family === null) return load;
  load.server = family;
  for (let f = 0; f < all.length; f++) {
    const field = all[f];
    const names = table[field];
    const slots = totals[field];
    for (let r = 0; r < names.length; r++) {
      const value = slots[r];
      if (value === null || familyOf(names[r]) !== family) continue;
      load[field] = field === 'kvUsage' ? Math.min(1, Math.max(0, value)) : value;
      break;
    }
  }
  if (family === 'llamacpp') {
    // Looked up = computed + reused. Without the reused count there is no hit rate to tell.
    if (load.prefixQueries !== null && load.prefixHits !== null) load.prefixQueries += load.prefixHits;
    else load.prefixQueries = load.prefixHits = null;
  }
  return load;
}
