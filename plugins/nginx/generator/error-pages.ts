// nginx's own error answers as OpenAI-style JSON. Without these, nginx answers its own 400, 413,
// 502, ... with an HTML page, which OpenAI SDKs cannot parse. Each status gets an internal exact
// location that `return`s its JSON (a literal, no njs), and `error_page <status> <uri>` lines send
// nginx's own errors there.
//
// Measured in nginx 1.26.3 (spec/nginx-error-pages.spec.ts keeps it true):
// - The pages are URIs, not named locations: an error in the request line (a bad method, a
//   14 KiB URI) leaves the request without a URI, and a redirect to a named location then fails
//   with "empty URI in redirect to named location" and an HTML 500. A URI redirect works.
// - 494 (header or cookie too large) is nginx's internal code for a 400 with its own message.
// - A client that stops sending its body gets no answer at all: nginx closes the connection on
//   client_body_timeout (408) and on client_header_timeout. The 408 page is kept for completeness.
// - nginx's inheritance rule: a location with ANY error_page inherits none from the server. The
//   generated proxy locations hold the failover error_page, so they repeat the pages themselves.
// - proxy_intercept_errors (every attempt but the last, for failover) makes a location's
//   error_page codes apply to the REPLICA's answers too: a page for 400 there would replace a
//   replica's own 400 ("maximum context length exceeded") with ours. Those locations therefore
//   repeat only the pages whose replica answer says nothing ours does not (INTERCEPT_SAFE); the
//   last attempt does not intercept and repeats them all.

import { openAiError } from '../errors';

export interface ErrorPage {
  /** The status nginx finalizes the request with (494 is nginx's own code for a 400). */
  status: number;
  /** The status the client gets. */
  answer: number;
  type: string;
  code: string;
  message: string;
  /** Retry-After seconds sent with this answer, when a retry can help. */
  retryAfterS?: number;
}

/** Where the pages live: exact, internal locations (a client asking for them gets the 404 page). */
export const ERROR_PAGE_PREFIX = '/llm-balancer/error/';

/**
 * Retry-After of nginx's own 429 and 503 (limit_req, limit_conn, refused before the pick): 1 s,
 * the smallest the header can say. limit_req rejects only the excess over its rate, and at any
 * rate of 1 r/s or more a slot frees within a second; a client that retries sooner is refused
 * again, one that waits longer wastes its own time.
 */
export const LIMIT_RETRY_AFTER_S = 1;

/** Every page, by the status nginx finalizes with. `maxBodySize` is nginx.max_body_size, for the 413 message. */
export function errorPages(maxBodySize: string): ErrorPage[] {
  const client = 'invalid_request_error';
  return [
    { status: 400, answer: 400, type: client, code: 'bad_request', message: 'nginx could not read the request (request line, headers or chunked body framing)' },
    { status: 494, answer: 400, type: client, code: 'request_header_too_large', message: 'a request header line or the whole header is larger than nginx accepts' },
    { status: 401, answer: 401, type: 'authentication_error', code: 'unauthorized', message: 'the request is not authenticated' },
    { status: 403, answer: 403, type: 'permission_error', code: 'forbidden', message: 'the request is not allowed' },
    { status: 404, answer: 404, type: client, code: 'not_found', message: 'no such endpoint on this gateway' },
    { status: 405, answer: 405, type: client, code: 'method_not_allowed', message: 'the method is not allowed here' },
    { status: 408, answer: 408, type: client, code: 'request_timeout', message: 'the request was not received in time' },
    { status: 411, answer: 411, type: client, code: 'length_required', message: 'the request needs a Content-Length' },
    { status: 413, answer: 413, type: client, code: 'request_too_large', message: 'the request body is too large (the gateway accepts up to ' + maxBodySize + ')' },
    { status: 414, answer: 414, type: client, code: 'uri_too_long', message: 'the request URI is longer than nginx accepts' },
    { status: 429, answer: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded', message: 'too many requests: the gateway rate limit was reached, retry later', retryAfterS: LIMIT_RETRY_AFTER_S },
    { status: 500, answer: 500, type: 'server_error', code: 'internal_error', message: 'the gateway failed to handle the request' },
    { status: 501, answer: 501, type: client, code: 'not_implemented', message: 'the request uses a Transfer-Encoding nginx does not support' },
    { status: 502, answer: 502, type: 'bad_gateway', code: 'bad_gateway', message: 'the replica could not be reached or answered badly' },
    { status: 503, answer: 503, type: 'service_unavailable', code: 'service_unavailable', message: 'the gateway cannot take the request now (rate or connection limit), retry later', retryAfterS: LIMIT_RETRY_AFTER_S },
    { status: 504, answer: 504, type: 'gateway_timeout', code: 'gateway_timeout', message: 'the replica did not answer in time' },
    { status: 505, answer: 505, type: client, code: 'http_version_not_supported', message: 'the HTTP version is not supported' },
  ];
}

/**
 * Pages a location that intercepts the replica's errors may hold: 401 and 403 (nginx's auth in
 * front answers them before any pick; a replica's own 401/403 says no more than ours), 413
 * (nginx.max_body_size; a replica's 413 means the same) and 429 (limit_req_status 429 in front;
 * a replica's 429 means the same, though its own Retry-After is replaced by ours). Not 400, 404,
 * 422, 500: a replica's body there carries the reason, and it must reach the client unchanged.
 * So nginx's own 400 for an invalid chunked body stays nginx's HTML page in those locations.
 */
export const INTERCEPT_SAFE = [401, 403, 413, 429];

function pageUri(page: ErrorPage): string {
  return ERROR_PAGE_PREFIX + page.status;
}

/** The JSON a page answers, checked to be safe inside a single-quoted nginx string. */
export function pageBody(page: ErrorPage): string {
  const body = JSON.stringify(openAiError('llm-balancer: ' + page.message, page.type, page.code));
  // nginx would end the string at ', read $ as a variable, and \ as an escape.
  if (/['$\\]/.test(body)) throw new Error('error page ' + page.status + ' has a character nginx would interpret: ' + body);
  return body;
}

/**
 * `error_page` lines for `statuses` (every page when null), skipping `except` (the statuses the
 * location already sends elsewhere, e.g. to the next failover attempt).
 */
export function errorPageLines(lines: string[], indent: string, pages: ErrorPage[], statuses: number[] | null, except: number[]): void {
  for (let i = 0; i < pages.length; i++) {
    const page = pages[i];
    if (statuses !== null && statuses.indexOf(page.status) < 0) continue;
    if (except.indexOf(page.status) >= 0) continue;
    lines.push(indent + 'error_page ' + page.status + ' ' + pageUri(page) + ';');
  }
}

/** The internal locations answering each page. */
export function errorPageLocations(lines: string[], indent: string, pages: ErrorPage[]): void {
  for (let i = 0; i < pages.length; i++) {
    const page = pages[i];
    lines.push(indent + 'location = ' + pageUri(page) + ' {');
    lines.push(indent + '  internal;');
    if (page.retryAfterS !== undefined) lines.push(indent + '  add_header Retry-After ' + page.retryAfterS + ' always;');
    lines.push(indent + "  return " + page.answer + " '" + pageBody(page) + "';");
    lines.push(indent + '}');
  }
}
