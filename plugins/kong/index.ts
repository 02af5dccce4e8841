// The Kong plugin (built to dist/kong/llm-balancer.js, run by kong-js-pluginserver).
//   access  read what the hash key needs, pick with the shared core, point Kong at the replica
//           with set_target (and set_retries: Kong's retries would hit the same replica)
//   log     read Kong's log entry and record how the attempt ended: in-flight counts, latency,
//           time to first byte, passive health (the pick: from Kong's try, else kong.ctx.shared)
// Replicas: the targets, weights and health of a Kong upstream, read from the Admin API in the
// background (replica-source.ts), or the static `replicas` list; the static list also serves
// until the first successful read.
// Replica load: strategies that read the replicas' own /metrics (llm) get them scraped in the
// background (metrics-scraper.ts) from the same replicas.
// Replica health: with active_health.enabled the plugin server probes the same replicas in the
// background (health-prober.ts), so a replica that recovers is back without a client request.
// Every failure inside a phase is answered with a 503: an exception thrown out of a JS plugin
// makes Kong proxy to the Service's default host, a silent wrong route.

import {
  createBalancer,
  createMemoryStore,
  formatErrors,
  consultsPrefixTable,
  kongSchema,
  modelNotFoundError,
  modelRewrite,
  noReplicaError,
  overloadedAnswer,
  prefixTableKeys,
  readsBody,
  readsHashKey,
  readsReplicaLoad,
  readsTokens,
  recordProbe,
  replicasFromConfig,
  rewritesModel,
  routesByModel,
  splitAddress,
  validate,
  validateFields,
} from '../../shared/index';
import { PROMETHEUS_CONTENT_TYPE, STATE_KINDS, admissionPrometheus, localStateKinds, prometheusText, sharedStatePrometheus as sharedStateFamily, statusDocument } from '../../shared/status-report';
import type { Balancer, BalancerConfig, ConfigError, PickResult, Replica } from '../../shared/index';
import { createAdmissionGate } from './admission';
import type { AdmissionGate } from './admission';
import { consumerBand } from '../../shared/admission-queue';
import type { RejectedBecause } from '../../shared/admission-queue';
import { admissionPool } from '../../shared/model-routing';
import { kongOptionsFields, kongOptionsSchema } from './options';
import type { KongOptions } from './options';
import { answeredBeforeRefusal, lastTriedAddress, needsResponseSource, outcomeFromLogEntry } from './outcome';
import type { KongLogEntry } from './outcome';
import type { KongPdk } from './pdk';
import { startHealthProber } from './health-prober';
import type { HealthProber } from './health-prober';
import { startMetricsScraper } from './metrics-scraper';
import { startModelDiscovery } from './model-discovery';
import type { ModelDiscovery } from './model-discovery';
import { listsDiffer, parseLoraSlots } from '../../shared/model-discovery';
import type { LoraSlots } from '../../shared/model-discovery';
import type { MetricsScraper } from './metrics-scraper';
import { replicaSourceFor } from './replica-source';
import type { ReplicaSource } from './replica-source';
import { SHARED_STATE, createSharedState } from './redis-state';
import type { SharedState } from './redis-state';
import { requestViewFromKong } from './request-view';
import { requestStreams, timeoutsFor } from './timeouts';
import type { UpstreamTimeouts } from './timeouts';

export const Name = 'llm-balancer';
export const Version = '0.1.0';
/** After key-auth (1250) and rate-limiting (910): identity is known and throttled requests never take a replica. */
export const Priority = 790;
export const Schema = kongSchema(kongOptionsSchema);

/** kong.ctx.shared key holding the replica id picked in access, read back in log. */
const PICK_KEY = 'llm_balancer_pick';
// The request's estimated tokens (token-counting strategies only): the log phase releases them.
const TOKENS_KEY = 'llm_balancer_tokens';
const JSON_HEADERS = { 'Content-Type': 'application/json' };

export type LoadedConfig = { ok: true; config: BalancerConfig; kong: KongOptions } | { ok: false; errors: ConfigError[] };

/**
 * Validates the plugin config Kong hands over: the shared options plus the `kong` record, every
 * error with its field path. (Kong checks its generated schema first; cross-field rules and our
 * formats are only checked here.)
 */
