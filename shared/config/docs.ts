// The README's option reference, rendered from schema.ts (and the rule sentences of validate.ts),
// so the docs cannot drift from what validate() accepts. build/docs.js writes it into README.md.

import { fieldPaths } from './schema';
import type { FieldEntry, FieldSpec } from './schema';
import { rules } from './validate';

/**
 * A Markdown table with one row per option of `fields` (default: the shared schema): dotted path,
 * type, default, allowed values, description.
 */
export function configTable(fields?: FieldEntry[]): string {
  const lines: string[] = [
    '| Option | Type | Default | Allowed | Description |',
    '|---|---|---|---|---|',
  ];
  const paths = fieldPaths(fields);
  for (let i = 0; i < paths.length; i++) {
    const spec = paths[i].spec;
    lines.push(
      '| ' +
        [code(paths[i].path), typeText(spec), defaultText(spec), allowedText(spec), spec.description || '']
          .map(cell)
          .join(' | ') +
        ' |',
    );
  }
  return lines.join('\n');
}

/** The rules between options that the table cannot show, as a Markdown list. */
export function configRules(): string {
  const lines: string[] = [];
  for (let i = 0; i < rules.length; i++) lines.push('- ' + rules[i].rule);
  return lines.join('\n');
}

/** What build/docs.js puts between the README markers: the table, then the cross-field rules. */
export function configSection(): string {
  return configTable() + '\n\nRules across options:\n\n' + configRules() + '\n';
}

function typeText(spec: FieldSpec): string {
  return spec.type === 'array' && spec.elements ? 'array of ' + spec.elements.type : spec.type;
}

function defaultText(spec: FieldSpec): string {
  if (spec.default !== undefined) return code(valueText(spec.default));
  if (spec.type === 'record') return spec.required ? 'see its fields' : code('null');
  return spec.required ? 'required' : 'unset';
}

function allowedText(spec: FieldSpec): string {
  const parts: string[] = [];
  if (spec.one_of) parts.push(codeList(spec.one_of));
  if (spec.between) {
    const range = spec.between[0] + ' – ' + spec.between[1];
    parts.push(spec.also_allowed && spec.also_allowed.length > 0 ? spec.also_allowed.join(', ') + ', or ' + range : range);
  }
  if (spec.format === 'host-port') parts.push('`host:port` or `[IPv6]:port`, port 1 – 65535');
  if (spec.format === 'url-path') parts.push('a path starting with `/`');
  if (spec.format === 'printable') parts.push('no control characters');
  const unit = spec.type === 'array' ? ' items' : ' characters';
  if (spec.len_min !== undefined && spec.len_max !== undefined) {
    parts.push(spec.len_min + ' – ' + spec.len_max + unit);
  } else if (spec.len_min !== undefined) {
    parts.push('at least ' + spec.len_min + unit);
  } else if (spec.len_max !== undefined) {
    parts.push('at most ' + spec.len_max + unit);
  }
  if (spec.type === 'array' && spec.elements && spec.elements.one_of) {
    parts.push('each one of ' + codeList(spec.elements.one_of));
  }
  if (spec.type === 'boolean') parts.push(codeList([true, false]));
  return parts.length > 0 ? parts.join('; ') : '';
}

function valueText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const items: string[] = [];
    for (let i = 0; i < value.length; i++) items.push(valueText(value[i]));
    return '[' + items.join(', ') + ']';
  }
  return JSON.stringify(value);
}

function codeList(values: Array<string | number | boolean>): string {
  const items: string[] = [];
  for (let i = 0; i < values.length; i++) items.push(code(String(values[i])));
  return items.join(', ');
}

function code(text: string): string {
  return '`' + text + '`';
}

/** A table cell: pipes would end the cell, newlines the row. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}
