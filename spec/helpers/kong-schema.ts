// Offline check of a plugin schema against the rules Kong applies when it loads an external
// plugin: kong/db/schema/plugin_loader.lua validates the Schema from the plugin server's dump
// with MetaSchema.MetaSubSchema (kong/db/schema/metaschema.lua). Kong itself cannot run here,
// so this re-states those rules (Kong 3.4+: `description` allowed, `between` takes numbers).

/** Field types Kong knows (Schema.valid_types). */
const VALID_TYPES = new Set(['array', 'set', 'string', 'number', 'boolean', 'integer', 'foreign', 'map', 'record', 'function', 'json']);

/** Attributes a field may carry (metaschema field_schema + validators + nested ones). */
const ALLOWED_ATTRIBUTES = new Set([
  'type', 'required', 'reference', 'description', 'examples', 'auto', 'unique', 'unique_across_ws', 'on_delete',
  'default', 'abstract', 'generate_admin_api', 'immutable', 'err', 'encrypted', 'referenceable', 'json_schema',
  'transient', 'deprecation',
  'between', 'eq', 'ne', 'gt', 'len_eq', 'len_min', 'len_max', 'match', 'not_match', 'match_all', 'match_none',
  'match_any', 'starts_with', 'one_of', 'not_one_of', 'contains', 'is_regex', 'timestamp', 'uuid', 'custom_validator',
  'mutually_exclusive_subsets',
  'elements', 'keys', 'values', 'fields', 'entity_checks', 'shorthand_fields',
]);

/** metaschema required_attributes */
const REQUIRED_BY_TYPE: Record<string, string[]> = {
  array: ['elements'],
  set: ['elements'],
  map: ['keys', 'values'],
  record: ['fields'],
  json: ['json_schema'],
};

/** metaschema attribute_types (subset that matters for config schemas) */
const ATTRIBUTE_TYPES: Record<string, string[]> = {
  between: ['integer', 'number'],
  len_eq: ['array', 'set', 'string', 'map'],
  match: ['string'],
  one_of: ['string', 'number', 'integer'],
  contains: ['array', 'set'],
  is_regex: ['string'],
  timestamp: ['number', 'integer'],
  uuid: ['string'],
};

type Field = Record<string, unknown>;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function valueMatchesType(value: unknown, field: Field): boolean {
  switch (field.type) {
    case 'string':
      return typeof value === 'string';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'integer':
      return Number.isInteger(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'array':
    case 'set':
      return Array.isArray(value);
    case 'map':
    case 'record':
      return isObject(value);
    default:
      return true;
  }
}

function checkField(where: string, field: unknown, problems: string[]): void {
  if (!isObject(field)) {
    problems.push(`${where}: must be a table (object)`);
    return;
  }
  const type = field.type;
  if (typeof type !== 'string') {
    problems.push(`${where}: missing type declaration`);
    return;
  }
  if (!VALID_TYPES.has(type)) problems.push(`${where}: unknown type '${type}'`);
  for (const attr of Object.keys(field)) {
    if (!ALLOWED_ATTRIBUTES.has(attr)) problems.push(`${where}: unknown field attribute '${attr}'`);
    const types = ATTRIBUTE_TYPES[attr];
    if (types && !types.includes(type)) problems.push(`${where}: field of type '${type}' cannot have attribute '${attr}'`);
  }
  const required = field.abstract && type === 'record' ? [] : REQUIRED_BY_TYPE[type] ?? [];
  for (const attr of required) {
    if (field[attr] === undefined) problems.push(`${where}: field of type '${type}' must declare '${attr}'`);
  }
  if (field.description !== undefined) {
    const d = field.description;
    if (typeof d !== 'string' || d.length < 10 || d.length > 500) {
      problems.push(`${where}: description must be a string of 10 to 500 characters`);
    }
  }
  if (field.between !== undefined) {
    const b = field.between;
    if (!Array.isArray(b) || b.length !== 2 || !b.every((n) => typeof n === 'number')) {
      problems.push(`${where}: between must be [min, max] numbers`);
    }
  }
  if (field.one_of !== undefined && !Array.isArray(field.one_of)) problems.push(`${where}: one_of must be an array`);
  if (field.default !== undefined && field.default !== null) {
    const def = field.default;
    if (!valueMatchesType(def, field)) problems.push(`${where}: default ${JSON.stringify(def)} is not a ${type}`);
    if (Array.isArray(field.one_of) && !field.one_of.includes(def)) {
      problems.push(`${where}: default ${JSON.stringify(def)} is not one of ${JSON.stringify(field.one_of)}`);
    }
    if (Array.isArray(field.between) && typeof def === 'number' && (def < field.between[0] || def > field.between[1])) {
      problems.push(`${where}: default ${def} is outside between ${JSON.stringify(field.between)}`);
    }
  }
  for (const nested of ['elements', 'keys', 'values']) {
    if (field[nested] !== undefined) checkField(`${where}.${nested}`, field[nested], problems);
  }
  if (field.fields !== undefined) checkFields(where, field.fields, problems);
}

function checkFields(where: string, fields: unknown, problems: string[]): void {
  if (!Array.isArray(fields)) {
    problems.push(`${where}.fields: must be an array of { name: field } entries`);
    return;
  }
  fields.forEach((entry, i) => {
    if (!isObject(entry)) {
      problems.push(`${where}.fields[${i}]: each entry in fields must be a sub-table`);
      return;
    }
    const names = Object.keys(entry);
    if (names.length !== 1) {
      problems.push(`${where}.fields[${i}]: must have exactly one key (the field name), has ${JSON.stringify(names)}`);
      return;
    }
    checkField(`${where}.${names[0]}`, entry[names[0]], problems);
  });
}

/**
 * Problems Kong's MetaSubSchema would report for a plugin schema as the plugin server dumps it
 * ({ name, fields: [{ config: { type: 'record', fields: [...] } }] }). Empty when acceptable.
 */
export function kongSchemaProblems(schema: unknown): string[] {
  const problems: string[] = [];
  if (!isObject(schema)) return ['schema must be an object'];
  if (typeof schema.name !== 'string' || !schema.name) problems.push('schema.name must be a non-empty string');
  checkFields('schema', schema.fields, problems);
  return problems;
}
