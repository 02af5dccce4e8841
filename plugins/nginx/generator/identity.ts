// Trusted identity for `hash_key.source: consumer` on NGINX. The consumer is an nginx variable,
// $remote_user by default, and nginx fills $remote_user from the client's own
// `Authorization: Basic` header whether or not anything checks the password: without auth in
// front, any client names its own consumer and steers its traffic to the replica of its choice.
// So the generator refuses a consumer key unless the identity is established by nginx:
// - nginx.auth_request: an auth service verifies every balanced request and names the caller in
//   a response header; the generator writes auth_request + auth_request_set and keys on that;
// - nginx.auth_basic_user_file: auth_basic checks the password, $remote_user is then verified;
// - nginx.consumer_variable_verified: true, the operator's word that their own configuration
//   verifies consumer_variable (an auth step of their own in the same server).

import type { ConfigError } from '../../../shared/config/validate';
import type { BalancerConfig } from '../../../shared/config/types';
import { NAMES } from '../names';
import type { NginxOptions } from './options';

/** Where auth_request sends its subrequest: an exact, internal location. */
export const AUTH_LOCATION = '/llm-balancer/auth';

/** A header name as nginx exposes it: $upstream_http_<lower case, - as _>. */
export function upstreamHeaderVariable(header: string): string {
  return 'upstream_http_' + header.toLowerCase().replace(/-/g, '_');
}

/** http://host:port/path with nothing nginx would read as syntax or a variable. */
const AUTH_URL = /^https?:\/\/[A-Za-z0-9.\-[\]:]+(\/[A-Za-z0-9._~!&()*+,=:@%/-]*)?(\?[A-Za-z0-9._~!&()*+,=:@%/?-]*)?$/;
/** An HTTP header name (RFC 9110 token characters nginx accepts in a variable name: letters, digits, - and _). */
const HEADER_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

const HOW =
  'set nginx.auth_request {url, identity_header} (an auth service verifies each request and names the caller), ' +
  'or nginx.auth_basic_user_file (auth_basic checks the password), ' +
  'or, when your own configuration verifies the variable, nginx.consumer_variable_verified: true';

/**
 * Errors of the identity options, and the refusal of a client-asserted consumer key. Fills in
 * nginx.consumer_variable with auth_request's variable. `rawNginx` is the nginx section as written
 * (to tell an explicit consumer_variable from the default).
 */
export function checkIdentity(config: BalancerConfig, nginx: NginxOptions, rawNginx: unknown, errors: ConfigError[]): void {
  const explicitVariable = rawNginx !== null && typeof rawNginx === 'object' && (rawNginx as Record<string, unknown>).consumer_variable !== undefined;
  const auth = nginx.auth_request;
  if (auth) {
    if (typeof auth.url === 'string' && !AUTH_URL.test(auth.url)) {
      errors.push({ path: 'nginx.auth_request.url', message: 'must be an http(s) URL such as http://127.0.0.1:9000/verify (no spaces, quotes, ;, {, } or $), got ' + JSON.stringify(auth.url) });
    }
    if (typeof auth.identity_header === 'string' && !HEADER_NAME.test(auth.identity_header)) {
      errors.push({ path: 'nginx.auth_request.identity_header', message: 'must be a header name such as X-User-Id (letters, digits, - and _), got ' + JSON.stringify(auth.identity_header) });
    }
    if (explicitVariable) {
      errors.push({ path: 'nginx.consumer_variable', message: 'must be unset with nginx.auth_request: the consumer is the auth answer\'s identity_header (auth_request_set $' + NAMES.consumerVar + ')' });
    }
    nginx.consumer_variable = NAMES.consumerVar;
  }
  if (typeof nginx.auth_basic_user_file === 'string' && /[\s;{}$'"\\]/.test(nginx.auth_basic_user_file)) {
    errors.push({ path: 'nginx.auth_basic_user_file', message: 'must be a file path without spaces, quotes, ;, {, }, \\ or $, got ' + JSON.stringify(nginx.auth_basic_user_file) });
  }
  if (auth && nginx.auth_basic_user_file) {
    errors.push({ path: 'nginx.auth_basic_user_file', message: 'must be unset with nginx.auth_request: choose one way to authenticate callers' });
  }
  const keyed = config.hash_key !== null && config.hash_key.source === 'consumer';
  // admission.fairness consumer shares the wait per consumer: a client naming itself could take
  // one share per name it invents.
  const fair = config.admission.enabled && config.admission.fairness === 'consumer';
  // admission.consumer_priorities: a client naming a listed consumer would take its band.
  const ranked = config.admission.enabled && config.admission.consumer_priorities.length > 0;
  if (!keyed && !fair && !ranked) return;
  const verified = auth !== null || (nginx.auth_basic_user_file !== null && nginx.consumer_variable === 'remote_user') || nginx.consumer_variable_verified === true;
  if (verified) return;
  const variable = nginx.consumer_variable;
  if (keyed) {
    const why =
      variable === 'remote_user'
        ? 'nginx fills $remote_user from the client\'s own Authorization: Basic header without checking it unless auth_basic verifies it, so any client would pick its own consumer and the replica it lands on'
        : 'nothing here verifies $' + variable + ', so it may hold what the client sent';
    errors.push({ path: 'hash_key.source', message: 'consumer needs a verified identity on NGINX: ' + why + '; ' + HOW });
  }
  if (fair) {
    const why =
      variable === 'remote_user'
        ? 'nginx fills $remote_user from the client\'s own Authorization: Basic header without checking it unless auth_basic verifies it, so a client could claim many consumers and take a share of the wait for each'
        : 'nothing here verifies $' + variable + ', so a client could claim many consumers and take a share of the wait for each';
    errors.push({ path: 'admission.fairness', message: 'consumer needs a verified identity on NGINX: ' + why + '; ' + HOW + '; or set admission.fairness: none (first come, first served within a band)' });
  }
  if (ranked) {
    errors.push({ path: 'admission.consumer_priorities', message: 'needs a verified identity on NGINX: nothing verifies $' + variable + ', so a client could name a listed consumer and take its band; ' + HOW });
  }
}