export function loadPluginConfig(raw: Record<string, unknown>): LoadedConfig {
  const shared: Record<string, unknown> = {};
  for (const key of Object.keys(raw)) if (key !== 'kong') shared[key] = raw[key];
  const errors: ConfigError[] = [];
  const checked = validate(shared);
  if (!checked.ok) errors.push(...checked.errors);
  const kong = validateFields(kongOptionsFields, raw.kong, 'kong', errors) as KongOptions | undefined;
  if (kong && typeof kong.admin_url === 'string' && !/^https?:\/\/[^/\s]+/.test(kong.admin_url)) {
    errors.push({ path: 'kong.admin_url', message: 'must be an http(s) URL such as http://127.0.0.1:8001, got "' + kong.admin_url + '"' });
  }
  if (kong && kong.redis) {
    const redis = kong.redis;
    if ((redis.url === null) === (redis.host === null)) {
      errors.push({ path: 'kong.redis', message: 'set either url or host, got ' + (redis.url === null ? 'neither' : 'both') });
    } else if (redis.url !== null && !/^rediss?:\/\/[^\s]+$/.test(redis.url)) {
      errors.push({ path: 'kong.redis.url', message: 'must be a redis:// or rediss:// URL such as redis://127.0.0.1:6379/0, got "' + redis.url + '"' });
    }
  }
  if (checked.ok && checked.config.response_time.latency_metric === 'tpot') {
    // Kong's generated schema already refuses it; a config that reached us some other way still gets the reason.
    errors.push({
      path: 'response_time.latency_metric',
      message: 'tpot needs the streamed response body, which a Kong JS plugin never sees (the JS PDK has no body_filter); use e2e or ttft on Kong, got "tpot"',
    });
  }
  if (checked.ok && kong && checked.config.replicas.length === 0 && kong.upstream === null) {
    errors.push({ path: 'replicas', message: "must list at least one replica (or set kong.upstream to read the targets from Kong's Admin API), got none" });
  }
  if (errors.length > 0 || !checked.ok || !kong) return { ok: false, errors };
  return { ok: true, config: checked.config, kong };
}

/** What one plugin configuration keeps across requests and instance recycling. */
interface PluginState {
  signature: string;
  config: BalancerConfig;
  kong: KongOptions;
  readsKey: boolean;
  /** The strategy counts tokens: remember the count for the log phase. */
  readsTokens: boolean;
  /** The strategy reads the OpenAI body (token counts, prompt prefixes): read it in access. */
  readsBody: boolean;
  balancer: Balancer;
  staticReplicas: Replica[];
  source: ReplicaSource | null;
  /** Scrapes the replicas' /metrics when the strategy reads them; else null. */
  scraper: MetricsScraper | null;
  /** Probes the replicas' health path when active_health.enabled; else null. */
  prober: HealthProber | null;
  /** Reads what each replica serves when models.discovery is on; else null. */
  discovery: ModelDiscovery | null;
  /** Replica id -> its LoRA GPU slots from its last /metrics (vLLM with --enable-lora) and when they were read (Date.now()). */
  loraSlots: Record<string, { slots: LoraSlots; at: number }>;
  /** Derived from discovery.version(): whether the discovered lists differ (then requests are routed by model). */
  modelView: { version: number; differ: boolean };
  /** With kong.redis: the state shared with the other Kong nodes (redis-state.ts); else null. */
  shared: SharedState | null;
  /** Whether picks consult the prefix table (then access reads the request's slots from Redis). */
  consultsPrefixTable: boolean;
  service: ServiceSettings;
  /** Read the body of every request to know whether it streams (kong.stream_timeouts), or because the strategy reads it. */
  readsBodyForView: boolean;
  /** models.aliases or models.default: the body's model may be rewritten before proxying. */
  rewritesModel: boolean;
  /** Replica id -> when its last connect error was logged (Date.now()): see answeredBeforeRefusal. */
  connectErrorAt: Record<string, number>;
  /** When a phase of this plugin last ran (Date.now()): idle states are released (releaseIdleStates). */
  lastUsedAt: number;
  /**
   * admission.enabled: the waiting room of this node's requests while the pool is saturated
   * (admission.ts), shared with every plugin instance balancing the same replicas (admissionKey);
   * else null.
   */
  admission: AdmissionGate | null;
  admissionKey: string;
}

/** The waiting rooms of this node by the replicas they wait for, and how many plugin states use each. */
const gates: Record<string, { gate: AdmissionGate; users: number }> = Object.create(null);

/**
 * What a waiting room is shared by: the Kong upstream whose targets are balanced, or the static
 * replicas' addresses. Routes (plugin instances) balancing the same replicas then wait in one
 * queue, where a route's admission.priority band outranks another's.
 */
function admissionKey(config: BalancerConfig, kong: KongOptions): string {
  if (kong.upstream !== null) return 'upstream:' + kong.upstream;
  return 'replicas:' + config.replicas.map((r) => r.address).sort().join(',');
}

