// Renders the nginx configuration for a validated balancer config: load_module, js_import,
// the preloaded config, the shared state zone, one keepalive `upstream {}` per replica, the
// balanced location (js_set pick, or js_content route when the pick needs the JSON body), one
// named location per failover attempt, the status and metrics endpoints, and the timers (active
// checks, the replicas' /metrics scrape, the NGINX Plus peer sync), nginx's own errors as JSON
// (error-pages.ts) and the auth step of a consumer key (identity.ts). Pure string building; the
// CLI does the file I/O.
//
// Why per-replica upstream blocks: `proxy_pass http://$var` with an ip:port value cannot keep
// upstream connections alive (measured ~3x slower); naming a one-server `upstream {}` with
// `keepalive` costs 0–15% against native least_conn. `max_fails=0` leaves health to the balancer:
// nginx's own marking of a single server would answer "no live upstreams" behind our back.

import type { BalancerConfig } from '../../../shared/config/types';
import { needsRequestBody, rewritesModel } from '../../../shared/balancer';
import { buildKeys } from '../../../shared/replica-state';
import { readsReplicaLoad, readsTokens, replicasFromConfig } from '../../../shared/balancer';
import { exhaustedError } from '../errors';
import { AUTH_LOCATION, upstreamHeaderVariable } from './identity';
import { ERROR_PAGE_PREFIX, INTERCEPT_SAFE, errorPageLines, errorPageLocations, errorPages } from './error-pages';
import { scrapeTimeoutMs } from '../metrics-scrape';
import { NAMES } from '../names';
import { syncTimeoutMs } from '../peers';
import { splitsByStreaming } from '../streaming';
import type { PreloadedConfig } from '../names';
import type { NginxOptions } from './options';

export type RenderMode = 'full' | 'snippet';

/** Everything the renderer needs besides the config: resolved absolute paths included. */
export interface RenderInput {
  config: BalancerConfig;
  nginx: NginxOptions & { js_path: string; config_json: string };
  /** Where the input came from, for the header comment. */
  source: string;
}

/** nginx time in whole milliseconds: nginx rejects fractional seconds such as `0.5s`. */
export function milliseconds(seconds: number): string {
  return Math.round(seconds * 1000) + 'ms';
}

export function upstreamName(index: number): string {
  return NAMES.upstreamPrefix + index;
}

export function retryVariable(attempt: number): string {
  return NAMES.retryVarPrefix + attempt;
}

/** Failover attempt N's named location; streaming requests have their own (another read bound). */
function retryLocation(attempt: number, streaming: boolean): string {
  return (streaming ? NAMES.retryStreamLocationPrefix : NAMES.retryLocationPrefix) + attempt;
}

/**
 * nginx's own answers for a failed attempt: 502 (connect error, refused, a replica that closed
 * before its header, "no live upstreams") and 504 (connect or read timeout). Always failed over:
 * nothing reached the client yet.
 */
const NGINX_FAILURES = [502, 504];

/**
 * The statuses a non-last attempt hands to the next alternate: nginx's own failures and the
 * replica answers of retry_on. nginx's error_page cannot tell a replica's own 502/504 from its
 * own once it intercepts, so with any retry_on status those are retried too.
 */
export function failoverStatuses(retryOn: number[]): number[] {
  const codes = NGINX_FAILURES.slice();
  for (let i = 0; i < retryOn.length; i++) if (codes.indexOf(retryOn[i]) < 0) codes.push(retryOn[i]);
  return codes.sort((a, b) => a - b);
}

const EXHAUSTED_LOCATION = '@llm_balancer_exhausted';

/** The JSON nginx preloads for the njs module (js_preload_object). */
export function preloadedConfig(config: BalancerConfig, nginx: Pick<NginxOptions, 'plus_api' | 'consumer_variable'>): PreloadedConfig {
  const upstreams: string[] = [];
  const replicas = replicasFromConfig(config);
  for (let i = 0; i < replicas.length; i++) {
    upstreams.push(upstreamName(i));
    replicas[i].keys = buildKeys(replicas[i].id);
  }
  return { config: config, upstreams: upstreams, replicas: replicas, plusApi: nginx.plus_api, consumerVariable: nginx.consumer_variable };
}

