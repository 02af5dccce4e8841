// Reading an upstream's replicas from Kong's Admin API: its targets (address and weight) from
// `GET /upstreams/{name}/targets` and their health from `GET /upstreams/{name}/health`, both
// followed page by page through `next`, joined into the core's Replica list.
// Never throws: every failure comes back as one log-ready line, because the caller (the background
// refresher in replica-source.ts) keeps its last good list and must never crash the plugin server.

import { hostPortProblem } from '../../shared/config/validate';
import type { Replica, ReportedHealth } from '../../shared/types';

export interface AdminApiOptions {
  /** The Admin API root, e.g. http://127.0.0.1:8001 or https://kong.internal/kong-admin (a path prefix is kept). */
  adminUrl: string;
  upstream: string;
  /** Sent as Kong-Admin-Token (Kong Enterprise RBAC) when set. */
  token: string | null;
  /** Per HTTP request, including reading the body. */
  timeoutMs: number;
}

export type AdminReadResult = { ok: true; replicas: Replica[] } | { ok: false; error: string };

/** Kong's largest page: an upstream of up to 1000 targets is read in one request. */
const PAGE_SIZE = 1000;
/**
 * A server whose `next` never ends (a bug, or a proxy answering every path alike) must not keep
 * a read going forever; 100 pages of 1000 is far beyond any real upstream.
 */
export const MAX_PAGES = 100;

/** Kong's target-level health values and what the core makes of them. */
const HEALTH: Record<string, ReportedHealth> = {
  HEALTHY: 'healthy',
  // Kong runs no checks on this upstream, so it has nothing against the target: trust it.
  HEALTHCHECKS_OFF: 'healthy',
  UNHEALTHY: 'unhealthy',
  // The target's name does not resolve: Kong itself could not send a request to it.
  DNS_ERROR: 'unhealthy',
};

/** Reads targets (all pages) and health (all pages) and joins them. Never throws: every failure is { ok: false, error }. */
export async function readUpstreamReplicas(options: AdminApiOptions): Promise<AdminReadResult> {
  try {
    const base = adminBase(options.adminUrl);
    if (typeof base !== 'string') return base;
    const upstreamPath = '/upstreams/' + encodeURIComponent(options.upstream);

    const targets = await readAllPages(options, base, upstreamPath + '/targets', 'targets', validateTarget);
    if (!targets.ok) return targets;
    // A failed health read fails the whole read, though the targets are in hand: a list without
    // health would mark every target healthy, routing to the ones Kong knows are down. The
    // refresher keeps the last complete list instead.
    const health = await readAllPages(options, base, upstreamPath + '/health', 'health', validateHealth);
    if (!health.ok) return health;

    return { ok: true, replicas: joinTargetsAndHealth(targets.entries, health.entries) };
  } catch (error) {
    // Nothing above is expected to throw; this keeps the "never throws" promise if something does.
    return { ok: false, error: 'Kong Admin API read failed: ' + oneLine(errorText(error)) };
  }
}

// ---------------------------------------------------------------------------------------------
// Validating and joining

/** The fields of a `targets` entry we use. */
interface TargetEntry {
  target: string;
  weight: number;
}

/** The fields of a `health` entry we use. */
interface HealthEntry {
  target: string;
  health: ReportedHealth;
}

/** An entry's fields, or what is wrong with it (`where` names it: "data[3]"). */
type Validator<T> = (item: unknown, where: string) => T | string;

function targetField(item: unknown, where: string): string | { problem: string } {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) return { problem: where + ' is not an object' };
  const target = (item as { target?: unknown }).target;
  if (typeof target !== 'string' || hostPortProblem(target) !== null) {
    return { problem: where + '.target is not a "host:port" string (got ' + describeValue(target) + ')' };
  }
  return target;
}