function acquireGate(key: string): AdmissionGate {
  let entry = gates[key];
  if (entry === undefined) {
    entry = { gate: createAdmissionGate(), users: 0 };
    gates[key] = entry;
  }
  entry.users++;
  return entry.gate;
}

/** The last user of a waiting room gone: whoever still waits there is answered (timeout). */
function releaseGate(key: string): void {
  const entry = gates[key];
  if (entry === undefined || --entry.users > 0) return;
  entry.gate.stop();
  delete gates[key];
}

/**
 * What the Service of this plugin's requests is configured with, so that set_retries and
 * set_timeouts calls that would change nothing are skipped (each is a round trip to Kong per
 * request). Kong's log entry carries the Service entity with its `retries`, `connect_timeout`,
 * `write_timeout` and `read_timeout` (the set_* calls change the request's balancer data, never
 * the entity). While every entry showed ONE service, a call whose value equals the Service's is
 * skipped; a second service (a global plugin) turns every call back on for good. Cost of being
 * wrong: only requests between a Service edit and its first log entry run with the Service's own
 * values.
 */
interface ServiceSettings {
  serviceId: string | null;
  mixed: boolean;
  /** The Service's values; null until a log entry showed them (then the call is made). */
  retries: number | null;
  connectMs: number | null;
  writeMs: number | null;
  readMs: number | null;
}

function numberOrNull(value: unknown): number | null {
  return typeof value === 'number' && isFinite(value) ? value : null;
}

function forgetService(known: ServiceSettings): void {
  known.retries = null;
  known.connectMs = null;
  known.writeMs = null;
  known.readMs = null;
}

function learnService(known: ServiceSettings, entry: KongLogEntry): void {
  const service = entry.service;
  if (known.mixed) return;
  if (service === null || typeof service !== 'object' || typeof service.id !== 'string') {
    forgetService(known);
    return;
  }
  if (known.serviceId !== null && known.serviceId !== service.id) {
    known.mixed = true;
    forgetService(known);
    return;
  }
  known.serviceId = service.id;
  known.retries = numberOrNull(service.retries);
  known.connectMs = numberOrNull(service.connect_timeout);
  known.writeMs = numberOrNull(service.write_timeout);
  known.readMs = numberOrNull(service.read_timeout);
}

function serviceHasTimeouts(known: ServiceSettings, wanted: UpstreamTimeouts): boolean {
  return known.connectMs === wanted.connectMs && known.writeMs === wanted.writeMs && known.readMs === wanted.readMs;
}

/**
 * Module level, per plugin id: the plugin server recycles instances after 60 s idle, but in-flight
 * counts, latency estimates and ejections must outlive them. One process serves every Kong worker
 * of the node, so this state is node-wide. A changed config (same plugin id) starts fresh.
 */
const states: Record<string, PluginState> = Object.create(null);

/**
 * Kong never tells a plugin server that a plugin was deleted (instances just stop being used and
 * expire after 60 s), so the state of a deleted plugin — its Admin API reader and /metrics scraper
 * polling forever — is released once no phase of it ran for this long. A plugin still in use never
 * is: an idle one restarts fresh (latency estimates have decayed by then; an ejected replica
 * gets traffic again and is ejected again if it still fails).
 */
export const IDLE_RELEASE_MS = 10 * 60 * 1000;
const SWEEP_EVERY_MS = 60 * 1000;
let sweepTimer: ReturnType<typeof setInterval> | null = null;

function stopState(state: PluginState): void {
  if (state.source) state.source.stop();
  if (state.scraper) state.scraper.stop();
  if (state.prober) state.prober.stop();
  if (state.discovery) state.discovery.stop();
  if (state.shared) void state.shared.stop();
  if (state.admission) releaseGate(state.admissionKey);
}

/** Releases every plugin state unused for `idleMs`; returns the released plugin ids. */
export function releaseIdleStates(now: number = Date.now(), idleMs: number = IDLE_RELEASE_MS): string[] {
  const released: string[] = [];
  for (const pluginId of Object.keys(states)) {
    if (now - states[pluginId].lastUsedAt < idleMs) continue;
    stopState(states[pluginId]);
    delete states[pluginId];
    released.push(pluginId);
  }
  if (Object.keys(states).length === 0 && sweepTimer !== null) {
    clearInterval(sweepTimer);
    sweepTimer = null;
  }
  return released;
}