/**
 * A double-quoted nginx string. Inside double quotes nginx reads `;{}#$'` and whitespace as plain
 * characters and unescapes only `\\` and `\"` (and `\n`, `\r`, `\t`): escaping the first two
 * makes the parsed value equal `path`, whatever it holds.
 */
export function quote(path: string): string {
  return '"' + path.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"';
}

/** Text for a `#` comment: nginx ends a comment at a newline, so no control character may reach it. */
export function commentText(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '?');
}

/** Whether the response's first body byte is timed (response_time.latency_metric ttft or tpot). */
function measuresFirstByte(config: RenderInput['config']): boolean {
  return config.response_time.latency_metric === 'ttft' || config.response_time.latency_metric === 'tpot';
}

/** Whether the proxy locations filter the response body: to time its first byte, or to release the prompt's tokens then. */
function filtersBody(config: RenderInput['config']): boolean {
  return measuresFirstByte(config) || readsTokens(config);
}

/**
 * Proxy directives for one attempt of a streaming or non-streaming request. Every attempt but the
 * last hands nginx's own failures (connect error, timeout) and the replica answers of retry_on to
 * the next attempt's location: nothing reached the client yet, the body is resent. The last
 * passes the replica's own answer through, and only nginx's own 502/504 become a JSON error.
 */
function proxyBlock(lines: string[], indent: string, target: string, attempt: number, streaming: boolean, input: RenderInput): void {
  const config = input.config;
  const timeouts = config.timeouts;
  // nginx's read and send timeouts bound the silence between two reads or writes: for a streaming
  // request its first token and every gap after it; for a whole JSON answer the entire generation.
  const silence = milliseconds(streaming ? timeouts.stream_idle_s : timeouts.response_s);
  lines.push(indent + 'proxy_pass http://$' + target + ';');
  lines.push(indent + 'proxy_http_version 1.1;');
  lines.push(indent + 'proxy_set_header Connection "";');
  // Streamed tokens must reach the client as they are generated.
  lines.push(indent + 'proxy_buffering off;');
  lines.push(indent + 'proxy_connect_timeout ' + milliseconds(timeouts.connect_s) + ';');
  lines.push(indent + 'proxy_read_timeout ' + silence + ';');
  lines.push(indent + 'proxy_send_timeout ' + silence + ';');
  // Failover is ours: nginx must not retry within the one-server group.
  lines.push(indent + 'proxy_next_upstream off;');
  // The body with its model rewritten (an alias, the default): every attempt sends the same.
  if (rewritesModel(config)) lines.push(indent + 'proxy_set_body $' + NAMES.requestBodyVar + ';');
  if (filtersBody(config) || (streaming && splitsByStreaming(timeouts))) {
    // Time to first token: $upstream_header_time is ~0 for SSE (servers send headers at once), so
    // a body filter notes when the first body byte passes (one njs call per chunk: only when asked);
    // with tpot it also counts the output tokens going by. Streams always pass it: their first byte
    // is progress (a replica streaming long answers is not stuck), and a stream that never reached
    // its last byte was cut (a replica hung after its headers), whatever its 200 says.
    lines.push(indent + 'js_body_filter ' + NAMES.module + '.firstByte buffer_type=buffer;');
  }
  if (attempt < config.retries) {
    // Intercepting replica answers only when some are retried: nginx's own failures reach
    // error_page without it, and a replica's 5xx then passes through untouched.
    if (config.retry_on.length > 0) lines.push(indent + 'proxy_intercept_errors on;');
    lines.push(indent + 'error_page ' + failoverStatuses(config.retry_on).join(' ') + ' = ' + retryLocation(attempt + 1, streaming) + ';');
    attemptErrorPages(lines, indent, input, config.retry_on.length > 0, failoverStatuses(config.retry_on));
  } else {
    lines.push(indent + 'error_page ' + NGINX_FAILURES.join(' ') + ' = ' + EXHAUSTED_LOCATION + ';');
    attemptErrorPages(lines, indent, input, false, NGINX_FAILURES);
  }
}

