// The lint rules that keep shared/ and plugins/nginx/ inside what njs 0.8.9 loads and runs,
// and shared/ pure. Uses the repository's eslint.config.js through ESLint's Node API.
import path from 'node:path';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/nginx-env';

const eslint = new ESLint({ cwd: REPO_ROOT });

async function lint(code: string, file: string) {
  const results = await eslint.lintText(code, { filePath: path.join(REPO_ROOT, file), warnIgnored: true });
  return results[0].messages;
}

const SHARED = 'shared/__lint_fixture__.ts';
const NGINX = 'plugins/nginx/__lint_fixture__.ts';
const KONG = 'plugins/kong/__lint_fixture__.ts';

// [what, code, rule that must report it, a fragment of the message]
const njsForbidden: [string, string, string, string][] = [
  ['class declaration', 'export class A { x = 1; }', 'no-restricted-syntax', 'class'],
  ['class expression', 'export const A = class { };', 'no-restricted-syntax', 'class'],
  ['for...of', 'export function f(a: number[]) { let s = 0; for (const x of a) s += x; return s; }', 'no-restricted-syntax', 'for...of'],
  ['array spread', 'export const f = (a: number[]) => [...a, 1];', 'no-restricted-syntax', 'spread'],
  ['call spread', 'export const f = (a: number[]) => Math.max(...a);', 'no-restricted-syntax', 'spread'],
  ['object spread', 'export const f = (o: object) => ({ ...o, a: 1 });', 'no-restricted-syntax', 'spread'],
  ['object destructuring declaration', 'export function f(o: { a: number }) { const { a } = o; return a; }', 'no-restricted-syntax', 'destructuring'],
  ['array destructuring declaration', 'export function f(o: number[]) { const [a] = o; return a; }', 'no-restricted-syntax', 'destructuring'],
  ['destructuring parameter', 'export const f = ({ a }: { a: number }) => a;', 'no-restricted-syntax', 'destructuring'],
  ['destructuring assignment', 'let a = 0; let b = 0; [a, b] = [b, a]; export { a, b };', 'no-restricted-syntax', 'destructuring'],
  ['object rest', 'export function f(o: { a: number; b: number }) { const { a, ...rest } = o; return [a, rest]; }', 'no-restricted-syntax', 'destructuring'],
  ['default parameter', 'export function f(a = 1) { return a; }', 'no-restricted-syntax', 'default parameters'],
  ['optional chaining member', 'export const f = (o?: { a: number }) => o?.a;', 'no-restricted-syntax', 'optional chaining'],
  ['optional chaining call', 'export const f = (g?: () => number) => g?.();', 'no-restricted-syntax', 'optional chaining'],
  ['generator function', 'export function* g() { yield 1; }', 'no-restricted-syntax', 'generators'],
  ['generator method', 'export const o = { *g() { yield 1; } };', 'no-restricted-syntax', 'generators'],
  ['catch without binding', 'export function f() { try { return 1; } catch { return 2; } }', 'no-restricted-syntax', 'catch'],
  ['??=', 'export function f(o: { a?: number }) { o.a ??= 1; return o; }', 'no-restricted-syntax', 'logical assignment'],
  ['||=', 'export function f(o: { a?: number }) { o.a ||= 1; return o; }', 'no-restricted-syntax', 'logical assignment'],
  ['&&=', 'export function f(o: { a?: number }) { o.a &&= 1; return o; }', 'no-restricted-syntax', 'logical assignment'],
  ['BigInt literal', 'export const n = 10n;', 'no-restricted-syntax', 'BigInt'],
  ['BigInt()', 'export const n = BigInt(10);', 'no-restricted-globals', 'BigInt'],
  ['new.target', 'export function F() { return new.target; }', 'no-restricted-syntax', 'new.target'],
  ['dynamic import', 'export const f = () => import("./x");', 'no-restricted-syntax', 'dynamic import'],
  ['tagged template', 'const t = (s: TemplateStringsArray) => s[0]; export const v = t`x`;', 'no-restricted-syntax', 'tagged templates'],
  ['regex u flag', 'export const r = /\\p{L}/u;', 'no-restricted-syntax', 'flags'],
  ['regex s flag', 'export const r = /a.b/s;', 'no-restricted-syntax', 'flags'],
  ['new Map', 'export const m = new Map<string, number>();', 'no-restricted-globals', 'no Map'],
  ['new Set', 'export const s = new Set<string>();', 'no-restricted-globals', 'no Set'],
  ['new WeakMap', 'export const m = new WeakMap<object, number>();', 'no-restricted-globals', 'no WeakMap'],
  ['new WeakSet', 'export const s = new WeakSet<object>();', 'no-restricted-globals', 'no WeakSet'],
  ['new Proxy', 'export const p = new Proxy({}, {});', 'no-restricted-globals', 'no Proxy'],
  ['Reflect', 'export const k = Reflect.ownKeys({});', 'no-restricted-globals', 'no Reflect'],
  ['structuredClone', 'export const c = structuredClone({ a: 1 });', 'no-restricted-globals', 'structuredClone'],
  ['.flat()', 'export const f = (a: number[][]) => a.flat();', 'no-restricted-syntax', 'lacks this method'],
  ['.flatMap()', 'export const f = (a: number[]) => a.flatMap((x) => [x]);', 'no-restricted-syntax', 'lacks this method'],
  ['.at()', 'export const f = (a: number[]) => a.at(-1);', 'no-restricted-syntax', 'lacks this method'],
  ['.findLast()', 'export const f = (a: number[]) => a.findLast((x) => x > 1);', 'no-restricted-syntax', 'lacks this method'],
  ['.localeCompare()', 'export const f = (a: string[]) => a.sort((x, y) => x.localeCompare(y));', 'no-restricted-syntax', 'lacks this method'],
  ['Object.fromEntries', 'export const o = Object.fromEntries([["a", 1]]);', 'no-restricted-properties', 'Object.fromEntries'],
  ['Object.hasOwn', 'export const h = (o: object) => Object.hasOwn(o, "a");', 'no-restricted-properties', 'Object.hasOwn'],
  ['f(await x)', 'export async function f(p: Promise<number>) { return String(await p); }', 'local/njs-no-await-in-arguments', 'await'],
  ['o.m(1 + await x)', 'export async function f(a: number[], p: Promise<number>) { a.push(1 + await p); }', 'local/njs-no-await-in-arguments', 'await'],
  ['new C(await x)', 'export async function f(p: Promise<number>) { return new Date(await p); }', 'local/njs-no-await-in-arguments', 'await'],
  ['(await x)()', 'export async function f(p: Promise<() => number>) { return (await p)(); }', 'local/njs-no-await-in-arguments', 'await'],
  ['`${await x}`', 'export async function f(p: Promise<number>) { return `v=${await p}`; }', 'local/njs-no-await-in-arguments', 'await'],
];