function stateFor(pluginId: string, config: BalancerConfig, kong: KongOptions): PluginState {
  const signature = JSON.stringify([config, kong]);
  const known = states[pluginId];
  if (known && known.signature === signature) {
    known.lastUsedAt = Date.now();
    return known;
  }
  if (sweepTimer === null) {
    sweepTimer = setInterval(() => releaseIdleStates(), SWEEP_EVERY_MS);
    // Never keeps the plugin server alive on its own.
    if (typeof sweepTimer.unref === 'function') sweepTimer.unref();
  }
  const local = createMemoryStore();
  // Every Kong node runs the same plugin id (it comes from Kong's database): the key scope.
  const shared =
    kong.redis === null
      ? null
      : createSharedState({
          redis: kong.redis,
          scope: kong.redis.key_prefix + pluginId + ':',
          local,
          trialMs: config.passive_health.base_ejection_s * 1000,
          ejectionRecordMs: 2 * config.passive_health.max_ejection_s * 1000,
        });
  const store = shared === null ? local : shared.store;
  const gateKey = admissionKey(config, kong);
  const state: PluginState = {
    signature,
    config,
    kong,
    readsKey: readsHashKey(config),
    readsTokens: readsTokens(config),
    readsBody: readsBody(config),
    balancer: createBalancer(config, {
      store,
      clock: { now: () => Date.now() },
      random: { next: () => Math.random() },
    }),
    staticReplicas: replicasFromConfig(config),
    service: { serviceId: null, mixed: false, retries: null, connectMs: null, writeMs: null, readMs: null },
    readsBodyForView: readsBody(config) || kong.stream_timeouts || routesByModel(config),
    rewritesModel: rewritesModel(config),
    source:
      kong.upstream === null
        ? null
        : replicaSourceFor({
            adminUrl: kong.admin_url,
            upstream: kong.upstream,
            token: kong.admin_token,
            timeoutMs: kong.admin_timeout_s * 1000,
            intervalMs: kong.refresh_interval_s * 1000,
          }),
    scraper: null,
    prober: null,
    discovery: null,
    loraSlots: Object.create(null),
    modelView: { version: -1, differ: false },
    shared,
    consultsPrefixTable: consultsPrefixTable(config),
    connectErrorAt: Object.create(null),
    lastUsedAt: Date.now(),
    // The new state takes its waiting room before the old one lets go: a config change keeps who waits.
    admission: config.admission.enabled ? acquireGate(gateKey) : null,
    admissionKey: gateKey,
  };
  if (known) stopState(known);
  if (readsReplicaLoad(config)) {
    state.scraper = startMetricsScraper({
      path: config.replica_metrics.path,
      intervalMs: config.replica_metrics.interval_s * 1000,
      timeoutMs: config.replica_metrics.timeout_s * 1000,
      // Read at each round: the Admin API list follows the upstream's targets.
      replicas: () => currentReplicas(state),
      record: (replicaId, text) => {
        // vLLM's LoRA slots ride on the same text (llm scores adapter affinity from them).
        const slots = parseLoraSlots(text);
        if (slots !== null) state.loraSlots[replicaId] = { slots, at: Date.now() };
        else delete state.loraSlots[replicaId];
        const usable = state.balancer.onReplicaMetrics(replicaId, text);
        // A scrape may show room: the requests waiting for it go now (admission).
        if (state.admission !== null) state.admission.wake();
        return usable;
      },
    });
  }
  if (config.models.discovery) {
    state.discovery = startModelDiscovery({
      path: config.models.path,
      intervalMs: config.models.refresh_s * 1000,
      timeoutMs: config.models.timeout_s * 1000,
      replicas: () => currentReplicas(state),
    });
  }
  const active = config.active_health;
  if (active.enabled) {
    const thresholds = { healthyThreshold: active.healthy_threshold, unhealthyThreshold: active.unhealthy_threshold };
    state.prober = startHealthProber({
      path: active.path,
      intervalMs: active.interval_s * 1000,
      timeoutMs: active.timeout_s * 1000,
      replicas: () => currentReplicas(state),
      // The same bookkeeping as the NGINX module's js_periodic checks (shared/health/active.ts).
      record: (replicaId, passed) => recordProbe(store, replicaId, passed, thresholds, Date.now()),
    });
  }
  states[pluginId] = state;
  return state;
}

/** The id of the one replica at `address`, or null when none or several are. */
function replicaAt(replicas: Replica[], address: string | null): string | null {
  if (address === null) return null;
  let found: string | null = null;
  for (const replica of replicas) {
    if (replica.address !== address) continue;
    if (found !== null) return null;
    found = replica.id;
  }
  return found;
}

