// dist/kong/llm-balancer.js loads in the REAL kong-js-pluginserver (kong-pdk 0.6.0), and its
// `--dump-all-plugins` output, which is what Kong reads through pluginserver_<name>_query_cmd,
// describes our plugin the way Kong needs it. Builds nothing itself: npm test's pretest builds.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KONG_OUTFILE } from '../build/build.js';
import { kongSchemaProblems } from './helpers/kong-schema';
import { REPO_ROOT } from './helpers/nginx-env';
import { kongSchema, schema } from '../shared/config/index';
import { kongOptionsSchema } from '../plugins/kong/options';

const PLUGIN_SERVER = path.join(REPO_ROOT, 'node_modules', 'kong-pdk', 'bin', 'kong-js-pluginserver');

interface KongField {
  type: string;
  one_of?: unknown[];
  fields?: Record<string, KongField>[];
  elements?: KongField;
  [attr: string]: unknown;
}

interface PluginInfo {
  Name: string;
  Version: string;
  Priority: number;
  Phases: string[];
  Schema: { name: string; fields: Record<string, KongField>[] };
}

function field(fields: Record<string, KongField>[] | undefined, name: string): KongField | undefined {
  const entry = (fields ?? []).find((f) => Object.keys(f)[0] === name);
  return entry ? entry[name] : undefined;
}

function dumpAllPlugins(dir: string): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [PLUGIN_SERVER, '-d', dir, '--dump-all-plugins'],
      // cwd outside the checkout, as under Kong: the server's ts-node reads the tsconfig.json
      // above its working directory.
      { cwd: dir, timeout: 20_000, killSignal: 'SIGKILL', encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        resolve({ stdout, stderr, code: error ? (typeof error.code === 'number' ? error.code : null) : 0 });
      },
    );
    child.stdin?.end();
  });
}

describe('dist/kong/llm-balancer.js in kong-js-pluginserver --dump-all-plugins', () => {
  let dir = '';
  let infos: PluginInfo[] = [];

  beforeAll(async () => {
    if (!fs.existsSync(KONG_OUTFILE)) {
      throw new Error(`${path.relative(REPO_ROOT, KONG_OUTFILE)} is missing: run \`node build/build.js\` (npm test's pretest does)`);
    }
    // A directory holding only the bundle, as a deployment would (the server loads every file in it).
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-kong-spec-'));
    fs.copyFileSync(KONG_OUTFILE, path.join(dir, path.basename(KONG_OUTFILE)));
    const r = await dumpAllPlugins(dir);
    // Kong parses this stdout as JSON: a load warning (the server logs to stdout) breaks Kong too.
    try {
      infos = JSON.parse(r.stdout) as PluginInfo[];
    } catch {
      throw new Error(`kong-js-pluginserver --dump-all-plugins did not print JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
    }
  });

  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  function plugin(): PluginInfo {
    const info = infos.find((i) => i.Name === 'llm-balancer');
    if (!info) throw new Error(`no plugin named llm-balancer in the dump: ${JSON.stringify(infos.map((i) => i.Name))}`);
    return info;
  }

  it('lists exactly one plugin, named llm-balancer (Kong 3.9+ uses only the first one per server)', () => {
    expect(infos.map((i) => i.Name)).toEqual(['llm-balancer']);
  });

  it('has a version, a numeric priority and the access and log phases', () => {
    const info = plugin();
    expect(info.Version).toMatch(/^\d+\.\d+\.\d+/);
    expect(typeof info.Priority).toBe('number');
    expect(Number.isInteger(info.Priority)).toBe(true);
    expect(info.Phases).toEqual(expect.arrayContaining(['access', 'log']));
  });

  it('wraps the exported Schema as the config record of the plugin schema', () => {
    const schema = plugin().Schema;
    expect(schema.name).toBe('llm-balancer');
    expect(schema.fields).toHaveLength(1);
    const config = field(schema.fields, 'config');
    expect(config?.type).toBe('record');
    expect(Array.isArray(config?.fields)).toBe(true);
  });

  it('has config.strategy with least-connections among its one_of values', () => {
    const strategy = field(field(plugin().Schema.fields, 'config')?.fields, 'strategy');
    expect(strategy?.type).toBe('string');
    expect(strategy?.one_of).toContain('least-connections');
  });

  it('has config.replicas', () => {
    const replicas = field(field(plugin().Schema.fields, 'config')?.fields, 'replicas');
    expect(replicas, 'config.replicas').toBeDefined();
    expect(replicas?.type).toBe('array');
  });

  it('carries the full schema generated from shared/config: every option, default and range', () => {
    expect(field(plugin().Schema.fields, 'config')?.fields).toEqual(kongSchema(kongOptionsSchema));
    expect(kongSchema(kongOptionsSchema).map((entry) => Object.keys(entry)[0])).toEqual(schema.map((entry) => Object.keys(entry)[0]).concat(['kong']));
  });

  it("passes the rules of Kong's metaschema (field shapes, attributes, defaults)", () => {
    expect(kongSchemaProblems(plugin().Schema)).toEqual([]);
  });
});

describe('kongSchemaProblems', () => {
  it.each([
    ['a field entry with two keys', [{ a: { type: 'string' }, b: { type: 'string' } }], 'exactly one key'],
    ['an unknown type', [{ a: { type: 'text' } }], "unknown type 'text'"],
    ['an array without elements', [{ a: { type: 'array' } }], "must declare 'elements'"],
    ['one_of on an array', [{ a: { type: 'array', elements: { type: 'string' }, one_of: [] } }], "cannot have attribute 'one_of'"],
    ['an unknown attribute', [{ a: { type: 'string', doc: 'x' } }], "unknown field attribute 'doc'"],
    ['a short description', [{ a: { type: 'string', description: 'short' } }], '10 to 500'],
    ['a default outside one_of', [{ a: { type: 'string', one_of: ['x'], default: 'y' } }], 'is not one of'],
    ['a default of the wrong type', [{ a: { type: 'integer', default: 1.5 } }], 'is not a integer'],
  ])('reports %s', (_what, fields, fragment) => {
    const problems = kongSchemaProblems({ name: 'p', fields: [{ config: { type: 'record', fields } }] });
    expect(problems.join('\n')).toContain(fragment);
  });

  it('accepts a well-formed schema', () => {
    const fields = [
      { strategy: { type: 'string', one_of: ['a', 'b'], default: 'a', description: 'How to pick one.' } },
      { retries: { type: 'integer', between: [0, 10], default: 1 } },
      { replicas: { type: 'array', default: [], elements: { type: 'record', fields: [{ address: { type: 'string', required: true } }] } } },
    ];
    expect(kongSchemaProblems({ name: 'p', fields: [{ config: { type: 'record', fields } }] })).toEqual([]);
  });
});
