// nginx's request → the core's RequestView. Only the part the configured hash key source reads
// is filled in (a header lookup per request, not a copy of all headers), as the Kong adapter does.
// Plain functions over plain objects: the njs handlers pass the request object itself, specs
// pass tables.

import type { HashKeyConfig } from '../../shared/config/types';
import type { RequestView } from '../../shared/types';

/** The request fields read here; njs's request object has them all (see runtime.ts NjsRequest). */
export interface RequestSource {
  /**
   * njs's r.headersIn: looked up case-insensitively. A plain object without rawHeadersIn (specs,
   * other hosts) is scanned case-insensitively when the exact and lower-case names miss.
   */
  headersIn: Record<string, string | string[] | undefined>;
  /** njs's r.rawHeadersIn: [name, value] per header line; read only to take the first of a repeated header. */
  rawHeadersIn?: string[][];
  args: Record<string, string | string[] | undefined>;
  remoteAddress?: string;
  /** nginx variables, for the consumer identity ($remote_user, or one an auth step sets). */
  variables?: Record<string, string | undefined>;
}

function first(value: string | string[] | undefined): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  return value.length > 0 ? String(value[0]) : undefined;
}

/**
 * A header's value; for a repeated header the FIRST line's value, as Kong's adapter reads it
 * (njs joins repeats into "a, b, ", so a comma sends us to the raw lines).
 */
export function headerValue(source: RequestSource, name: string): string | undefined {
  const lower = name.toLowerCase();
  let value = first(source.headersIn[name]);
  if (value === undefined) value = first(source.headersIn[lower]);
  // njs's lookup is already case-insensitive: a miss there means the header is absent, and a
  // request without the key header must not pay for a scan of all the others.
  if (value === undefined && source.rawHeadersIn === undefined) {
    const names = Object.keys(source.headersIn);
    for (let i = 0; i < names.length && value === undefined; i++) {
      if (names[i].toLowerCase() === lower) value = first(source.headersIn[names[i]]);
    }
  }
  if (value !== undefined && value.indexOf(',') >= 0 && lower !== 'cookie') {
    const raw = source.rawHeadersIn;
    if (raw) {
      for (let i = 0; i < raw.length; i++) {
        if (raw[i][0].toLowerCase() === lower) return raw[i][1];
      }
    }
  }
  return value;
}

/** The variable read as the consumer when the preloaded config names none. */
export const DEFAULT_CONSUMER_VARIABLE = 'remote_user';

/**
 * The RequestView for `hashKey`'s source. `bodyText` is the raw body when the adapter read it;
 * `consumerVariable` names the nginx variable (without $) holding the caller's identity.
 */
export function requestViewOf(
  hashKey: HashKeyConfig | null,
  source: RequestSource,
  bodyText?: string | null,
  consumerVariable?: string,
): RequestView {
  const view: RequestView = {};
  if (hashKey === null) return view;
  const name = hashKey.name === null ? '' : hashKey.name;
  switch (hashKey.source) {
    case 'header':
      view.headers = {};
      view.headers[name.toLowerCase()] = headerValue(source, name);
      break;
    case 'cookie':
      // Repeated Cookie lines are joined with "; " by njs: every cookie stays findable.
      view.headers = { cookie: headerValue(source, 'cookie') };
      break;
    case 'query':
      view.query = {};
      view.query[name] = first(source.args[name]);
      break;
    case 'client-ip':
      view.clientIp = source.remoteAddress === undefined ? null : source.remoteAddress;
      break;
    case 'consumer': {
      const variable = consumerVariable === undefined || consumerVariable === '' ? DEFAULT_CONSUMER_VARIABLE : consumerVariable;
      const user = source.variables ? source.variables[variable] : undefined;
      view.consumer = user === undefined || user === '' ? null : user;
      break;
    }
    case 'body':
      view.body = parseBody(bodyText);
      break;
  }
  return view;
}

/** Parsed JSON, or null when there is no body or it is not JSON (then the request has no key: never an error). */
export function parseBody(text: string | null | undefined): unknown {
  if (text === undefined || text === null || text === '') return null;
  try {
    return JSON.parse(text);
  } catch (e) {
    return null;
  }
}