/**
 * The JSON error pages an attempt's location repeats (it has its own error_page, so it inherits
 * none from the server): all but its failover statuses when it passes the replica's answer
 * through; only INTERCEPT_SAFE ones when it intercepts the replica's errors (error-pages.ts).
 */
function attemptErrorPages(lines: string[], indent: string, input: RenderInput, intercepting: boolean, failover: number[]): void {
  errorPageLines(lines, indent, errorPages(input.nginx.max_body_size), intercepting ? INTERCEPT_SAFE : null, failover);
}

/** Where a 503 the pick refused gets its Retry-After (the variable is set only then; empty adds no header). */
function pickRetryAfter(lines: string[]): void {
  lines.push('      add_header Retry-After $' + NAMES.retryAfterVar + ' always;');
}

/** Where the first failure lands: if nothing was tried, the pick found no replica (503 + its JSON). */
function refusedPick(lines: string[]): void {
  // Neither tried nor refused by the pick: nginx itself refused the request before the pick
  // (limit_req or limit_conn in front answer 503): the 503 JSON page with its Retry-After. The
  // refusal's own status is gone here ($status reads 000 in this rewrite phase, measured), so a
  // status other than 503 that failover intercepts would be answered 503 as well.
  lines.push('      if ($' + NAMES.refusedVar + ') {');
  lines.push('        rewrite ^ ' + ERROR_PAGE_PREFIX + '503 last;');
  lines.push('      }');
  lines.push('      if ($' + NAMES.triedVar + ' = "") {');
  lines.push('        return 503 $' + NAMES.errorVar + ';');
  lines.push('      }');
}

function restricted(lines: string[], path: string, handler: string, input: RenderInput): void {
  lines.push('    location = ' + path + ' {');
  for (let i = 0; i < input.nginx.status_allow.length; i++) lines.push('      allow ' + input.nginx.status_allow[i] + ';');
  lines.push('      deny all;');
  lines.push('      js_content ' + NAMES.module + '.' + handler + ';');
  lines.push('    }');
}

/** Authentication of the balanced location (nginx.auth_request or auth_basic_user_file): it decides before the pick. */
function authentication(lines: string[], input: RenderInput): void {
  const auth = input.nginx.auth_request;
  if (auth) {
    lines.push('      auth_request ' + AUTH_LOCATION + ';');
    lines.push('      auth_request_set $' + NAMES.consumerVar + ' $' + upstreamHeaderVariable(auth.identity_header) + ';');
  } else if (input.nginx.auth_basic_user_file) {
    lines.push('      auth_basic "llm-balancer";');
    lines.push('      auth_basic_user_file ' + quote(input.nginx.auth_basic_user_file) + ';');
  }
}

/** The auth subrequest's location: the request's headers (not its body) to the auth service. */
function authLocation(lines: string[], input: RenderInput): void {
  const auth = input.nginx.auth_request;
  if (!auth) return;
  lines.push('    location = ' + AUTH_LOCATION + ' {');
  lines.push('      internal;');
  lines.push('      proxy_pass ' + auth.url + ';');
  lines.push('      proxy_pass_request_body off;');
  lines.push('      proxy_set_header Content-Length "";');
  lines.push('      proxy_set_header X-Original-URI $request_uri;');
  lines.push('      proxy_set_header X-Original-Method $request_method;');
  lines.push('    }');
  lines.push('');
}

