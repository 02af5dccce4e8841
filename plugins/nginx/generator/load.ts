// Reads a balancer file (YAML or JSON): the shared balancer options at the top level plus an
// optional `nginx:` section of generator options. Every error of both parts is reported at once,
// with its field path, before anything is written or any nginx runs.

import { parse } from 'yaml';
import { quote, validate, validateFields } from '../../../shared/config/validate';
import type { ConfigError } from '../../../shared/config/validate';
import type { BalancerConfig } from '../../../shared/config/types';
import { checkIdentity } from './identity';
import { nginxOptionsSchema, REMOVED_NGINX_OPTIONS, SIZE_PATTERN } from './options';
import type { NginxOptions } from './options';
import { checkNginxValues, checkSocketPath } from './nginx-values';
import { jsonSyntaxError } from './json-syntax';

export type LoadResult = { ok: true; config: BalancerConfig; nginx: NginxOptions } | { ok: false; errors: ConfigError[] };

/** The nginx section without the options that moved elsewhere, each reported with where it went. */
function withoutRemovedOptions(section: unknown, errors: ConfigError[]): unknown {
  if (section === null || typeof section !== 'object' || Array.isArray(section)) return section;
  const kept: Record<string, unknown> = {};
  for (const key of Object.keys(section)) {
    if (Object.prototype.hasOwnProperty.call(REMOVED_NGINX_OPTIONS, key)) errors.push({ path: 'nginx.' + key, message: REMOVED_NGINX_OPTIONS[key] });
    else kept[key] = (section as Record<string, unknown>)[key];
  }
  return kept;
}

/**
 * `format` 'json' (a .json file) parses strictly as JSON: YAML would accept a trailing comma or a
 * comment and read something else than the user's JSON tools do. 'yaml' (the default) takes both.
 */
export function loadBalancerFile(text: string, format: 'yaml' | 'json' = 'yaml'): LoadResult {
  const parsed = parseDocument(text, format);
  if (!parsed.ok) return { ok: false, errors: [{ path: '', message: parsed.message }] };
  const document = parsed.document;
  if (document === null || document === undefined) {
    return { ok: false, errors: [{ path: '', message: 'is empty: it must be a mapping of balancer options (replicas:, strategy:, ...), got nothing' }] };
  }
  if (typeof document !== 'object' || Array.isArray(document)) {
    return { ok: false, errors: [{ path: '', message: 'must be a mapping of balancer options, got ' + (Array.isArray(document) ? 'a list' : typeof document + ' ' + quote(String(document))) }] };
  }
  const balancerPart: Record<string, unknown> = {};
  const raw = document as Record<string, unknown>;
  for (const key of Object.keys(raw)) if (key !== 'nginx') balancerPart[key] = raw[key];

  const errors: ConfigError[] = [];
  const checked = validate(balancerPart);
  if (!checked.ok) errors.push(...checked.errors);
  const nginx = validateFields(nginxOptionsSchema, portAsString(withoutRemovedOptions(raw.nginx, errors)), 'nginx', errors) as NginxOptions | undefined;
  if (nginx) {
    for (const field of ['state_zone_size', 'max_body_size'] as const) {
      if (typeof nginx[field] === 'string' && !SIZE_PATTERN.test(nginx[field])) {
        errors.push({ path: 'nginx.' + field, message: 'must be an nginx size such as 512k or 4m, got ' + quote(nginx[field]) });
      }
    }
    for (const field of ['consumer_variable', 'priority_variable'] as const) {
      const name = nginx[field];
      if (typeof name === 'string' && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        errors.push({ path: 'nginx.' + field, message: 'must be an nginx variable name without $ (letters, digits, _), got ' + quote(name) });
      }
    }
    if (typeof nginx.waiting_room_socket === 'string') checkSocketPath('nginx.waiting_room_socket', nginx.waiting_room_socket, errors);
    // Every string that lands in nginx.conf, against what its directive takes.
    checkNginxValues(nginx, errors);
  }
  // A consumer key must be an identity nginx verified (identity.ts).
  if (checked.ok && nginx) checkIdentity(checked.config, nginx, raw.nginx, errors);
  // Kong's router matches routes; nginx has no route names to match.
  if (checked.ok && checked.config.admission.route_priorities.length > 0) {
    errors.push({ path: 'admission.route_priorities', message: "is Kong's (the route Kong's router matched): on NGINX set nginx.priority_variable from your auth layer, or admission.consumer_priorities; got " + checked.config.admission.route_priorities.length + ' entries' });
  }
  if (checked.ok && nginx && !checked.config.admission.enabled) {
    for (const field of ['priority_variable', 'waiting_room_socket'] as const) {
      if (nginx[field] !== null) errors.push({ path: 'nginx.' + field, message: 'applies only with admission.enabled: true (nothing waits otherwise), got ' + quote(String(nginx[field])) });
    }
  }
  if (checked.ok && checked.config.replicas.length === 0 && !(nginx && nginx.plus_api)) {
    errors.push({ path: 'replicas', message: 'must list at least one replica (or set nginx.plus_api to read them from NGINX Plus), got none' });
  }
  if (errors.length > 0 || !checked.ok || !nginx) return { ok: false, errors };
  return { ok: true, config: checked.config, nginx };
}

function parseDocument(text: string, format: 'yaml' | 'json'): { ok: true; document: unknown } | { ok: false; message: string } {
  if (format === 'json') {
    // A byte order mark (some Windows editors write one) is not JSON, but not the author's error either.
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    if (text.trim() === '') return { ok: true, document: null };
    const syntax = jsonSyntaxError(text);
    if (syntax !== null) return { ok: false, message: 'is not valid JSON: line ' + syntax.line + ', column ' + syntax.column + ': ' + syntax.message };
    try {
      return { ok: true, document: JSON.parse(text) };
    } catch (error) {
      // Not expected after the check above; JSON.parse's message may quote the text, newlines and all.
      return { ok: false, message: 'is not valid JSON: ' + (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ') };
    }
  }
  try {
    return { ok: true, document: parse(text) };
  } catch (error) {
    return { ok: false, message: 'is not valid YAML or JSON: ' + (error instanceof Error ? error.message : String(error)) };
  }
}

/** `listen: 8080` is a YAML number: the port is meant, as a string. */
function portAsString(section: unknown): unknown {
  if (section === null || typeof section !== 'object' || Array.isArray(section)) return section;
  const listen = (section as Record<string, unknown>).listen;
  if (typeof listen !== 'number' || !Number.isInteger(listen)) return section;
  return Object.assign({}, section, { listen: String(listen) });
}