function validateTarget(item: unknown, where: string): TargetEntry | string {
  const target = targetField(item, where);
  if (typeof target !== 'string') return target.problem;
  const weight = (item as { weight?: unknown }).weight;
  if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0 || weight > 65535) {
    return where + '.weight is not an integer 0-65535 (got ' + describeValue(weight) + ')';
  }
  return { target, weight };
}

function validateHealth(item: unknown, where: string): HealthEntry | string {
  const target = targetField(item, where);
  if (typeof target !== 'string') return target.problem;
  const health = (item as { health?: unknown }).health;
  // An unknown value fails the read rather than being guessed at: a guess either routes to targets
  // Kong considers down or takes healthy ones out, and a failed read is logged where someone looks.
  if (typeof health !== 'string' || !(health in HEALTH)) {
    return where + '.health is not one of ' + Object.keys(HEALTH).join(', ') + ' (got ' + describeValue(health) + ')';
  }
  return { target, health: HEALTH[health] };
}

function joinTargetsAndHealth(targets: TargetEntry[], healthEntries: HealthEntry[]): Replica[] {
  const healthOf: Record<string, ReportedHealth> = Object.create(null);
  for (const entry of healthEntries) {
    // Kong lists newest first: the first entry for a target is its current state.
    if (!(entry.target in healthOf)) healthOf[entry.target] = entry.health;
  }
  const seen: Record<string, true> = Object.create(null);
  const replicas: Replica[] = [];
  for (const entry of targets) {
    if (entry.target in seen) continue;
    seen[entry.target] = true;
    // The target string is the id: it survives the target being deleted and re-created (Kong's
    // own id does not), and equals the default id of a static replica with the same address, so
    // in-flight counts, latency and ejections carry over between the two sources.
    // A target Kong reports no health for has nothing against it: healthy.
    const health = entry.target in healthOf ? healthOf[entry.target] : 'healthy';
    replicas.push({ id: entry.target, address: entry.target, weight: entry.weight, health });
  }
  // Newest-first means re-creating a target moves it to the front; sorting keeps the same set of
  // targets in the same order, so order-sensitive strategies (round robin's cursor) do not jump.
  replicas.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return replicas;
}

// ---------------------------------------------------------------------------------------------
// Paging

type PagesResult<T> = { ok: true; entries: T[] } | { ok: false; error: string };

async function readAllPages<T>(
  options: AdminApiOptions,
  base: string,
  firstPath: string,
  kind: 'targets' | 'health',
  validateEntry: Validator<T>,
): Promise<PagesResult<T>> {
  const entries: T[] = [];
  let url = base + firstPath + '?size=' + PAGE_SIZE;
  for (let page = 1; page <= MAX_PAGES; page++) {
    const body = await getJson(url, options, page);
    if (!body.ok) return body;
    const where = kind + ' page ' + page;
    const document = body.value;
    if (document === null || typeof document !== 'object' || !Array.isArray((document as { data?: unknown }).data)) {
      return { ok: false, error: where + ': not an object with a "data" array' };
    }
    const data = (document as { data: unknown[] }).data;
    for (let i = 0; i < data.length; i++) {
      const entry = validateEntry(data[i], 'data[' + i + ']');
      if (typeof entry === 'string') return { ok: false, error: where + ': ' + entry };
      entries.push(entry);
    }
    const next = (document as { next?: unknown }).next;
    if (next === null || next === undefined) return { ok: true, entries };
    const nextUrl = nextPageUrl(base, next);
    if (nextUrl === null) return { ok: false, error: where + ': "next" is not an Admin API path (got ' + describeValue(next) + ')' };
    url = nextUrl;
  }
  return { ok: false, error: kind + ': still a "next" page after ' + MAX_PAGES + ' pages; stopped (does the Admin API repeat its "next" link?)' };
}