// Only shared/ must be pure: these are fine in plugins/nginx/.
const pureForbidden: [string, string, string, string][] = [
  ['Date.now()', 'export const now = () => Date.now();', 'no-restricted-properties', 'Date.now()'],
  ['new Date()', 'export const now = () => new Date().getTime();', 'no-restricted-syntax', 'new Date()'],
  ['Math.random()', 'export const r = () => Math.random();', 'no-restricted-properties', 'Math.random()'],
  ['process', 'export const e = () => process.env.X;', 'no-restricted-globals', 'process'],
  ['ngx', 'export const s = () => (ngx as unknown as { shared: unknown }).shared;', 'no-restricted-globals', 'ngx'],
  ['declare const (a host global in disguise)', 'declare const ngx: { shared: unknown }; export const s = () => ngx.shared;', 'no-restricted-syntax', 'ambient'],
  ['declare global', 'declare global { var clock: () => number; } export {};', 'no-restricted-syntax', 'ambient'],
  ['console', 'export const log = (m: string) => console.log(m);', 'no-restricted-globals', 'console'],
  ['setTimeout', 'export const later = (f: () => void) => setTimeout(f, 1);', 'no-restricted-globals', 'setTimeout'],
  ['import from plugins/', 'import { x } from "../plugins/nginx/index"; export const y = x;', 'local/shared-imports-stay-inside', 'outside shared/'],
  ['import from ../build', 'import { x } from "../build/thing"; export const y = x;', 'local/shared-imports-stay-inside', 'outside shared/'],
  ['export from outside', 'export { x } from "../spec/helpers/nginx-env";', 'local/shared-imports-stay-inside', 'outside shared/'],
  ['node: builtin', 'import fs from "node:fs"; export const r = fs.readFileSync;', 'no-restricted-imports', 'node:*'],
  ['bare package', 'import YAML from "yaml"; export const p = YAML.parse;', 'no-restricted-imports', 'no packages'],
  ['type-only import of a package', 'import type { Plugin } from "vite"; export type P = Plugin;', 'no-restricted-imports', 'no packages'],
];

