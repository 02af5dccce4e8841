// What bench:gateway runs (bench/gateway.js starts nginx and drives wrk): the nginx targets, the
// variants with what each one configures, which of them a run selects, and the interleaved order
// of the runs. Pure: spec/bench-gateway.spec.ts checks them.

export type Generation = 'trixie' | 'forky';
export type Engine = 'njs' | 'qjs';

/** An nginx generation (build/fetch-nginx.js) and the engine the njs module runs on there. */
export interface GatewayTarget {
  name: string;
  generation: Generation;
  engine: Engine;
}

/**
 * Every target, in the order the tables come: Debian stable's nginx 1.26 + njs 0.8.9 (njs engine
 * only), then Debian testing's nginx 1.30 + njs 1.0 on its deprecated njs engine and on QuickJS.
 * The names are testbed/lib/nginx-env.ts's NGINX_TARGETS (LLMB_NGINX_TARGET).
 */
export const GATEWAY_TARGETS: readonly GatewayTarget[] = [
  { name: 'trixie/njs', generation: 'trixie', engine: 'njs' },
  { name: 'forky/njs', generation: 'forky', engine: 'njs' },
  { name: 'forky/qjs', generation: 'forky', engine: 'qjs' },
];

/**
 * The targets a comma-separated list names (BENCH_TARGETS, else LLMB_NGINX_TARGET), in
 * GATEWAY_TARGETS order without repeats; every target when the text is empty or undefined.
 * Throws on an unknown name.
 */
export function parseTargets(text: string | undefined): GatewayTarget[] {
  if (text === undefined || text.trim() === '') return GATEWAY_TARGETS.slice();
  const names = text.split(',').map((name) => name.trim()).filter((name) => name !== '');
  for (const name of names) {
    if (!GATEWAY_TARGETS.some((t) => t.name === name)) {
      throw new Error(`unknown nginx target ${JSON.stringify(name)} (known: ${GATEWAY_TARGETS.map((t) => t.name).join(', ')})`);
    }
  }
  return GATEWAY_TARGETS.filter((t) => names.includes(t.name));
}

/** The generations `targets` need, in their order. */
export function generationsOf(targets: readonly GatewayTarget[]): Generation[] {
  const out: Generation[] = [];
  for (const t of targets) if (!out.includes(t.generation)) out.push(t.generation);
  return out;
}

/** Targets grouped by one shared reason they were left out, as the one line the run prints per group. */
export function skippedLines(skipped: readonly { target: string; reason: string }[]): string[] {
  const byReason = new Map<string, string[]>();
  for (const s of skipped) byReason.set(s.reason, (byReason.get(s.reason) ?? []).concat([s.target]));
  return [...byReason].map(([reason, targets]) => `bench:gateway: ${targets.join(', ')} skipped: ${reason}`);
}

/**
 * native: nginx's own balancer, the same on every engine of a generation (measured once per
 * generation and shown in each of its targets' tables); reference: bench/njs-reference/ pickers;
 * llm-balancer: the module with the generator's config.
 */
export type VariantKind = 'native' | 'reference' | 'llm-balancer';

export interface VariantSpec {
  name: string;
  kind: VariantKind;
}

/** A variant and what it configures: nginx's balancing directive, a bench/njs-reference/ file, or the balancer file's strategy part (YAML). */
export type Variant = VariantSpec & ({ kind: 'native'; balancing: string } | { kind: 'reference'; file: string } | { kind: 'llm-balancer'; balancer: string; jsPath?: string });

/**
 * The balancer file of an llm-balancer variant: its strategy part, one failover retry, the
 * replicas, and the nginx section for `engine` (the generator renders js_engine and, under qjs,
 * imports the config module).
 */
export function balancerFile(strategy: string, replicas: readonly string[], listen: string, workers: number, engine: Engine): string {
  return `${strategy}\nretries: 1\nreplicas:\n${replicas.map((address) => `  - address: ${address}`).join('\n')}\nnginx:\n  listen: ${listen}\n  worker_processes: ${workers}\n  js_engine: ${engine}\n`;
}

/**
 * BENCH_NJS_PATHS (`label=DIR,label=DIR`): every llm-balancer variant once per bundle directory,
 * named `<variant> [label]`, next to each other; the others as they are. The variants themselves
 * without the setting.
 */