/** The Admin API root without a trailing slash (origin plus any path prefix), or the error. */
function adminBase(adminUrl: string): string | { ok: false; error: string } {
  let parsed: URL;
  try {
    parsed = new URL(adminUrl);
  } catch (error) {
    return { ok: false, error: 'admin URL ' + describeValue(adminUrl) + ' is not a URL' };
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return { ok: false, error: 'admin URL ' + describeValue(adminUrl) + ' is not http:// or https://' };
  }
  return parsed.origin + parsed.pathname.replace(/\/+$/, '');
}

/**
 * Kong's `next` is a path from the Admin API root ("/upstreams/u/targets?offset=..."). Kong does
 * not know about a prefix added by a proxy in front of it, so the path is appended to the whole
 * base (`new URL(next, base)` would drop the prefix). Kong also leaves out `size`, which would
 * shrink every later page to its default of 100: it is added back. An absolute URL is followed
 * only on the Admin API's own origin, so the admin token is never sent anywhere else.
 */
function nextPageUrl(base: string, next: unknown): string | null {
  if (typeof next !== 'string') return null;
  let url: URL;
  if (next.charAt(0) === '/' && next.charAt(1) !== '/') {
    url = new URL(base + next);
  } else {
    try {
      url = new URL(next);
    } catch (error) {
      return null;
    }
    if (url.origin !== new URL(base).origin) return null;
  }
  if (!url.searchParams.has('size')) url.searchParams.set('size', String(PAGE_SIZE));
  return url.href;
}

// ---------------------------------------------------------------------------------------------
// HTTP

type JsonResult = { ok: true; value: unknown } | { ok: false; error: string };

async function getJson(url: string, options: AdminApiOptions, page: number): Promise<JsonResult> {
  const label = 'GET ' + new URL(url).pathname + (page > 1 ? ' (page ' + page + ')' : '');
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (options.token !== null) headers['Kong-Admin-Token'] = options.token;
  const controller = new AbortController();
  // One timer covers the headers and the body: a server that stalls mid-body is as stuck as one
  // that never answers.
  const timer = setTimeout(() => controller.abort(), options.timeoutMs);
  let status = 0;
  let text: string;
  try {
    // The Admin API does not redirect; following one would carry the admin token to wherever it points.
    const response = await fetch(url, { headers, signal: controller.signal, redirect: 'error' });
    status = response.status;
    text = await response.text();
  } catch (error) {
    if (controller.signal.aborted) return { ok: false, error: label + ': timed out after ' + options.timeoutMs + ' ms' };
    return { ok: false, error: label + ': ' + fetchFailure(error) };
  } finally {
    clearTimeout(timer);
  }
  if (status < 200 || status > 299) {
    const message = kongMessage(text);
    return { ok: false, error: label + ': HTTP ' + status + (message === null ? '' : ' (' + message + ')') };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, error: label + ': malformed JSON (' + oneLine(text.slice(0, 80)) + ')' };
  }
}

/** Kong's error bodies are {"message": "..."}; the message says what an HTTP status alone does not (e.g. which entity was not found). */
function kongMessage(text: string): string | null {
  try {
    const body = JSON.parse(text) as { message?: unknown };
    if (body !== null && typeof body === 'object' && typeof body.message === 'string') return oneLine(body.message.slice(0, 200));
  } catch (error) {
    // Not JSON (a proxy's HTML error page): the status says enough.
  }
  return null;
}

/** undici reports every network failure as "fetch failed"; the cause says which one (metrics-scraper.ts too). */
export function fetchFailure(error: unknown): string {
  const cause = error instanceof Error ? (error as Error & { cause?: unknown }).cause : undefined;
  const code = cause !== null && typeof cause === 'object' ? (cause as { code?: unknown }).code : undefined;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'host not found (' + code + ')';
  const detail = cause !== undefined ? errorText(cause) : errorText(error);
  return oneLine(typeof code === 'string' && detail.indexOf(code) < 0 ? code + ': ' + detail : detail);
}

function errorText(error: unknown): string {
  if (error instanceof Error) return error.message !== '' ? error.message : error.name;
  return String(error);
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 60 ? text.slice(0, 57) + '...' : text;
}