const clean = `
import type { Thing } from './types';
import { helper } from './util/helper';

const RECORD = Object.create(null) as Record<string, number>;

export async function load(get: (k: string) => Promise<number>, keys: string[]): Promise<number> {
  let total = 0;
  for (let i = 0; i < keys.length; i++) {
    const v = await get(keys[i]);
    RECORD[keys[i]] = v;
    total += v;
  }
  const label = \`total=\${total}\`;
  return label.length > 0 ? total : helper(total);
}

export function pick(items: Thing[], rest: number, ...more: number[]): Thing | null {
  const scores = items.map((t) => t.weight * 2);
  const merged = Object.assign({}, { a: 1 }, { b: rest + more.length });
  const copy = items.slice().concat([]);
  for (const k in merged) {
    if (Object.prototype.hasOwnProperty.call(merged, k)) scores.push(1);
  }
  const best = copy.length ? copy[0] : null;
  const fallback = best ?? null;
  return scores.length > 0 && fallback !== null ? fallback : null;
}

export function tryParse(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch (e) {
    return e instanceof Error ? null : undefined;
  }
}

export const sizes = (m: ReadonlyMap<string, number>): number => m.size;
export default { load, pick, tryParse };
`;

describe('njs subset lint rules (shared/ and plugins/nginx/)', () => {
  it.each(njsForbidden)('reports %s in shared/', async (_what, code, ruleId, fragment) => {
    const messages = await lint(code, SHARED);
    const hit = messages.find((m) => m.ruleId === ruleId);
    expect(hit, JSON.stringify(messages, null, 1)).toBeDefined();
    expect(hit!.message).toContain(fragment);
    expect(hit!.severity).toBe(2);
  });

  it.each(njsForbidden)('reports %s in plugins/nginx/', async (_what, code, ruleId) => {
    const messages = await lint(code, NGINX);
    expect(messages.map((m) => m.ruleId)).toContain(ruleId);
  });

  it.each(njsForbidden)('does not report %s in plugins/kong/ (runs in Node)', async (_what, code, ruleId) => {
    const messages = await lint(code, KONG);
    expect(messages.map((m) => m.ruleId)).not.toContain(ruleId);
  });
});

describe('pure core lint rules (shared/ only)', () => {
  it.each(pureForbidden)('reports %s in shared/', async (_what, code, ruleId, fragment) => {
    const messages = await lint(code, SHARED);
    const hit = messages.find((m) => m.ruleId === ruleId);
    expect(hit, JSON.stringify(messages, null, 1)).toBeDefined();
    expect(hit!.message).toContain(fragment);
  });

  it.each(pureForbidden.filter((row) => !row[2].includes('import')))('allows %s in plugins/nginx/', async (_what, code, ruleId) => {
    const messages = await lint(code, NGINX);
    expect(messages.map((m) => m.ruleId)).not.toContain(ruleId);
  });

  it('allows imports between files inside shared/', async () => {
    const messages = await lint('import { a } from "./strategies/index"; import { b } from "../shared/types"; export const c = [a, b];', SHARED);
    expect(messages).toEqual([]);
  });
});

describe('clean code', () => {
  it.each([SHARED, 'shared/strategies/__lint_fixture__.ts', NGINX])('reports nothing for njs-safe code in %s', async (file) => {
    const messages = await lint(clean, file);
    expect(messages).toEqual([]);
  });

  it('allows await as a statement, in assignments, returns and awaits in callbacks', async () => {
    const code = `
      export async function f(p: Promise<number>, q: (g: () => Promise<void>) => void): Promise<number> {
        const v = await p;
        const w = 1 + (await p);
        q(async () => { await p; });
        return await p + v + w;
      }`;
    expect(await lint(code, SHARED)).toEqual([]);
  });
});
