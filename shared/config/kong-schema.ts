// The Kong plugin schema, generated from schema.ts: the value of the JS plugin's `Schema` export.
//
// kong-js-pluginserver (kong-pdk 0.6.0, server.js GetPluginInfo) wraps that export as
//   { name, fields: [{ config: { type: 'record', fields: <Schema> } }] }
// and `--dump-all-plugins` prints it with JSON.stringify, which Kong decodes with cjson
// (kong/runloop/plugin_servers/process.lua) and checks with MetaSchema.MetaSubSchema
// (kong/db/schema/plugin_loader.lua). So the export must be plain JSON in Kong's field format,
// and only attributes the metaschema knows (our also_allowed / hint / format are translated or dropped).
//
// Records, checked against Kong 3.10's source (kong/db/schema/init.lua, entity.lua):
// - Entity.new_subschema runs make_records_required on a plugin schema: every record whose
//   `required` is unset becomes required. A required record that is missing is built from its
//   fields' defaults (handle_missing_field -> process_auto_fields), which is what our nested option
//   records want. We emit `required: true` explicitly rather than rely on that rewrite.
// - A record with `required: false` and no default is filled with null when missing
//   (handle_missing_field: "If not `required`, it is nullable"). That is how Kong's own acme plugin
//   declares its optional `account_key` record, and how we declare `hash_key`. We emit no
//   `default: null`: JSON null would decode to cjson.null, which works but says nothing more.
// Kong cannot express the cross-field rules; the plugin runs validate() on every config anyway.

import { schema, entryName } from './schema';
import type { FieldEntry, FieldSpec, FieldType } from './schema';

export interface KongFieldSpec {
  type: FieldType;
  description?: string;
  default?: unknown;
  required?: boolean;
  one_of?: Array<string | number>;
  not_one_of?: number[];
  between?: [number, number];
  len_min?: number;
  len_max?: number;
  match?: string;
  fields?: KongField[];
  elements?: KongFieldSpec;
}

export type KongField = { [name: string]: KongFieldSpec };

// Lua patterns for our named formats: a coarse shape check so the Admin API rejects obvious
// mistakes at configuration time; validate() does the full check inside the plugin.
const FORMAT_MATCH: { [format: string]: string } = {
  'host-port': '^.+:%d+$',
  'url-path': '^/[^%s]*$',
};

// Integer gaps listed in not_one_of up to this many values; wider gaps are left to validate().
const MAX_EXCLUDED = 16;

/**
 * The fields of the plugin's `config` record, as Kong's plugin schema wants them: the shared
 * options, then `adapterFields` (the Kong adapter's own section, plugins/kong/options.ts).
 */
export function kongSchema(adapterFields?: FieldEntry[]): KongField[] {
  return convertFields(adapterFields ? schema.concat(adapterFields) : schema);
}

function convertFields(fields: FieldEntry[]): KongField[] {
  const out: KongField[] = [];
  for (let i = 0; i < fields.length; i++) {
    const name = entryName(fields[i]);
    const entry: KongField = {};
    entry[name] = convertField(fields[i][name]);
    out.push(entry);
  }
  return out;
}

function convertField(spec: FieldSpec): KongFieldSpec {
  const out: KongFieldSpec = { type: spec.type };
  if (spec.description !== undefined) out.description = spec.description;
  if (spec.required !== undefined) out.required = spec.required;
  if (spec.default !== undefined) out.default = JSON.parse(JSON.stringify(spec.default));
  if (spec.one_of !== undefined) {
    const excluded = spec.kong_excluded || [];
    out.one_of = spec.one_of.filter((value) => excluded.indexOf(String(value)) < 0);
  }
  if (spec.between !== undefined) {
    // Kong has one interval per field: widen it over the sentinels and exclude, for integers,
    // the values in between that are not allowed (least_connections.choices: [0, 16] minus 1).
    const allowed = spec.also_allowed || [];
    let low = spec.between[0];
    let high = spec.between[1];
    for (let i = 0; i < allowed.length; i++) {
      low = Math.min(low, allowed[i]);
      high = Math.max(high, allowed[i]);
    }
    out.between = [low, high];
    if (spec.type === 'integer' && allowed.length > 0) {
      const excluded: number[] = [];
      collectGap(Math.ceil(low), spec.between[0] - 1, allowed, excluded);
      collectGap(spec.between[1] + 1, Math.floor(high), allowed, excluded);
      if (excluded.length > 0 && excluded.length <= MAX_EXCLUDED) out.not_one_of = excluded;
    }
  }
  if (spec.len_min !== undefined) out.len_min = spec.len_min;
  if (spec.len_max !== undefined) out.len_max = spec.len_max;
  if (spec.format !== undefined && FORMAT_MATCH[spec.format] !== undefined) out.match = FORMAT_MATCH[spec.format];
  if (spec.fields !== undefined) out.fields = convertFields(spec.fields);
  if (spec.elements !== undefined) out.elements = convertField(spec.elements);
  return out;
}

/** Integers from..to that are not sentinels, stopping once there are too many to list. */
function collectGap(from: number, to: number, allowed: number[], excluded: number[]): void {
  for (let n = from; n <= to && excluded.length <= MAX_EXCLUDED; n++) {
    if (allowed.indexOf(n) < 0) excluded.push(n);
  }
}