/** Whether any two of the replicas have different discovered lists (cached per discovery version). */
function discoveredListsDiffer(state: PluginState, discovery: ModelDiscovery, replicas: Replica[]): boolean {
  if (state.modelView.version === discovery.version()) return state.modelView.differ;
  const differ = listsDiffer(replicas.map((replica) => discovery.served(replica.id)));
  state.modelView = { version: discovery.version(), differ };
  return differ;
}

/**
 * A replica's LoRA slots from its last /metrics, unless older than replica_metrics.stale_after_s
 * (it stopped answering): then not known, as its load is not (the gateway's own record of what it
 * sent stays, adapter-slots.ts).
 */
function freshLoraSlots(state: PluginState, replicaId: string): LoraSlots | undefined {
  const entry = state.loraSlots[replicaId];
  if (entry === undefined || Date.now() - entry.at > state.config.replica_metrics.stale_after_s * 1000) return undefined;
  return entry.slots;
}

/** The replicas with what discovery read and the /metrics scrape's LoRA slots attached (Replica.models). */
function withModels(state: PluginState, discovery: ModelDiscovery | null, replicas: Replica[]): Replica[] {
  return replicas.map((replica) => {
    const lora = freshLoraSlots(state, replica.id);
    return Object.assign({}, replica, { models: { served: discovery === null ? null : discovery.served(replica.id), lora: lora === undefined ? null : lora } });
  });
}

/**
 * The replicas with their models attached when they decide something: the discovered lists
 * differ (the request's model then decides where it may go) or LoRA slots are known (llm's
 * adapter score). One list everywhere and no slots (the common single-model fleet): null, the
 * body is not read for it, and an unknown model is the replica's own 404.
 */
function routedReplicas(state: PluginState, replicas: Replica[]): Replica[] | null {
  const discovery = state.discovery;
  const slots = replicas.some((replica) => freshLoraSlots(state, replica.id) !== undefined);
  if (!slots && (discovery === null || !discoveredListsDiffer(state, discovery, replicas))) return null;
  return withModels(state, discovery, replicas);
}

/** The replicas right now: the last Admin API read, else the static list. */
function currentReplicas(state: PluginState): Replica[] {
  const snapshot = state.source ? state.source.current() : null;
  return snapshot ? snapshot.replicas : state.staticReplicas;
}

/**
 * Before the first Admin API read there may be nothing to route to: wait for that one read
 * (bounded by the Admin API timeout) rather than answer 503 to the first requests after a start.
 * Later reads happen in the background and never delay a request.
 */
async function firstReplicas(state: PluginState): Promise<Replica[]> {
  const replicas = currentReplicas(state);
  if (replicas.length > 0 || state.source === null || state.source.current() !== null) return replicas;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    state.source.refreshNow(),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, state.kong.admin_timeout_s * 1000);
    }),
  ]);
  if (timer !== undefined) clearTimeout(timer);
  return currentReplicas(state);
}

/**
 * Every answer the plugin gives instead of proxying is OpenAI-shaped JSON (shared/errors.ts), so
 * SDK clients surface the message. `retryAfterS`: seconds for a Retry-After header when a retry
 * can help (replicas come back), null when it cannot (an invalid configuration stays invalid).
 */
async function answer503(kong: KongPdk, reason: Parameters<typeof noReplicaError>[0], message: string, retryAfterS: number | null): Promise<void> {
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  if (retryAfterS !== null) headers['Retry-After'] = String(retryAfterS);
  await kong.response.exit(503, JSON.stringify(noReplicaError(reason, message)), headers);
}

/**
 * The answer to a request admission turned away: admission.reject_status with Retry-After (a slot
 * is about a queue's wait away) and OpenAI's error shape.
 */
async function answerOverloaded(kong: KongPdk, state: PluginState, because: RejectedBecause, waitedMs: number): Promise<void> {
  const answer = overloadedAnswer(state.config.admission, because, waitedMs);
  await kong.response.exit(answer.status, answer.body, { 'Content-Type': 'application/json', 'Retry-After': String(answer.retryAfterS) });
}

type ConsumerRead = () => Promise<{ id?: string; username?: string } | null>;

/**
 * A waiting request's priority band: its consumer's in admission.consumer_priorities (by the id or
 * username of the consumer Kong's auth verified), else its route's in admission.route_priorities
 * (by the name or id of the route Kong's router matched), else admission.priority. Read only for a
 * request that waits.
 */
