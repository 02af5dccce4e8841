// The njs side of the core's injected dependencies (the real clock and random source), and the
// small slice of njs's host API the adapter uses, declared here as local interfaces.
// (shared/ may not touch Date, Math.random or ngx; adapters may.)
//
// Why local interfaces instead of njs-types' NginxHTTPRequest/ngx: plugins/nginx/ is type-checked
// twice, by tsconfig.json (Node types, the program specs live in) and by tsconfig.njs.json
// (njs-types). Only what is declared here is visible to both, and Node specs can import the pure
// modules of this folder without pulling in njs globals.

import { fmix32 } from '../../shared/hash';
import { createSeededRandom } from '../../shared/random';
import type { Clock, Random } from '../../shared/types';
import { CONFIG_OBJECT, MODELS_ZONE, PEERS_ZONE, STATE_ZONE, WAITING_ZONE } from './names';
import type { WaitingDict } from '../../shared/waiting-room';

export const systemClock: Clock = { now: () => Date.now() };

/** Where the per-request random seeds come from: one counter in the state zone, shared by the workers. */
const SEED_KEY = 'rng:seed';

let requestRandom: Random | null = null;

/**
 * The random source of the njs handlers. Not Math.random: njs seeds its generator in every new
 * VM, i.e. on every request, and that first call measured ~8-10 µs of nginx CPU per request
 * (bench:gateway, against 0.2 µs for a shared-dict incr). Instead each request VM seeds a
 * xorshift32 once from a counter in the state zone, scrambled by fmix32 so that
 * consecutive requests start far apart. Load balancing needs spread, not secrecy.
 */
export const systemRandom: Random = {
  next: () => {
    if (requestRandom === null) requestRandom = createSeededRandom(fmix32(seedCounter()));
    return requestRandom.next();
  },
};

function seedCounter(): number {
  // Outside nginx (the njs command line: pickForTest) there is no ngx.shared.
  const dict = typeof ngx === 'undefined' || !ngx.shared ? undefined : (ngx.shared[STATE_ZONE] as NumberDict | undefined);
  if (dict === undefined) return Date.now();
  try {
    return dict.incr(SEED_KEY, 1, 0);
  } catch (e) {
    // Zone full and the key is new: the clock still differs between requests.
    return Date.now();
  }
}

/** `ngx.shared.<zone>` of a `js_shared_dict_zone ... type=number` (njs 0.8.9). */
export interface NumberDict {
  get(key: string): number | undefined;
  /** Throws SharedMemoryError when the zone is full and the key is new. */
  set(key: string, value: number): unknown;
  /** Returns the new value; `init` is the value before the increment when the key is absent. Throws when full and the key is new. */
  incr(key: string, delta: number, init: number): number;
  delete(key: string): boolean;
}

/** `ngx.shared.<zone>` of a `js_shared_dict_zone ... type=string` (njs 0.8.9). */
export interface StringDict {
  get(key: string): string | undefined;
  /** Throws SharedMemoryError when the zone has no room for the value. */
  set(key: string, value: string): unknown;
  delete(key: string): boolean;
}

/** The parts of njs's request object (NginxHTTPRequest) the handlers use. */
export interface NjsRequest {
  /** nginx variables; js_var ones are writable. Unset variables read as undefined. */
  variables: Record<string, string | undefined>;
  /** Query arguments, decoded; a repeated argument is an array. */
  args: Record<string, string | string[] | undefined>;
  /** Request headers, looked up case-insensitively; repeated headers are joined. */
  headersIn: Record<string, string | undefined>;
  /** Every request header line as [name, value], in order. */
  rawHeadersIn: string[][];
  headersOut: Record<string, string | string[] | undefined>;
  remoteAddress: string;
  /** The request method (GET, POST, ...). */
  method: string;
  /** The current URI, normalised, without the arguments. */
  uri: string;
  /** The request body, when nginx read it into memory (js_content only). */
  requestText?: string;
  return(status: number, body?: string): void;
  internalRedirect(uri: string): void;
  /** js_body_filter: passes a response body chunk on to the client. */
  sendBuffer(data: unknown, flags: { last?: boolean; flush?: boolean }): void;
  error(message: string): void;
  warn(message: string): void;
}