/** The http-context part: everything a user includes into their own `http {}`. */
function httpBody(input: RenderInput): string[] {
  const config = input.config;
  const nginx = input.nginx;
  // Streaming requests get their own proxy locations when their read bound differs (streaming.ts);
  // telling them apart needs the body, as does a strategy that reads it.
  const byStreaming = splitsByStreaming(config.timeouts);
  const routes = needsRequestBody(config) || byStreaming;
  // The kinds of proxy locations rendered: streaming (true) and non-streaming (false), or one.
  const kinds = byStreaming ? [false, true] : [false];
  const lines: string[] = [];
  lines.push('  js_path ' + quote(nginx.js_path) + ';');
  lines.push('  js_import ' + NAMES.module + ' from ' + NAMES.bundleFile + ';');
  lines.push('  js_preload_object ' + NAMES.configObject + ' from ' + quote(nginx.config_json) + ';');
  lines.push('  js_shared_dict_zone zone=' + NAMES.stateZone + ':' + nginx.state_zone_size + ' type=number;');
  if (nginx.plus_api) lines.push('  js_shared_dict_zone zone=' + NAMES.peersZone + ':1m type=string;');
  // Model discovery feeds only picks that read the body (the route path).
  const discovers = config.models.discovery && routes;
  if (discovers) lines.push('  js_shared_dict_zone zone=' + NAMES.modelsZone + ':1m type=string;');
  lines.push('');
  lines.push('  js_set $' + NAMES.upstreamVar + ' ' + NAMES.module + '.pick;');
  for (let attempt = 1; attempt <= config.retries; attempt++) {
    lines.push('  js_set $' + retryVariable(attempt) + ' ' + NAMES.module + '.retry;');
  }
  lines.push('  js_set $' + NAMES.outcomeVar + ' ' + NAMES.module + '.outcome;');
  lines.push('  js_var $' + NAMES.planVar + ';');
  lines.push('  js_var $' + NAMES.triedVar + ';');
  lines.push('  js_var $' + NAMES.errorVar + ';');
  lines.push('  js_var $' + NAMES.retryAfterVar + ';');
  lines.push('  map $' + NAMES.triedVar + '$' + NAMES.errorVar + ' $' + NAMES.refusedVar + ' {');
  lines.push('    "" 1;');
  lines.push('    default "";');
  lines.push('  }');
  lines.push('  js_var $' + NAMES.targetVar + ';');
  if (readsTokens(config)) lines.push('  js_var $' + NAMES.tokensVar + ';');
  if (readsTokens(config)) lines.push('  js_var $' + NAMES.promptTokensVar + ';');
  if (measuresFirstByte(config)) lines.push('  js_var $' + NAMES.firstByteVar + ';');
  if (config.response_time.latency_metric === 'tpot') lines.push('  js_var $' + NAMES.outputTokensVar + ';');
  if (byStreaming) lines.push('  js_var $' + NAMES.bodyStateVar + ';');
  if (rewritesModel(config)) lines.push('  js_var $' + NAMES.requestBodyVar + ';');
  // Referenced only here, the outcome variable is evaluated in the LOG phase, after the response:
  // it sees every attempt's $upstream_status and timings, client aborts (499) included.
  lines.push("  log_format " + NAMES.logFormat + " '$" + NAMES.outcomeVar + "';");
  lines.push('');
  for (let i = 0; i < config.replicas.length; i++) {
    const replica = config.replicas[i];
    lines.push('  # ' + commentText(replica.id) + ' (weight ' + replica.weight + ')');
    lines.push('  upstream ' + upstreamName(i) + ' {');
    lines.push('    server ' + replica.address + ' max_fails=0;');
    lines.push('    keepalive ' + nginx.keepalive + ';');
    lines.push('  }');
  }
  // No replica can serve: pick names this group, nginx fails it without connecting (502, "no
  // live upstreams"), and the error_page chain answers the 503 JSON pick left in $llm_balancer_error.
  lines.push('  upstream ' + NAMES.unavailableUpstream + ' {');
  lines.push('    server 127.0.0.1:1 down;');
  lines.push('  }');
  lines.push('');
  lines.push('  server {');
  lines.push('    listen ' + nginx.listen + ';');
  lines.push('    default_type application/json;');
  lines.push('    client_max_body_size ' + nginx.max_body_size + ';');
  lines.push('    access_log /dev/null ' + NAMES.logFormat + ';');
  // Each failover attempt is one more error_page redirect.
  lines.push('    recursive_error_pages on;');
  // nginx's own errors (bad request line, large header or body, ...) answer OpenAI-style JSON.
  errorPageLines(lines, '    ', errorPages(nginx.max_body_size), null, []);
  lines.push('');
  lines.push('    location ' + nginx.location + ' {');
  authentication(lines, input);
  if (routes) {
    // The pick or the read bound needs the JSON body: js_content reads it (kept in memory), picks,
    // and redirects to the proxy location of the request's kind, which forwards the body and
    // streams the answer.
    lines.push('      client_body_buffer_size ' + nginx.max_body_size + ';');
    lines.push('      js_content ' + NAMES.module + '.route;');
    lines.push('    }');
    for (let k = 0; k < kinds.length; k++) {
      lines.push('');
      lines.push('    location ' + (kinds[k] ? NAMES.proxyStreamLocation : NAMES.proxyLocation) + ' {');
      proxyBlock(lines, '      ', NAMES.targetVar, 0, kinds[k], input);
      lines.push('    }');
    }
  } else {
    // The pick runs where proxy_pass first reads the variable: in the content phase, after
    // nginx's own access checks (auth_request, auth_basic, limit_req, allow/deny).
    proxyBlock(lines, '      ', NAMES.upstreamVar, 0, false, input);
    lines.push('    }');
  }
  for (let k = 0; k < kinds.length; k++) {
    for (let attempt = 1; attempt <= config.retries; attempt++) {
      lines.push('');
      lines.push('    location ' + retryLocation(attempt, kinds[k]) + ' {');
      if (attempt === 1) pickRetryAfter(lines);
      if (attempt === 1) refusedPick(lines);
      lines.push('      if ($' + retryVariable(attempt) + ' = "") {');
      lines.push('        return 502 $' + NAMES.errorVar + ';');
      lines.push('      }');
      proxyBlock(lines, '      ', retryVariable(attempt), attempt, kinds[k], input);
      lines.push('    }');
    }
  }
  lines.push('');
  lines.push('    location ' + EXHAUSTED_LOCATION + ' {');
  pickRetryAfter(lines);
  refusedPick(lines);
  // The body is a single-quoted nginx string: the JSON never contains a single quote.
  lines.push("      return 502 '" + exhaustedError(1 + config.retries) + "';");
  lines.push('    }');
  lines.push('');
  // Anything else is not ours: a JSON 404, not a file lookup under nginx's html/ (which logged
  // an error line per unknown path and could serve the distribution's welcome page).
  if (nginx.location !== '/') {
    lines.push('    location / {');
    lines.push('      return 404;');
    lines.push('    }');
    lines.push('');
  }
  errorPageLocations(lines, '    ', errorPages(nginx.max_body_size));
  lines.push('');
  authLocation(lines, input);
  restricted(lines, '/llm-balancer/status', 'status', input);
  restricted(lines, '/llm-balancer/metrics', 'metrics', input);
  // js_periodic runs on one worker, and a run still going at the next beat is killed with its
  // fetches: each timer beats at its own interval with a fetch timeout below it.
  if (config.active_health.enabled) {
    lines.push('');
    lines.push('    location ' + NAMES.periodicLocation + ' {');
    // nginx logs every probe of a replica that refuses connections ("recv() failed", naming no
    // replica); healthReport logs each up/down change once instead (health-check.ts).
    lines.push('      error_log /dev/null;');
    lines.push('      js_fetch_timeout ' + milliseconds(config.active_health.timeout_s) + ';');
    lines.push('      js_periodic ' + NAMES.module + '.healthCheck interval=' + milliseconds(config.active_health.interval_s) + ';');
    lines.push('    }');
    lines.push('');
    lines.push('    location ' + NAMES.healthReportLocation + ' {');
    lines.push('      js_periodic ' + NAMES.module + '.healthReport interval=' + milliseconds(config.active_health.interval_s) + ';');
    lines.push('    }');
  }
  // The replicas' own load (/metrics), scraped only when the strategy reads it.
  if (readsReplicaLoad(config)) {
    const scrape = config.replica_metrics;
    lines.push('');
    lines.push('    location ' + NAMES.metricsLocation + ' {');
    lines.push('      js_fetch_timeout ' + scrapeTimeoutMs(scrape.timeout_s, scrape.interval_s) + 'ms;');
    lines.push('      js_periodic ' + NAMES.module + '.scrapeMetrics interval=' + milliseconds(scrape.interval_s) + ';');
    lines.push('    }');
  }
  if (discovers) {
    lines.push('');
    lines.push('    location ' + NAMES.modelsLocation + ' {');
    // nginx would log every read of an unreachable replica ("recv() failed", naming no replica);
    // reaching replicas is the health checks' business: a failed read only keeps the last list.
    lines.push('      error_log /dev/null;');
    lines.push('      js_fetch_timeout ' + scrapeTimeoutMs(config.models.timeout_s, config.models.refresh_s) + 'ms;');
    lines.push('      js_periodic ' + NAMES.module + '.discoverModels interval=' + milliseconds(config.models.refresh_s) + ';');
    lines.push('    }');
  }
  if (nginx.plus_api) {
    lines.push('');
    lines.push('    location ' + NAMES.peerSyncLocation + ' {');
    lines.push('      js_fetch_timeout ' + syncTimeoutMs(nginx.plus_api.interval_s) + 'ms;');
    lines.push('      js_periodic ' + NAMES.module + '.syncPeers interval=' + milliseconds(nginx.plus_api.interval_s) + ';');
    lines.push('    }');
  }
  lines.push('  }');
  return lines;
}