async function bandOf(kong: KongPdk, state: PluginState, consumer: ConsumerRead): Promise<number> {
  const admission = state.config.admission;
  if (admission.consumer_priorities.length > 0) {
    const who = await consumer();
    const band = who ? consumerBand(admission.consumer_priorities, [who.id, who.username]) : null;
    if (band !== null) return band;
  }
  if (admission.route_priorities.length === 0) return admission.priority;
  const route = await kong.router.getRoute();
  if (route) {
    for (const entry of admission.route_priorities) if (entry.route === route.name || entry.route === route.id) return entry.priority;
  }
  return admission.priority;
}

/**
 * Whose turn it is within a band (admission.fairness consumer): the consumer Kong's auth verified
 * (its id), '' for anonymous requests (one tenant together). Read only for a request that waits.
 */
async function tenantOf(state: PluginState, consumer: ConsumerRead): Promise<string> {
  if (state.config.admission.fairness !== 'consumer') return '';
  const who = await consumer();
  return who && typeof who.id === 'string' ? who.id : '';
}

/** A retry within a second can already meet a recovered replica, a finished trial, a new read. */
const MIN_RETRY_AFTER_S = 1;

/**
 * When a request refused for want of a replica is worth retrying: when the soonest ejection ends,
 * or sooner when an active probe or an Admin API read may bring a replica back (their intervals).
 * Only on the 503 path, so reading the status rows costs nothing in normal operation.
 */
function retryAfterSeconds(state: PluginState, replicas: Replica[], now: number): number {
  let soonestMs = Infinity;
  const rows = state.balancer.status(replicas);
  for (const row of rows) {
    if (row.ejectedUntil !== null && row.ejectedUntil > now) soonestMs = Math.min(soonestMs, row.ejectedUntil - now);
  }
  if (state.config.active_health.enabled) soonestMs = Math.min(soonestMs, state.config.active_health.interval_s * 1000);
  if (state.source !== null) soonestMs = Math.min(soonestMs, state.kong.refresh_interval_s * 1000);
  if (!isFinite(soonestMs)) return MIN_RETRY_AFTER_S;
  return Math.max(MIN_RETRY_AFTER_S, Math.ceil(soonestMs / 1000));
}

/**
 * Which state this node shares: with kong.redis, SHARED_STATE through Redis ('shared' while its
 * reads succeed, 'local' while Redis is unreachable or slow, 'connecting' before the first
 * connection); the rest, and everything without kong.redis, is this node's own.
 */
function sharedStateStatus(state: PluginState): Record<string, unknown> {
  const placement = state.config.prefix_affinity.placement;
  if (state.shared === null) return { redis: false, shared: [], local: STATE_KINDS, mode: 'local', scope: 'this Kong node', prefix_placement: placement };
  const status = state.shared.status();
  return {
    redis: true,
    shared: SHARED_STATE,
    local: localStateKinds(SHARED_STATE),
    mode: status.mode,
    scope: 'every Kong node with this plugin id and Redis',
    prefix_placement: placement,
    node_id: status.nodeId,
    last_error: status.lastError,
  };
}

function sharedStatePrometheus(state: PluginState): string {
  if (state.shared === null) return sharedStateFamily([]);
  const connected = state.shared.status().mode === 'shared' ? 1 : 0;
  return (
    sharedStateFamily(connected === 1 ? SHARED_STATE : []) +
    '# HELP llm_balancer_redis_connected 1 while this node reads the state other Kong nodes share through Redis (kong.redis), 0 while it balances on its own.\n' +
    '# TYPE llm_balancer_redis_connected gauge\n' +
    'llm_balancer_redis_connected ' + connected + '\n'
  );
}

/** kong.status_path: the status rows as JSON, or Prometheus text with ?format=prometheus. */
async function answerStatus(kong: KongPdk, state: PluginState): Promise<void> {
  const rows = state.balancer.status(currentReplicas(state));
  const withoutBody = state.readsBody ? state.balancer.requestsWithoutLlmBody() : undefined;
  const query = await kong.request.getQuery(8);
  if (query.format === 'prometheus') {
    const admission = state.admission === null ? '' : admissionPrometheus(state.admission.status());
    await kong.response.exit(200, prometheusText(rows, withoutBody) + sharedStatePrometheus(state) + admission, { 'Content-Type': PROMETHEUS_CONTENT_TYPE });
    return;
  }
  const document = statusDocument(rows, null, state.config.strategy, Date.now(), withoutBody);
  document.shared_state = sharedStateStatus(state);
  // The waiting room of this node (admission.enabled): per Kong node, shared by the routes balancing these replicas.
  if (state.admission !== null) document.admission = { scope: 'this Kong node, every route balancing these replicas', ...state.admission.status() };
  await kong.response.exit(200, JSON.stringify(document), JSON_HEADERS);
}

