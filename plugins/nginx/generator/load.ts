// Reads a balancer file (YAML or JSON): the shared balancer options at the top level plus an
// optional `nginx:` section of generator options. Every error of both parts is reported at once,
// with its field path, before anything is written or any nginx runs.

import { parse } from 'yaml';
import { validate, validateFields } from '../../../shared/config/validate';
import type { ConfigError } from '../../../shared/config/validate';
import type { BalancerConfig } from '../../../shared/config/types';
import { nginxOptionsSchema, REMOVED_NGINX_OPTIONS, SIZE_PATTERN } from './options';
import type { NginxOptions } from './options';

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

export function loadBalancerFile(text: string): LoadResult {
  let document: unknown;
  try {
    document = parse(text);
  } catch (error) {
    return { ok: false, errors: [{ path: '', message: 'is not valid YAML or JSON: ' + (error instanceof Error ? error.message : String(error)) }] };
  }
  if (document === null || typeof document !== 'object' || Array.isArray(document)) {
    return { ok: false, errors: [{ path: '', message: 'must be a mapping of balancer options, got ' + (Array.isArray(document) ? 'a list' : typeof document) }] };
  }
  const balancerPart: Record<string, unknown> = {};
  const raw = document as Record<string, unknown>;
  for (const key of Object.keys(raw)) if (key !== 'nginx') balancerPart[key] = raw[key];

  const errors: ConfigError[] = [];
  const checked = validate(balancerPart);
  if (!checked.ok) errors.push(...checked.errors);
  const nginx = validateFields(nginxOptionsSchema, withoutRemovedOptions(raw.nginx, errors), 'nginx', errors) as NginxOptions | undefined;
  if (nginx) {
    for (const field of ['state_zone_size', 'max_body_size'] as const) {
      if (typeof nginx[field] === 'string' && !SIZE_PATTERN.test(nginx[field])) {
        errors.push({ path: 'nginx.' + field, message: 'must be an nginx size such as 512k or 4m, got "' + nginx[field] + '"' });
      }
    }
    if (typeof nginx.location === 'string' && !nginx.location.startsWith('/')) {
      errors.push({ path: 'nginx.location', message: 'must be a URI prefix starting with /, got "' + nginx.location + '"' });
    }
    if (typeof nginx.consumer_variable === 'string' && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(nginx.consumer_variable)) {
      errors.push({ path: 'nginx.consumer_variable', message: 'must be an nginx variable name without $ (letters, digits, _), got "' + nginx.consumer_variable + '"' });
    }
    if (nginx.plus_api && typeof nginx.plus_api.url === 'string' && !/^https?:\/\/[^/\s]+/.test(nginx.plus_api.url)) {
      errors.push({ path: 'nginx.plus_api.url', message: 'must be an http(s) URL such as http://127.0.0.1:8080/api/9, got "' + nginx.plus_api.url + '"' });
    }
    if (typeof nginx.listen === 'string' && /[;{}]/.test(nginx.listen)) {
      errors.push({ path: 'nginx.listen', message: 'must be listen parameters without ; { or }, got "' + nginx.listen + '"' });
    }
  }
  if (checked.ok && checked.config.replicas.length === 0 && !(nginx && nginx.plus_api)) {
    errors.push({ path: 'replicas', message: 'must list at least one replica (or set nginx.plus_api to read them from NGINX Plus), got none' });
  }
  if (errors.length > 0 || !checked.ok || !nginx) return { ok: false, errors };
  return { ok: true, config: checked.config, nginx };
}