/** The nginx configuration text: a complete nginx.conf ('full') or the http-context include ('snippet'). */
export function renderNginxConfig(input: RenderInput, mode: RenderMode): string {
  const header = [
    '# Generated by `llm-balancer nginx-config ' + commentText(input.source) + '`: edit that file and regenerate.',
    '# Strategy: ' + input.config.strategy + '; ' + input.config.replicas.length + ' replicas; retries: ' + input.config.retries + '.',
  ];
  if (mode === 'snippet') {
    return header
      .concat([
        '# Include inside your http {} block. The njs module must be loaded in the main context:',
        '#   load_module ' + commentText(quote(input.nginx.module_path)) + ';',
      ])
      .concat(httpBody(input))
      .join('\n') + '\n';
  }
  const workers = input.nginx.worker_processes === 0 ? 'auto' : String(input.nginx.worker_processes);
  // Relative paths resolve against nginx's prefix (-p), so the file runs anywhere without root.
  const lines = header.concat([
    '# Run: nginx -p DIR -c DIR/<this file>, DIR holding logs/ and temp/ (`llm-balancer ... -o DIR/nginx.conf` creates them).',
    'load_module ' + quote(input.nginx.module_path) + ';',
    'worker_processes ' + workers + ';',
    'pid nginx.pid;',
    // notice: the module's warnings (a replica failing its probes or its /metrics) and recoveries.
    'error_log logs/error.log notice;',
    'events {',
    '  worker_connections 1024;',
    '}',
    'http {',
    '  access_log logs/access.log;',
    '  client_body_temp_path temp/client_body;',
    '  proxy_temp_path temp/proxy;',
    '  fastcgi_temp_path temp/fastcgi;',
    '  uwsgi_temp_path temp/uwsgi;',
    '  scgi_temp_path temp/scgi;',
  ]);
  return lines.concat(httpBody(input)).concat(['}']).join('\n') + '\n';
}