export function expandBundles(variants: readonly Variant[], text: string | undefined): Variant[] {
  if (text === undefined || text.trim() === '') return variants.slice();
  const bundles = text.split(',').map((pair) => {
    const at = pair.indexOf('=');
    if (at <= 0 || at === pair.length - 1) throw new Error(`BENCH_NJS_PATHS takes label=DIR pairs, got ${JSON.stringify(pair)}`);
    return { label: pair.slice(0, at).trim(), dir: pair.slice(at + 1).trim() };
  });
  const out: Variant[] = [];
  for (const v of variants) {
    if (v.kind !== 'llm-balancer') out.push(v);
    else for (const b of bundles) out.push({ name: `${v.name} [${b.label}]`, kind: 'llm-balancer', balancer: v.balancer, jsPath: b.dir });
  }
  return out;
}

/** Equal streaming and non-streaming read bounds: no body read for strategies that do not need it. */
const JS_SET_PATH = 'timeouts:\n  stream_idle_s: 300\n';

/** Every variant, in table order (the GET rows of least-tokens and prefix-affinity count the default request size and match no prefix: BENCH_POST=1 gives them a prompt). */
export const VARIANTS: readonly Variant[] = [
  { name: 'native least_conn', kind: 'native', balancing: 'least_conn' },
  { name: 'native hash consistent', kind: 'native', balancing: 'hash $http_x_session_id consistent' },
  { name: 'njs floor (reference)', kind: 'reference', file: 'floor.js' },
  { name: 'njs minimal hand-written LC (reference)', kind: 'reference', file: 'minimal-least-connections.js' },
  { name: 'njs least-connections', kind: 'llm-balancer', balancer: 'strategy: least-connections' },
  // The js_set path: equal read bounds, so nothing needs the body (the default reads it to know "stream").
  { name: 'njs least-connections js_set path', kind: 'llm-balancer', balancer: JS_SET_PATH + 'strategy: least-connections' },
  { name: 'njs round-robin', kind: 'llm-balancer', balancer: 'strategy: round-robin' },
  { name: 'njs consistent-hash', kind: 'llm-balancer', balancer: 'strategy: consistent-hash\nhash_key:\n  source: header\n  name: x-session-id' },
  { name: 'njs least-tokens', kind: 'llm-balancer', balancer: 'strategy: least-tokens' },
  { name: 'njs prefix-affinity', kind: 'llm-balancer', balancer: 'strategy: prefix-affinity' },
];

/** The req/s ratio's denominator: nginx's own least_conn on the same nginx. */
export const NATIVE_BASELINE = 'native least_conn';
/** The CPU ratio's denominator: the least bookkeeping any njs least-connections picker needs, on the same nginx and engine. */
export const REFERENCE_BASELINE = 'njs minimal hand-written LC (reference)';

/**
 * Issue 14's per-request target: these strategies within `max` times least-connections's cost
 * (nginx CPU per request, the steady measure; both read the body on the default route path).
 */
export const LLM_AWARE_TARGET = {
  of: 'njs least-connections',
  rows: ['njs consistent-hash', 'njs least-tokens', 'njs prefix-affinity'],
  max: 1.3,
};

/**
 * The variants BENCH_VARIANTS (comma-separated words) selects: those whose names contain a word,
 * plus the two baselines every ratio needs. Every variant without a filter.
 */
export function selectVariants<V extends VariantSpec>(variants: readonly V[], filter: string | undefined): V[] {
  const words = filter === undefined ? [] : filter.split(',').map((w) => w.trim()).filter((w) => w !== '');
  if (words.length === 0) return variants.slice();
  return variants.filter((v) => v.name === NATIVE_BASELINE || v.name === REFERENCE_BASELINE || words.some((word) => v.name.includes(word)));
}

/** Where a variant's runs happen: a generation for native rows (no engine involved), else a target. */
export function cellsOf(variant: VariantSpec, targets: readonly GatewayTarget[]): string[] {
  return variant.kind === 'native' ? generationsOf(targets) : targets.map((t) => t.name);
}

/** One wrk run: `variant` on `on` (a generation or a target name) in round `round` (0-based). */
export interface Job {
  variant: string;
  on: string;
  round: number;
}

/**
 * Every run of a benchmark, interleaved so that drift (another process, thermal state) hits all
 * rows alike: each variant runs on every target before the next variant starts, and every round
 * starts one variant later (and one target later) than the round before, so no row is always
 * first or always next to the same neighbour.
 */
export function runSequence(variants: readonly VariantSpec[], targets: readonly GatewayTarget[], rounds: number): Job[] {
  const jobs: Job[] = [];
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < variants.length; i++) {
      const variant = variants[(i + round) % variants.length];
      const cells = cellsOf(variant, targets);
      for (let j = 0; j < cells.length; j++) jobs.push({ variant: variant.name, on: cells[(j + round) % cells.length], round });
    }
  }
  return jobs;
}