export class Plugin {
  private readonly loaded: LoadedConfig;
  private readonly pluginId: string;

  constructor(rawConfig: Record<string, unknown>) {
    this.pluginId = String(rawConfig.__plugin_id ?? 'default');
    this.loaded = loadPluginConfig(rawConfig);
    // Start reading the Admin API now, not at the first request.
    if (this.loaded.ok) stateFor(this.pluginId, this.loaded.config, this.loaded.kong);
  }

  async access(kong: KongPdk): Promise<void> {
    const started: { attempt: { id: string; tokens: number } | null; recorded: boolean } = { attempt: null, recorded: false };
    try {
      if (!this.loaded.ok) {
        await kong.log.err('llm-balancer: invalid configuration: ' + formatErrors(this.loaded.errors).replace(/\n/g, '; '));
        await answer503(kong, 'internal-error', 'invalid plugin configuration (see the Kong error log)', null);
        return;
      }
      const state = stateFor(this.pluginId, this.loaded.config, this.loaded.kong);
      const answersModels = state.config.models.discovery || state.config.models.declared.length > 0;
      const path = state.kong.status_path !== null || answersModels ? await kong.request.getPath() : null;
      if (state.kong.status_path !== null && path === state.kong.status_path) {
        await answerStatus(kong, state);
        return;
      }
      const replicas = await firstReplicas(state);
      // GET <...>/v1/models: what the replicas serve, from what discovery read and the config
      // declares; a replica answers it while nothing is known yet.
      if (answersModels && path !== null && /\/models$/.test(path) && (await kong.request.getMethod()) === 'GET') {
        const list = state.balancer.modelList(state.discovery === null ? replicas : withModels(state, state.discovery, replicas));
        if (list !== null) {
          await kong.response.exit(200, JSON.stringify(list), JSON_HEADERS);
          return;
        }
      }
      if (replicas.length === 0 && state.source !== null && state.source.current() === null) {
        const why = state.source.lastError();
        await answer503(kong, 'no-replicas', 'the targets of Kong upstream "' + state.kong.upstream + '" could not be read from the Admin API yet' + (why ? ': ' + why : ''), Math.max(MIN_RETRY_AFTER_S, Math.ceil(state.kong.refresh_interval_s)));
        return;
      }
      const routed = routedReplicas(state, replicas);
      const view = await requestViewFromKong(kong, state.config, state.readsKey, state.kong.max_body_bytes, state.readsBodyForView || routed !== null);
      // The other nodes' counts, the fleet's ejections and this prompt's prefix slots, read in one
      // round trip just before the pick (bounded by kong.redis.timeout_ms).
      if (state.shared !== null) await state.shared.refresh(replicas, state.consultsPrefixTable ? prefixTableKeys(state.config, view, routed !== null) : undefined);
      const pool = routed !== null ? routed : replicas;
      // The pick and its start in one synchronous step: under admission the dispatcher runs it
      // while the request waits, and the next waiting request's pick must see this one in flight.
      const attempt = (): PickResult => {
        const picked = state.balancer.pick(pool, view);
        if (picked.ok) {
          state.balancer.onStart(picked.replicas[0].id, picked.tokens);
          started.attempt = { id: picked.replicas[0].id, tokens: picked.tokens };
        }
        return picked;
      };
      let result: PickResult;
      if (state.admission === null) {
        result = attempt();
      } else {
        const limits = { maxWaitMs: state.config.admission.max_wait_s * 1000, maxQueue: state.config.admission.max_queue };
        // One PDK call for the consumer, shared by the band and the tenant.
        let consumerRead: ReturnType<ConsumerRead> | null = null;
        const consumer: ConsumerRead = () => (consumerRead === null ? (consumerRead = kong.client.getConsumer()) : consumerRead);
        const admitted = await state.admission.admit(admissionPool(state.config.models.aliases, state.config.models.default, view, routed !== null || routesByModel(state.config)), () => bandOf(kong, state, consumer), () => tenantOf(state, consumer), attempt, limits);
        if (admitted.kind === 'rejected') {
          await answerOverloaded(kong, state, admitted.because, admitted.waitedMs);
          return;
        }
        if (admitted.kind === 'failed') throw admitted.error;
        result = admitted.result;
      }
      if (!result.ok && result.reason === 'model-not-found') {
        // No replica serves it: OpenAI's 404, not a 503 (retrying cannot help).
        await kong.response.exit(404, JSON.stringify(modelNotFoundError(result.message)), JSON_HEADERS);
        return;
      }
      if (!result.ok) {
        await answer503(kong, result.reason, result.message, retryAfterSeconds(state, replicas, Date.now()));
        return;
      }
      const chosen = result.replicas[0];
      const target = splitAddress(chosen.address);
      // Record the pick before anything else can fail: Kong runs the log phase for every request,
      // and that is where the start is matched by an end (until then, the catch below ends it).
      // The tokens first: once the pick is recorded, the log phase ends an attempt, and it must
      // find the tokens that attempt counted.
      if (result.tokens > 0) await kong.ctx.shared.set(TOKENS_KEY, result.tokens);
      await kong.ctx.shared.set(PICK_KEY, chosen.id);
      started.recorded = true;
      if (state.shared !== null) state.shared.flush();
      if (state.service.retries !== state.kong.same_target_retries) await kong.service.setRetries(state.kong.same_target_retries);
      const timeouts = timeoutsFor(state.config.timeouts, requestStreams(view.body));
      if (!serviceHasTimeouts(state.service, timeouts)) await kong.service.setTimeouts(timeouts.connectMs, timeouts.writeMs, timeouts.readMs);
      await kong.service.setTarget(target.host, target.port);
      // An alias or the default applied: the replica gets the served name (one more RPC, only then).
      const served = state.rewritesModel ? modelRewrite(state.config, view.body) : null;
      if (served !== null) await kong.service.request.setRawBody(JSON.stringify(Object.assign({}, view.body as Record<string, unknown>, { model: served })));
    } catch (error) {
      // A pick started but never recorded for the log phase: ended here, or its replica would
      // keep the request in flight for good.
      if (started.attempt !== null && !started.recorded && this.loaded.ok) {
        const state = stateFor(this.pluginId, this.loaded.config, this.loaded.kong);
        state.balancer.onEnd(currentReplicas(state), started.attempt.id, { status: 0, latencyMs: 0, error: 'aborted', tokens: started.attempt.tokens });
        if (state.admission !== null) state.admission.wake();
      }
      await kong.log.err('llm-balancer: access failed: ' + String(error));
      // Something failed on the way (an RPC to Kong, say): the next attempt may well pass.
      await answer503(kong, 'internal-error', 'the balancer failed to pick a replica (see the Kong error log)', MIN_RETRY_AFTER_S);
    }
  }

