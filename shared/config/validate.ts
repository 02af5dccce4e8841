// Validates a raw configuration against schema.ts and returns a fresh, fully defaulted BalancerConfig,
// or EVERY error found, each with the field's path and what was expected versus what was given.
//
// The walk is generic: types, one_of, between, len_min/len_max, required, records and arrays all come
// from the schema data. Only what one field cannot say about another lives here, in `rules`.
//
// Accepted inputs: plain objects (from YAML/JSON/nginx.conf) and Kong's plugin config, where unset
// fields arrive as null and bookkeeping keys (`__plugin_id`, `__seq__`, `__key__`) ride along.
// null therefore means "use the default", and keys starting with `__` are ignored at every level.

import type { BalancerConfig } from './types';
import { schema, entryName, fieldPaths, NAMED_HASH_KEY_SOURCES } from './schema';
import type { FieldEntry, FieldSpec } from './schema';

export interface ConfigError {
  /** `strategy`, `replicas[2].address`, `passive_health.failure_kinds[1]`; '' for the whole config. */
  path: string;
  message: string;
}

export type ValidationResult = { ok: true; config: BalancerConfig } | { ok: false; errors: ConfigError[] };

type Dict = { [key: string]: unknown };

/** A cross-field rule: `rule` is the sentence the docs print; `check` reports violations. */
export interface CrossFieldRule {
  rule: string;
  check(config: PartialConfig, errors: ConfigError[]): void;
}

/**
 * The walked config before rules run. Any value that failed validation is `undefined`, so a rule
 * that reads it stays silent instead of piling a second error onto the first.
 */
export type PartialConfig = { [K in keyof BalancerConfig]: BalancerConfig[K] | undefined };

export function validate(input: unknown): ValidationResult {
  const errors: ConfigError[] = [];
  const root: FieldSpec = { type: 'record', required: true, fields: schema };
  const walked = checkField(root, input, '', errors) as PartialConfig | undefined;
  if (walked !== undefined) {
    fillReplicaIds(walked);
    for (let i = 0; i < rules.length; i++) rules[i].check(walked, errors);
  }
  if (errors.length > 0 || walked === undefined) return { ok: false, errors: errors };
  return { ok: true, config: walked as BalancerConfig };
}

/**
 * Validates `input` against any field list in the schema format (the NGINX generator's own
 * options use this), with paths under `prefix`. Returns the defaulted record, or undefined when
 * `input` is not a record at all; errors are appended to `errors`.
 */
export function validateFields(fields: FieldEntry[], input: unknown, prefix: string, errors: ConfigError[]): Dict | undefined {
  return checkField({ type: 'record', required: true, fields: fields }, input, prefix, errors) as Dict | undefined;
}

/** The configuration every option left unset produces. */
export function defaults(): BalancerConfig {
  const result = validate({});
  // The schema's own defaults must satisfy the schema; the spec guards this invariant.
  if (!result.ok) throw new Error('invalid schema defaults:\n' + formatErrors(result.errors));
  return result.config;
}

