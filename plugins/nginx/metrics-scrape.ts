// Replica-reported load: `js_periodic llm_balancer.scrapeMetrics` (one worker runs it, in the
// named location @llm_balancer_metrics) reads GET http://<address><replica_metrics.path> of every
// current replica at once (the static replicas, or with nginx.plus_api the synced peers) and hands
// each 200 answer's text to the core (balancer.onReplicaMetrics: vLLM / SGLang names, recorded with
// the time it was read). The generator emits the timer only when the strategy reads that load
// or, with models.adapter_filter, the replicas' LoRA slots (readsReplicaLoad); otherwise nothing is scraped.
//
// A scrape that fails (no connection, timeout, not 200, or a 200 without vLLM/SGLang load series)
// records nothing: the last values go stale after replica_metrics.stale_after_s by themselves and
// the strategy counts in-flight requests instead. The error log gets ONE warning when a replica
// goes from working (or never scraped) to failing and one info line when it answers again, not a
// line per beat: the last state per replica is kept in the state zone (every periodic run is a
// fresh VM), under the adapter's own `m:ok:<id>` keys (1 working, 0 failing, absent: not scraped
// yet) beside the core's `r:<id>:*`.
//
// Measured in njs 0.8.9: a js_periodic run still going at the next beat is killed with its pending
// fetches (logged at error: "is already running, killing previous instance"), and a pending
// ngx.fetch keeps the run going after the handler stopped waiting for it (a hung replica with
// js_fetch_timeout above the beat got every run killed). So each scrape is bounded by
// replica_metrics.timeout_s AND below the beat (scrapeTimeoutMs), both by the timer here and by
// the location's js_fetch_timeout: a hung replica is then one timeout warning and nothing else.
// Hostnames in replica addresses need nginx's `resolver` for ngx.fetch; IP addresses do not.

import { readsReplicaLoad } from '../../shared/balancer';
import type { Replica, Store } from '../../shared/types';
import { context } from './handlers';
import type { Context } from './handlers';
import { describeError, fetchText, host, modelsDict } from './runtime';
import type { StringDict } from './runtime';
import { parseLoraSlots } from '../../shared/model-discovery';
import type { LoraSlots } from '../../shared/model-discovery';
import { MODELS_LORA_KEY } from './names';

/** 1 while a replica's /metrics answers with load, 0 once it stopped; absent before the first scrape. */
const STATE_PREFIX = 'm:ok:';
/**
 * A scrape must end before the next beat (the run would be killed with it): it gets the beat less
 * a quarter of it, and at most this much less (beats drift by a few ms; a fetch timer fires late
 * under load).
 */
const BEAT_SLACK_MS = 250;

/** How long one scrape waits: timeout_s, but always below the beat of interval_s. Whole ms, at least 1. */
export function scrapeTimeoutMs(timeoutS: number, intervalS: number): number {
  const beat = intervalS * 1000;
  const belowBeat = beat - Math.min(BEAT_SLACK_MS, beat / 4);
  return Math.max(1, Math.floor(Math.min(timeoutS * 1000, belowBeat)));
}



/** Keeps the replica's scrape state; logs only when it changes (problem null: the scrape worked). */
function noteState(store: Store, replica: Replica, url: string, problem: string | null, staleAfterS: number): void {
  const key = STATE_PREFIX + replica.id;
  const last = store.get(key);
  const ngx = host();
  if (problem === null) {
    if (last === 1) return;
    store.set(key, 1);
    if (last === 0) ngx.log(ngx.INFO, 'llm-balancer: replica metrics: replica ' + replica.id + ' (' + replica.address + ') answers GET ' + url + ' with its load again');
    return;
  }
  if (last === 0) return;
  store.set(key, 0);
  ngx.log(
    ngx.WARN,
    'llm-balancer: replica metrics: replica ' + replica.id + ' (' + replica.address + '): GET ' + url + ' ' + problem +
      '; its queue and KV-cache values go stale after ' + staleAfterS + ' s (in-flight counts stand in) until it answers again',
  );
}

/** One replica's scrape; resolves with its LoRA slots when the text reports them (vLLM --enable-lora). Never rejects. */
async function scrape(ctx: Context, replica: Replica, path: string, timeoutMs: number, staleAfterS: number): Promise<LoraSlots | null> {
  const url = 'http://' + replica.address + path;
  try {
    const answer = await fetchText(url, timeoutMs);
    let problem: string | null = null;
    if (typeof answer === 'string') problem = answer;
    else if (!ctx.balancer.onReplicaMetrics(replica, answer.text)) problem = 'answered 200 without vLLM or SGLang load series (requests running / waiting, KV-cache usage)';
    noteState(ctx.store, replica, url, problem, staleAfterS);
    return typeof answer === 'string' ? null : parseLoraSlots(answer.text);
  } catch (e) {
    const ngx = host();
    ngx.log(ngx.ERR, 'llm-balancer: replica metrics: recording the scrape of replica ' + replica.id + ' failed: ' + describeError(e));
    return null;
  }
}

/** Keeps the replicas' LoRA slots in the models zone for the picks (when the zone exists: models.discovery). */
function keepLoraSlots(replicas: Replica[], slots: Array<LoraSlots | null>): void {
  let dict: StringDict;
  try {
    dict = modelsDict();
  } catch (e) {
    return;
  }
  const byId: Record<string, LoraSlots> = {};
  let any = false;
  for (let i = 0; i < replicas.length; i++) {
    const s = slots[i];
    if (s === null) continue;
    byId[replicas[i].id] = s;
    any = true;
  }
  dict.set(MODELS_LORA_KEY, any ? JSON.stringify(byId) : '');
}

/** js_periodic handler: one scrape of every current replica, concurrently. Never throws. */
export async function scrapeMetrics(_session?: unknown): Promise<void> {
  try {
    const ctx = context();
    // The generator emits the timer only then; a hand-written one for another strategy does nothing.
    if (!readsReplicaLoad(ctx.config)) return;
    const options = ctx.config.replica_metrics;
    const timeoutMs = scrapeTimeoutMs(options.timeout_s, options.interval_s);
    const scrapes: Promise<LoraSlots | null>[] = [];
    for (let i = 0; i < ctx.replicas.length; i++) scrapes.push(scrape(ctx, ctx.replicas[i], options.path, timeoutMs, options.stale_after_s));
    const slots = await Promise.all(scrapes);
    keepLoraSlots(ctx.replicas, slots);
  } catch (e) {
    const ngx = host();
    ngx.log(ngx.ERR, 'llm-balancer: replica metrics scrape failed: ' + describeError(e));
  }
}