/** A response of ngx.fetch (njs has read the whole body, up to js_fetch_max_response_buffer_size, when it resolves). */
export interface FetchReply {
  status: number;
  text(): Promise<string>;
}

/** The global `ngx` object, as far as the adapter uses it. */
export interface NgxHost {
  /** The zones of js_shared_dict_zone: NumberDict for type=number, StringDict for type=string. */
  shared: Record<string, NumberDict | StringDict | undefined>;
  fetch(url: string, options?: { method?: string; headers?: Record<string, string> }): Promise<FetchReply>;
  log(level: number, message: string): void;
  readonly INFO: number;
  readonly WARN: number;
  readonly ERR: number;
}

// njs's global. Declared in this module only (it shadows njs-types' declaration under
// tsconfig.njs.json); code that specs run never reaches it.
declare const ngx: NgxHost;

export function host(): NgxHost {
  return ngx;
}

/** The state zone; throws a message naming the directive when it is missing. */
export function stateDict(): NumberDict {
  const dict = ngx.shared[STATE_ZONE];
  if (dict === undefined) {
    throw new Error('llm-balancer: no shared dict "' + STATE_ZONE + '" (js_shared_dict_zone zone=' + STATE_ZONE + ':4m type=number;)');
  }
  return dict as NumberDict;
}

/** The waiting room zone (admission.enabled); throws a message naming the directive when it is missing. */
export function waitingDict(): WaitingDict {
  const dict = ngx.shared[WAITING_ZONE];
  if (dict === undefined) {
    throw new Error('llm-balancer: no shared dict "' + WAITING_ZONE + '" (js_shared_dict_zone zone=' + WAITING_ZONE + ':1m type=number timeout=70s;)');
  }
  return dict as unknown as WaitingDict;
}

/** The model-list zone (models.discovery); throws a message naming the directive when it is missing. */
export function modelsDict(): StringDict {
  const dict = ngx.shared[MODELS_ZONE];
  if (dict === undefined) {
    throw new Error('llm-balancer: no shared dict "' + MODELS_ZONE + '" (js_shared_dict_zone zone=' + MODELS_ZONE + ':1m type=string;)');
  }
  return dict as StringDict;
}

/** The NGINX Plus peer list zone (nginx.plus_api); throws a message naming the directive when it is missing. */
export function peersDict(): StringDict {
  const dict = ngx.shared[PEERS_ZONE];
  if (dict === undefined) {
    throw new Error('llm-balancer: no shared dict "' + PEERS_ZONE + '" (js_shared_dict_zone zone=' + PEERS_ZONE + ':1m type=string;)');
  }
  return dict as StringDict;
}

/** The object `js_preload_object` installed as a global, or undefined outside nginx (njs CLI, Node). */
export function preloadedObject(): unknown {
  return (globalThis as unknown as Record<string, unknown>)[CONFIG_OBJECT];
}

/** An exception's message (njs errors, strings, anything thrown). */
export function describeError(e: unknown): string {
  if (e !== null && typeof e === 'object' && 'message' in e) return String((e as { message: unknown }).message);
  return String(e);
}

/** GET url → its text on a 200, or a sentence saying why not. Never rejects; gives up after timeoutMs. */
export async function fetchText(url: string, timeoutMs: number, headers?: Record<string, string>): Promise<{ text: string } | string> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const expired = new Promise<null>((resolve) => {
    timer = setTimeout(() => {
      // Forgotten once fired: QuickJS's clearTimeout throws on a timer that already fired
      // ("failed to find timer"; in a js_periodic run that crashed the worker, njs 1.0.2).
      timer = null;
      resolve(null);
    }, timeoutMs);
  });
  try {
    const reply = await Promise.race([host().fetch(url, headers === undefined ? { method: 'GET' } : { method: 'GET', headers: headers }), expired]);
    if (reply === null) return 'gave no answer within ' + timeoutMs + ' ms';
    if (reply.status !== 200) return 'answered HTTP ' + reply.status;
    const text = await Promise.race([reply.text(), expired]);
    if (text === null) return 'gave no complete answer within ' + timeoutMs + ' ms';
    return { text: text };
  } catch (e) {
    // e.g. "connect failed" (nothing listening), or a body above js_fetch_max_response_buffer_size.
    return 'could not be read (' + describeError(e) + ')';
  } finally {
    if (timer !== null) clearTimeout(timer);
  }
}