  async log(kong: KongPdk): Promise<void> {
    try {
      if (!this.loaded.ok) return;
      const state = stateFor(this.pluginId, this.loaded.config, this.loaded.kong);
      const entry = JSON.parse(await kong.log.serialize()) as KongLogEntry;
      const replicas = currentReplicas(state);
      // Every PDK call is a round trip to Kong: when Kong's try names exactly one replica by
      // address, that is the pick. Otherwise (no try reached a replica, a hostname target that
      // Kong resolved to an IP, two replicas on one address) ask for what access recorded.
      let picked: unknown = replicaAt(replicas, lastTriedAddress(entry));
      if (picked === null) picked = await kong.ctx.shared.get(PICK_KEY);
      learnService(state.service, entry);
      if (typeof picked !== 'string') return;
      // Kong's own 502/504 and the replica's look alike in the entry: ask only then.
      const source = needsResponseSource(entry) ? await kong.response.getSource() : undefined;
      const outcome = outcomeFromLogEntry(entry, source);
      if (outcome.error === 'connect-error') state.connectErrorAt[picked] = Date.now();
      // A stream a crash cut, logged with its 200: neither success nor failure (outcome.ts).
      else if (answeredBeforeRefusal(entry, outcome, state.connectErrorAt[picked])) outcome.error = 'aborted';
      if (state.readsTokens) {
        const tokens = await kong.ctx.shared.get(TOKENS_KEY);
        outcome.tokens = typeof tokens === 'number' && tokens > 0 ? tokens : 0;
      }
      state.balancer.onEnd(replicas, picked, outcome);
      // A slot freed: the requests waiting for one go now (admission).
      if (state.admission !== null) state.admission.wake();
      // The counts, an ejection this end decided, and the prefix entries the pick recorded.
      if (state.shared !== null) state.shared.flush(true);
    } catch (error) {
      await kong.log.err('llm-balancer: log failed: ' + String(error));
    }
  }
}

/** The balancer state of one plugin id (for specs and the status of a running node). */
export function balancerStatus(pluginId: string): ReturnType<Balancer['status']> | null {
  const state = states[pluginId];
  return state ? state.balancer.status(currentReplicas(state)) : null;
}