/** One `path: message` line per error; the whole config is called `config`. */
export function formatErrors(errors: ConfigError[]): string {
  const lines: string[] = [];
  for (let i = 0; i < errors.length; i++) {
    lines.push((errors[i].path === '' ? 'config' : errors[i].path) + ': ' + errors[i].message);
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// The generic walk

function fail(errors: ConfigError[], path: string, message: string): undefined {
  errors.push({ path: path, message: message });
  return undefined;
}

/** A field's value, with null/absent handled as Kong does: default, expand, error or null. */
function checkField(spec: FieldSpec, value: unknown, path: string, errors: ConfigError[]): unknown {
  if (value === null || value === undefined) {
    if (spec.default !== undefined) return copyJson(spec.default);
    // A required record is always present: an absent one is built from its fields' defaults.
    if (spec.type === 'record' && spec.required) return checkRecord(spec, Object.create(null), path, errors);
    if (spec.required) return fail(errors, path, 'is required, got ' + describe(value));
    return null;
  }
  return checkValue(spec, value, path, errors);
}

/** A present value (array elements come here directly: they may never be null). */
function checkValue(spec: FieldSpec, value: unknown, path: string, errors: ConfigError[]): unknown {
  switch (spec.type) {
    case 'string':
      return checkString(spec, value, path, errors);
    case 'number':
    case 'integer':
      return checkNumber(spec, value, path, errors);
    case 'boolean':
      if (typeof value !== 'boolean') return fail(errors, path, 'must be a boolean, got ' + describe(value));
      return value;
    case 'record':
      if (!isRecord(value)) {
        return fail(errors, path, 'must be a record (an object of named fields), got ' + describe(value));
      }
      return checkRecord(spec, value, path, errors);
    case 'array':
      return checkArray(spec, value, path, errors);
  }
  return fail(errors, path, 'has an unknown schema type ' + String(spec.type));
}

function checkString(spec: FieldSpec, value: unknown, path: string, errors: ConfigError[]): unknown {
  if (typeof value !== 'string') return fail(errors, path, 'must be a string, got ' + describe(value));
  if (spec.one_of && spec.one_of.indexOf(value) < 0) {
    return fail(errors, path, 'must be one of ' + spec.one_of.join(', ') + ', got ' + quote(value));
  }
  if (spec.len_min !== undefined && value.length < spec.len_min) {
    if (spec.len_min === 1) return fail(errors, path, 'must be a non-empty string, got ""');
    return fail(errors, path, 'must be at least ' + spec.len_min + ' characters long, got ' + value.length);
  }
  if (spec.len_max !== undefined && value.length > spec.len_max) {
    return fail(errors, path, 'must be at most ' + spec.len_max + ' characters long, got ' + value.length);
  }
  if (spec.format === 'url-path' && !/^\/[^\s\x00-\x1f\x7f]*$/.test(value)) {
    return fail(errors, path, 'must be a URL path starting with / and without spaces or control characters, such as /metrics, got ' + quote(value));
  }
  if (spec.format === 'printable' && CONTROL_CHARACTER.test(value)) {
    return fail(errors, path, 'must not contain control characters such as newlines or tabs, got ' + quote(value));
  }
  if (spec.format === 'host-port') {
    const problem = hostPortProblem(value);
    if (problem !== null) {
      return fail(
        errors,
        path,
        'must be host:port with a port 1-65535, got ' + quote(value) + (problem === '' ? '' : ' (' + problem + ')'),
      );
    }
  }
  return value;
}

// C0 and C1 control characters, DEL, and the Unicode line and paragraph separators: each can end
// or forge a line in a log or a configuration file.
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

function checkNumber(spec: FieldSpec, value: unknown, path: string, errors: ConfigError[]): unknown {
  const kind = spec.type === 'integer' ? 'an integer' : 'a number';
  if (typeof value !== 'number' || !isFinite(value)) {
    return fail(errors, path, 'must be ' + kind + ', got ' + describe(value));
  }
  if (spec.type === 'integer' && Math.floor(value) !== value) {
    return fail(errors, path, 'must be an integer, got ' + String(value));
  }
  if (spec.one_of && spec.one_of.indexOf(value) < 0) {
    return fail(errors, path, 'must be one of ' + spec.one_of.join(', ') + ', got ' + String(value));
  }
  if (spec.between) {
    const inRange = value >= spec.between[0] && value <= spec.between[1];
    const sentinel = spec.also_allowed !== undefined && spec.also_allowed.indexOf(value) >= 0;
    if (!inRange && !sentinel) {
      return fail(
        errors,
        path,
        'must be ' + rangeText(spec) + ', got ' + String(value) + (spec.hint ? ' (' + spec.hint + ')' : ''),
      );
    }
  }
  // -0 and 0 are the same setting; keep the output JSON-stable.
  return value === 0 ? 0 : value;
}

/** "an integer between 0 and 10", "0 or a number between 1 and 10". */
export function rangeText(spec: FieldSpec): string {
  const kind = spec.type === 'integer' ? 'an integer' : 'a number';
  if (!spec.between) return kind;
  const range = kind + ' between ' + spec.between[0] + ' and ' + spec.between[1];
  return spec.also_allowed && spec.also_allowed.length > 0 ? spec.also_allowed.join(' or ') + ' or ' + range : range;
}

function checkRecord(spec: FieldSpec, value: Dict, path: string, errors: ConfigError[]): Dict {
  const fields = spec.fields || [];
  const known: string[] = [];
  for (let i = 0; i < fields.length; i++) known.push(entryName(fields[i]));
  // Unknown keys first: a misspelt option often explains the "required" error that follows.
  const keys = Object.keys(value);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    if (key.slice(0, 2) === '__' || known.indexOf(key) >= 0) continue;
    errors.push({ path: join(path, key), message: 'unknown field' + suggestion(key, known) });
  }
  const out: Dict = {};
  for (let i = 0; i < fields.length; i++) {
    const name = known[i];
    const raw = Object.prototype.hasOwnProperty.call(value, name) ? value[name] : undefined;
    out[name] = checkField(fields[i][name], raw, join(path, name), errors);
  }
  return out;
}

function checkArray(spec: FieldSpec, value: unknown, path: string, errors: ConfigError[]): unknown {
  let items: unknown[];
  if (Array.isArray(value)) {
    items = value;
  } else if (isRecord(value) && Object.keys(value).length === 0) {
    // Lua's cjson encodes an empty table as {} unless it carries the array metatable, so an empty
    // list can reach the Kong plugin as an object. Nothing else is accepted in place of an array.
    items = [];
  } else {
    return fail(errors, path, 'must be an array, got ' + describe(value));
  }
  if (spec.len_min !== undefined && items.length < spec.len_min) {
    return fail(errors, path, 'must have at least ' + spec.len_min + ' items, got ' + items.length);
  }
  if (spec.len_max !== undefined && items.length > spec.len_max) {
    return fail(errors, path, 'must have at most ' + spec.len_max + ' items, got ' + items.length);
  }
  const out: unknown[] = [];
  const elements = spec.elements as FieldSpec;
  for (let i = 0; i < items.length; i++) {
    out.push(checkValue(elements, items[i], path + '[' + i + ']', errors));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Normalisation and cross-field rules

/** A replica without an id is named by its address. */
function fillReplicaIds(config: PartialConfig): void {
  const replicas = config.replicas;
  if (!replicas) return;
  for (let i = 0; i < replicas.length; i++) {
    const replica = replicas[i] as { address?: string; id?: string | null } | undefined;
    if (replica && replica.id === null && typeof replica.address === 'string') replica.id = replica.address;
  }
}

// RFC 9110 token characters: header and cookie names.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Dotted JSON path: non-empty segments separated by single dots.
const DOTTED_PATH = /^[^.]+(\.[^.]+)*$/;

export const rules: CrossFieldRule[] = [
  {
    rule: 'strategy consistent-hash needs hash_key.',
    check: function (config, errors) {
      if (config.strategy === 'consistent-hash' && config.hash_key === null) {
        errors.push({ path: 'hash_key', message: 'is required when strategy is "consistent-hash", got null' });
      }
    },
  },
  {
    rule:
      'hash_key.name is required for header, cookie, query and body (a header or cookie name, or a dotted path ' +
      'into the JSON body), and must be unset for consumer and client-ip.',
    check: function (config, errors) {
      const key = config.hash_key;
      if (!key || key.source === undefined || key.name === undefined) return;
      const named = NAMED_HASH_KEY_SOURCES.indexOf(key.source) >= 0;
      if (named && key.name === null) {
        errors.push({ path: 'hash_key.name', message: 'is required when source is "' + key.source + '", got nothing' });
      } else if (!named && key.name !== null) {
        errors.push({
          path: 'hash_key.name',
          message: 'must be unset when source is "' + key.source + '" (it names nothing), got ' + quote(key.name),
        });
      } else if ((key.source === 'header' || key.source === 'cookie') && key.name !== null && !TOKEN.test(key.name)) {
        errors.push({
          path: 'hash_key.name',
          message: 'must be a ' + key.source + " name (letters, digits and !#$%&'*+-.^_`|~), got " + quote(key.name),
        });
      } else if (key.source === 'body' && key.name !== null && !DOTTED_PATH.test(key.name)) {
        errors.push({
          path: 'hash_key.name',
          message: 'must be a dotted path such as user or metadata.session_id, got ' + quote(key.name),
        });
      }
    },
  },
  {
    rule: 'admission.max_concurrency is above 0 exactly when admission.saturation is concurrency or both.',
    check: function (config, errors) {
      const admission = config.admission;
      if (!admission || admission.saturation === undefined || admission.max_concurrency === undefined) return;
      if (admission.saturation !== 'metrics' && admission.max_concurrency === 0) {
        errors.push({
          path: 'admission.max_concurrency',
          message: 'must be above 0 when saturation is "' + admission.saturation + '" (the in-flight requests per weight that saturate a replica), got 0',
        });
      } else if (admission.saturation === 'metrics' && admission.max_concurrency > 0) {
        errors.push({
          path: 'admission.max_concurrency',
          message: 'is not used when saturation is "metrics" (set saturation to "concurrency" or "both" to judge by in-flight requests), got ' + admission.max_concurrency,
        });
      }
    },
  },
  {
    rule: 'passive_health.max_ejection_s must be at least passive_health.base_ejection_s.',
    check: function (config, errors) {
      const health = config.passive_health;
      if (!health || health.base_ejection_s === undefined || health.max_ejection_s === undefined) return;
      if (health.max_ejection_s < health.base_ejection_s) {
        errors.push({
          path: 'passive_health.max_ejection_s',
          message: 'must be at least base_ejection_s (' + health.base_ejection_s + '), got ' + health.max_ejection_s,
        });
      }
    },
  },
  {
    rule: 'active_health.timeout_s must be less than active_health.interval_s.',
    check: function (config, errors) {
      const active = config.active_health;
      if (!active || active.timeout_s === undefined || active.interval_s === undefined) return;
      if (active.timeout_s >= active.interval_s) {
        errors.push({
          path: 'active_health.timeout_s',
          message: 'must be less than interval_s (' + active.interval_s + '): a probe still running at the next one is cut off, got ' + active.timeout_s,
        });
      }
    },
  },
  {
    rule: 'Replica ids (an unset id is the address) must be unique.',
    check: function (config, errors) {
      const replicas = config.replicas;
      if (!replicas) return;
      const seen: { [id: string]: number } = Object.create(null);
      for (let i = 0; i < replicas.length; i++) {
        const replica = replicas[i] as { address?: string; id?: string } | undefined;
        if (!replica || typeof replica.id !== 'string') continue;
        const first = seen[replica.id];
        if (first === undefined) {
          seen[replica.id] = i;
          continue;
        }
        // Point at what the user wrote: the id if they gave one, else the address it came from.
        const explicit = replica.id !== replica.address;
        errors.push({
          path: 'replicas[' + i + '].' + (explicit ? 'id' : 'address'),
          message:
            (explicit ? 'must be a unique id' : 'must be unique or the replica needs a distinct id') +
            ', got ' + quote(replica.id) + ' again (replicas[' + first + '] has it)',
        });
      }
    },
  },
  {
    rule: 'When replicas are listed, at least one has a weight above 0.',
    check: function (config, errors) {
      const replicas = config.replicas;
      if (!replicas || replicas.length === 0) return;
      for (let i = 0; i < replicas.length; i++) {
        const replica = replicas[i] as { weight?: number } | undefined;
        // An invalid weight already has its own error: say nothing more about the list.
        if (!replica || typeof replica.weight !== 'number' || replica.weight > 0) return;
      }
      errors.push({
        path: 'replicas',
        message: 'must have at least one replica with a weight above 0: every weight is 0, so no replica could ever be picked (every request would get 503), got ' + replicas.length + (replicas.length === 1 ? ' replica' : ' replicas'),
      });
    },
  },
  {
    rule: 'models.aliases names must be unique; models.declared replicas must be unique and, when replicas are listed, name one of them (id or address).',
    check: function (config, errors) {
      const models = config.models as { aliases?: Array<{ name?: unknown }>; declared?: Array<{ replica?: unknown }> } | undefined;
      if (!models) return;
      const names: { [name: string]: number } = Object.create(null);
      const aliases = models.aliases || [];
      for (let i = 0; i < aliases.length; i++) {
        const name = aliases[i] ? aliases[i].name : undefined;
        if (typeof name !== 'string') continue;
        if (names[name] !== undefined) {
          errors.push({ path: 'models.aliases[' + i + '].name', message: 'must be unique, got ' + quote(name) + ' again (models.aliases[' + names[name] + '] has it)' });
        } else names[name] = i;
      }
      const replicas = (config.replicas || []) as Array<{ id?: unknown; address?: unknown } | undefined>;
      const seen: { [replica: string]: number } = Object.create(null);
      const declared = models.declared || [];
      for (let i = 0; i < declared.length; i++) {
        const replica = declared[i] ? declared[i].replica : undefined;
        if (typeof replica !== 'string') continue;
        if (seen[replica] !== undefined) {
          errors.push({ path: 'models.declared[' + i + '].replica', message: 'must be unique, got ' + quote(replica) + ' again (models.declared[' + seen[replica] + '] has it)' });
          continue;
        }
        seen[replica] = i;
        if (replicas.length === 0) continue;
        let known = false;
        for (let j = 0; j < replicas.length && !known; j++) {
          const r = replicas[j];
          if (r && (r.id === replica || r.address === replica)) known = true;
        }
        if (!known) errors.push({ path: 'models.declared[' + i + '].replica', message: 'must be the id or address of one of the replicas, got ' + quote(replica) });
      }
    },
  },
];

// ---------------------------------------------------------------------------------------------
// host:port

/** null when `text` is host:port with a port 1-65535; otherwise a hint ('' when none helps). */
export function hostPortProblem(text: string): string | null {
  if (text.indexOf('://') >= 0) return 'without a scheme';
  let host: string;
  let port: string;
  if (text.charAt(0) === '[') {
    const close = text.indexOf(']');
    if (close < 0 || text.charAt(close + 1) !== ':') return close < 0 ? '' : 'no port';
    host = text.slice(1, close);
    port = text.slice(close + 2);
    if (!isIpv6(host)) return 'not an IPv6 address in the brackets';
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return 'no port';
    host = text.slice(0, colon);
    port = text.slice(colon + 1);
    if (host.indexOf(':') >= 0) return 'IPv6 addresses go in brackets, e.g. [::1]:8000';
    if (host === '') return 'empty host';
    if (!isHostname(host)) return 'not a hostname or IPv4 address';
  }
  if (!/^[0-9]{1,5}$/.test(port)) return port === '' ? 'no port' : '';
  const number = parseInt(port, 10);
  return number >= 1 && number <= 65535 ? null : '';
}

// Hostname labels per RFC 1123, plus '_' which Docker and Kubernetes service names use.
const LABEL = /^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?$/;

function isHostname(host: string): boolean {
  // 253: the longest name DNS can carry (255 octets on the wire minus length bytes).
  if (host.length > 253) return false;
  // One trailing dot marks a fully qualified name ("gpu.internal."), which resolvers accept.
  const allNumeric = /^[0-9.]+$/.test(host);
  const labels = (!allNumeric && host.charAt(host.length - 1) === '.' ? host.slice(0, -1) : host).split('.');
  if (allNumeric) {
    if (labels.length !== 4) return false;
    for (let i = 0; i < 4; i++) {
      if (!/^[0-9]{1,3}$/.test(labels[i]) || parseInt(labels[i], 10) > 255) return false;
    }
    return true;
  }
  for (let i = 0; i < labels.length; i++) {
    // 63: the longest DNS label.
    if (labels[i].length > 63 || !LABEL.test(labels[i])) return false;
  }
  return true;
}

function isIpv6(host: string): boolean {
  if (!/^[0-9A-Fa-f:.]+$/.test(host) || host.indexOf(':') < 0) return false;
  const halves = host.split('::');
  if (halves.length > 2) return false;
  let groups = 0;
  for (let h = 0; h < halves.length; h++) {
    if (halves[h] === '') continue;
    const parts = halves[h].split(':');
    for (let i = 0; i < parts.length; i++) {
      const last = h === halves.length - 1 && i === parts.length - 1;
      if (last && parts[i].indexOf('.') >= 0) {
        if (!isHostname(parts[i]) || !/^[0-9.]+$/.test(parts[i])) return false;
        groups += 2; // an embedded IPv4 address fills two 16-bit groups
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(parts[i])) {
        groups += 1;
      } else {
        return false;
      }
    }
  }
  // 8 groups of 16 bits; '::' stands for at least one zero group.
  return halves.length === 2 ? groups <= 7 : groups === 8;
}

// ---------------------------------------------------------------------------------------------
// Messages

function join(path: string, name: string): string {
  return path === '' ? name : path + '.' + name;
}

function isRecord(value: unknown): value is Dict {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function copyJson(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value));
}

// Long values are cut so one bad field cannot flood a log line.
const QUOTE_MAX = 80;

/**
 * A value inside an error message, as a JSON string; the line and paragraph separators and C1
 * controls, which JSON.stringify leaves raw, are escaped too: an error stays on its line.
 */
export function quote(text: string): string {
  return JSON.stringify(text.length > QUOTE_MAX ? text.slice(0, QUOTE_MAX - 3) + '...' : text).replace(/[\u007f-\u009f\u2028\u2029]/g, function (c) {
    return '\\u' + ('000' + c.charCodeAt(0).toString(16)).slice(-4);
  });
}

/** The type and, for scalars, the value: `string "1"`, `number 1.5`, `array`, `null`. */
function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return 'string ' + quote(value);
  if (typeof value === 'number' || typeof value === 'boolean') return typeof value + ' ' + String(value);
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** ' (did you mean "strategy"?)' from a near sibling or an exact name elsewhere; else the known names. */
function suggestion(key: string, known: string[]): string {
  const wanted = normalise(key);
  let best = '';
  let bestDistance = Infinity;
  for (let i = 0; i < known.length; i++) {
    const distance = editDistance(wanted, normalise(known[i]));
    if (distance < bestDistance) {
      best = known[i];
      bestDistance = distance;
    }
  }
  // Up to a third of the name may be wrong (at least one edit): typos, not different words.
  if (best !== '' && bestDistance <= Math.max(1, Math.floor(key.length / 3))) return ' (did you mean "' + best + '"?)';
  const all = fieldPaths();
  for (let i = 0; i < all.length; i++) {
    if (normalise(all[i].name) === wanted) {
      return ' (did you mean "' + all[i].path + '"?)';
    }
  }
  return known.length > 0 ? ' (known fields: ' + known.join(', ') + ')' : '';
}

function normalise(name: string): string {
  return name.toLowerCase().replace(/-/g, '_');
}

/** Levenshtein distance, two rows. */
function editDistance(a: string, b: string): number {
  let previous: number[] = [];
  for (let j = 0; j <= b.length; j++) previous.push(j);
  for (let i = 1; i <= a.length; i++) {
    const current: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a.charAt(i - 1) === b.charAt(j - 1) ? 0 : 1);
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length];
}
