// The generator writes only what it validated: for ANY string in ANY field that reaches the
// generated nginx.conf (the balancer file's strings, and the paths the command line adds), the
// generator either refuses the input or renders a configuration that nginx reads as EXACTLY the
// directive tree it renders for safe values — same directives, same arguments counts, same blocks,
// no extra server — with the value as the one argument it was meant to be. The tree is read by
// spec/helpers/nginx-conf.ts, which follows nginx's own tokenizer; a few accepted weird-but-valid
// values go through the real `nginx -t` as well.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planGeneration } from '../plugins/nginx/generator/cli';
import type { GenerationRequest } from '../plugins/nginx/generator/cli';
import { jsonSyntaxError } from '../plugins/nginx/generator/json-syntax';
import { renderNginxConfig } from '../plugins/nginx/generator/generate';
import { loadBalancerFile } from '../plugins/nginx/generator/load';
import { findAll, parseNginxConf, shapeOf } from './helpers/nginx-conf';
import type { Directive } from './helpers/nginx-conf';
import { loadNginxEnv, REPO_ROOT } from './helpers/nginx-env';

const run = promisify(execFile);

/** Safe values everywhere; every optional part that renders something is switched on. */
function baseline(): Record<string, unknown> {
  return {
    strategy: 'consistent-hash',
    retries: 2,
    hash_key: { source: 'header', name: 'x-session-id' },
    active_health: { enabled: true, path: '/health' },
    replicas: [
      { address: '127.0.0.1:9001', id: 'gpu-a' },
      { address: '[::1]:9002', id: 'gpu-b', weight: 0.5 },
    ],
    nginx: {
      listen: '127.0.0.1:8080',
      location: '/v1/',
      module_path: '/usr/lib/nginx/modules/ngx_http_js_module.so',
      js_path: '/opt/llm-balancer/dist/nginx',
      state_zone_size: '4m',
      max_body_size: '1m',
      status_allow: ['127.0.0.1', '::1'],
      consumer_variable: 'remote_user',
      plus_api: { url: 'http://127.0.0.1:8081/api/9', upstream: 'llm' },
    },
  };
}

// .json: read by JSON.parse (the YAML parser costs ~1 ms a run; the strings reach the generator alike).
const INPUT = '/srv/llm/balancer.json';

/** A field a string can be put into, how to put it, and where it must land in the tree. */
interface Field {
  name: string;
  /** Values the field accepts: hostile strings are also built around these, so some are accepted. */
  seeds: string[];
  set(document: Record<string, unknown>, request: GenerationRequest, value: string): void;
  /** The argument(s) the value must have become, read from the tree; null: not written to nginx.conf (JSON only). */
  landed: ((tree: Directive[]) => string) | null;
  expected?: (value: string) => string;
  neverRefused?: boolean;
}

const nginxOf = (document: Record<string, unknown>) => document.nginx as Record<string, unknown>;
const replicaOf = (document: Record<string, unknown>) => (document.replicas as Record<string, unknown>[])[0];
const only = (tree: Directive[], name: string) => findAll(tree, name)[0];

const FIELDS: Field[] = [
  {
    name: 'nginx.listen',
    seeds: ['8080', '127.0.0.1:8080', '[::1]:8080 reuseport', '*:80 default_server backlog=511', 'localhost:8080'],
    set: (d, _r, v) => (nginxOf(d).listen = v),
    landed: (t) => only(t, 'listen').args.join(' '),
  },
  {
    name: 'nginx.location',
    seeds: ['/v1/', '/', '/openai/v1.2_x~y/'],
    set: (d, _r, v) => (nginxOf(d).location = v),
    // The first location of the server is the balanced one.
    landed: (t) => only(t, 'location').args[0],
  },
  {
    name: 'nginx.module_path',
    seeds: ['/usr/lib/nginx/modules/ngx_http_js_module.so', 'modules/ngx js (x86).so', '/opt/é/ngx.so'],
    set: (d, _r, v) => (nginxOf(d).module_path = v),
    landed: (t) => only(t, 'load_module').args[0],
  },
  {
    name: 'nginx.js_path',
    seeds: ['/opt/llm-balancer/dist/nginx', '/home/José/llm balancer/dist', 'dist'],
    set: (d, _r, v) => (nginxOf(d).js_path = v),
    landed: (t) => only(t, 'js_path').args[0],
  },
  {
    name: 'nginx.config_json',
    seeds: ['llm.json', '/var/lib/llm/état [1].json', '../x & y.json'],
    set: (d, _r, v) => (nginxOf(d).config_json = v),
    landed: (t) => only(t, 'js_preload_object').args[2],
    expected: (v) => path.resolve(path.dirname(INPUT), v),
  },
  {
    name: 'nginx.state_zone_size',
    seeds: ['4m', '512k', '1048576'],
    set: (d, _r, v) => (nginxOf(d).state_zone_size = v),
    landed: (t) => findAll(t, 'js_shared_dict_zone')[0].args[0],
    expected: (v) => 'zone=llm_balancer:' + v,
  },
  {
    name: 'nginx.max_body_size',
    seeds: ['1m', '64k', '0'],
    set: (d, _r, v) => (nginxOf(d).max_body_size = v),
    landed: (t) => only(t, 'client_max_body_size').args[0],
  },
  {
    name: 'nginx.status_allow[0]',
    seeds: ['127.0.0.1', '10.0.0.0/8', 'fd00::/8', '::ffff:10.0.0.1', '0.0.0.0/0'],
    set: (d, _r, v) => ((nginxOf(d).status_allow as string[])[0] = v),
    landed: (t) => only(t, 'allow').args[0],
  },
  { name: 'nginx.consumer_variable', seeds: ['remote_user', 'user_id'], set: (d, _r, v) => (nginxOf(d).consumer_variable = v), landed: null },
  {
    name: 'nginx.plus_api.url',
    seeds: ['http://127.0.0.1:8081/api/9', 'https://plus.internal/api/9/'],
    set: (d, _r, v) => ((nginxOf(d).plus_api as Record<string, unknown>).url = v),
    landed: null,
  },
  {
    name: 'nginx.plus_api.upstream',
    seeds: ['llm', 'pool.a-1'],
    set: (d, _r, v) => ((nginxOf(d).plus_api as Record<string, unknown>).upstream = v),
    landed: null,
  },
  // Ids reach a comment only: the tree (comments dropped) must not change.
  { name: 'replicas[0].id', seeds: ['gpu-a', '{weird;"id" #1}', 'é 😀'], set: (d, _r, v) => (replicaOf(d).id = v), landed: null },
  {
    name: 'replicas[0].address',
    seeds: ['127.0.0.1:9001', 'gpu-1.internal.:8000', '[fd00::1]:80'],
    set: (d, _r, v) => (replicaOf(d).address = v),
    landed: (t) => only(t, 'server').args[0],
  },
  { name: 'hash_key.name', seeds: ['x-session-id', 'cookie_1'], set: (d, _r, v) => ((d.hash_key as Record<string, unknown>).name = v), landed: null },
  { name: 'active_health.path', seeds: ['/health', '/v1/models'], set: (d, _r, v) => ((d.active_health as Record<string, unknown>).path = v), landed: null },
  // What the command line adds: the input's name (header comment), -o (the JSON's name), --module-path.
  // On stdout the JSON is named after the input; with -o the input's name reaches the header comment only.
  { name: 'input path', seeds: ['/srv/llm/b.yaml', 'my balancer.yaml'], set: (_d, r, v) => (r.inputPath = v), landed: null },
  {
    name: 'input path, with -o',
    seeds: ['/srv/llm/b.yaml', 'my balancer.yaml'],
    set: (_d, r, v) => {
      r.inputPath = v;
      r.output = '/srv/llm/run/nginx.conf';
    },
    landed: null,
    // Any name is fine in a comment: nothing to refuse.
    neverRefused: true,
  },
  {
    name: '-o',
    seeds: ['/srv/llm/run/nginx.conf', 'run dir/nginx.conf'],
    set: (_d, r, v) => (r.output = v),
    landed: (t) => only(t, 'js_preload_object').args[2],
    expected: (v) => path.resolve(v) + '.json',
  },
  {
    name: '--module-path',
    seeds: ['/usr/lib/nginx/modules/ngx_http_js_module.so', '.cache/nginx/modules/ngx_http_js_module.so'],
    set: (_d, r, v) => (r.modulePath = v),
    landed: (t) => only(t, 'load_module').args[0],
    expected: (v) => path.resolve(v),
  },
];

function request(document: Record<string, unknown>): GenerationRequest {
  return { inputPath: INPUT, text: JSON.stringify(document), output: null, snippet: false, modulePath: null, defaultJsPath: '/opt/llm-balancer/dist/nginx' };
}

/** listen's flags may change its argument count; nothing else may. */
const argCountsOf = (name: string) => name !== 'listen';

const BASE_SHAPE = (() => {
  const plan = planGeneration(request(baseline()));
  if (!plan.ok) throw new Error('the baseline must be valid: ' + JSON.stringify(plan.errors));
  return shapeOf(parseNginxConf(plan.conf), argCountsOf).join('\n');
})();

// Characters that mean something to nginx.conf, YAML, JSON or a shell, and some that do not.
const HOSTILE_CHAR = fc.constantFrom(
  ';', '{', '}', '"', "'", '\\', '$', '#', '\n', '\r', '\t', ' ', '/', ':', '.', '[', ']', '%', '*', '=', '`', '(', ')',
  'a', 'Z', '0', '9', '-', '_', '\u0000', '\u0085', '\u2028', 'é', '😀',
);
const HOSTILE = fc.string({ unit: HOSTILE_CHAR, maxLength: 24 });
const ANY = fc.oneof(HOSTILE, fc.string({ unit: 'binary', maxLength: 24 }), fc.string({ unit: 'grapheme', maxLength: 24 }));

function valueFor(field: Field): fc.Arbitrary<string> {
  const seed = fc.constantFrom(...field.seeds);
  return fc.oneof(
    ANY,
    seed,
    fc.tuple(seed, HOSTILE).map(([a, b]) => a + b),
    fc.tuple(HOSTILE, seed).map(([a, b]) => a + b),
    // A hostile character inside a valid value.
    fc.tuple(seed, HOSTILE_CHAR, fc.nat()).map(([a, c, at]) => a.slice(0, at % (a.length + 1)) + c + a.slice(at % (a.length + 1))),
  );
}

describe('any string in any field: refused, or exactly the expected directives', () => {
  it('holds for every field (fast-check)', () => {
    const accepted: Record<string, number> = {};
    const tried: Record<string, number> = {};
    const examples = fc.integer({ min: 0, max: FIELDS.length - 1 }).chain((index) => fc.tuple(fc.constant(index), valueFor(FIELDS[index])));
    fc.assert(
      fc.property(examples, ([index, value]) => {
        const field = FIELDS[index];
        const document = baseline();
        const req = request(document);
        field.set(document, req, value);
        req.text = JSON.stringify(document);
        tried[field.name] = (tried[field.name] ?? 0) + 1;
        const plan = planGeneration(req);
        // Plain checks rather than expect(): thousands of runs, and vitest's matchers cost ~1 ms each here.
        if (!plan.ok) {
          // Refused: with field paths, and a message that stays on its line.
          if (plan.errors.length === 0) throw new Error('refused without an error');
          for (const error of plan.errors) {
            if (/[\n\r\u2028\u2029]/.test(error.message)) throw new Error('an error message spans lines: ' + JSON.stringify(error));
          }
          return;
        }
        accepted[field.name] = (accepted[field.name] ?? 0) + 1;
        const tree = parseNginxConf(plan.conf);
        const shape = shapeOf(tree, argCountsOf).join('\n');
        if (shape !== BASE_SHAPE) expect(shape).toBe(BASE_SHAPE); // (fails, with a diff)
        if (findAll(tree, 'server').filter((d) => d.block !== null).length !== 1) throw new Error('not exactly one server block');
        if (field.landed !== null) {
          const landed = field.landed(tree);
          const wanted = field.expected ? field.expected(value) : value;
          if (landed !== wanted) expect(landed).toBe(wanted);
        }
        // The preloaded JSON parses (the value is JSON.stringify'd into it).
        JSON.parse(plan.json);
      }),
      // FC_RUNS=50000 FC_SEED=<n> for a deeper run by hand.
      { numRuns: Number(process.env.FC_RUNS ?? 2000), seed: Number(process.env.FC_SEED ?? 20261202) },
    );
    if (process.env.FC_REPORT) console.log(JSON.stringify({ tried, accepted }));
    // Not vacuous: every field accepted some of what it was given, and refused some.
    for (const field of FIELDS) {
      expect(accepted[field.name] ?? 0, field.name + ' accepted').toBeGreaterThan(0);
      if (!field.neverRefused) expect(accepted[field.name] ?? 0, field.name + ' refused').toBeLessThan(tried[field.name]);
    }
  });

  it('quoting alone holds too: any path, unvalidated, is one argument equal to itself (fast-check)', () => {
    // Below the validation: what renderNginxConfig's quoting does with values nothing checked,
    // should a path ever reach it unchecked (a caller of the library, a future option).
    const loaded = loadBalancerFile(JSON.stringify(baseline()), 'json');
    if (!loaded.ok) throw new Error('baseline');
    const render = (paths: { module_path: string; js_path: string; config_json: string }, mode: 'full' | 'snippet') =>
      renderNginxConfig({ config: loaded.config, nginx: { ...loaded.nginx, ...paths }, source: paths.js_path }, mode);
    const safe = { module_path: '/m.so', js_path: '/js', config_json: '/c.json' };
    const shapes = { full: shapeOf(parseNginxConf(render(safe, 'full'))).join('\n'), snippet: shapeOf(parseNginxConf(render(safe, 'snippet'))).join('\n') };
    fc.assert(
      fc.property(ANY, ANY, ANY, fc.constantFrom<'full' | 'snippet'>('full', 'snippet'), (module_path, js_path, config_json, mode) => {
        const tree = parseNginxConf(render({ module_path, js_path, config_json }, mode));
        const shape = shapeOf(tree).join('\n');
        if (shape !== shapes[mode]) expect(shape).toBe(shapes[mode]);
        if (mode === 'full' && only(tree, 'load_module').args[0] !== module_path) expect(only(tree, 'load_module').args[0]).toBe(module_path);
        if (only(tree, 'js_path').args[0] !== js_path) expect(only(tree, 'js_path').args[0]).toBe(js_path);
        if (only(tree, 'js_preload_object').args[2] !== config_json) expect(only(tree, 'js_preload_object').args[2]).toBe(config_json);
      }),
      { numRuns: 1000, seed: 11 },
    );
  });

  it('the reader follows nginx: quotes, escapes, comments, `}` inside a word, ${', () => {
    const tree = parseNginxConf(
      [
        'a "x;y {z} #w" \'q\\\'r\' b\\;c;   # comment { ;',
        'b x}y {',
        '  c "\\\\\\"\\n" ${v} $ 1;',
        '  if ($x = "") {',
        '    return 503;',
        '  }',
        '}',
      ].join('\n'),
    );
    expect(tree).toMatchObject([
      { name: 'a', args: ['x;y {z} #w', "q'r", 'b\\;c'], block: null },
      { name: 'b', args: ['x}y'], block: [{ name: 'c', args: ['\\"\n', '${v}', '$', '1'] }, { name: 'if', args: ['($x', '=', '', ')'], block: [{ name: 'return', args: ['503'] }] }] },
    ]);
    expect(() => parseNginxConf('a "x"y;')).toThrow(/unexpected "y"/);
    expect(() => parseNginxConf('a { b; ')).toThrow(/expecting "}"/);
    expect(() => parseNginxConf('a; }')).toThrow(/unexpected "}"/);
    expect(() => parseNginxConf('a b')).toThrow(/expecting ";"/);
  });
});

describe('strict JSON: the position finder agrees with JSON.parse', () => {
  it('returns null exactly when JSON.parse accepts (fast-check, JSON texts and their mutations)', () => {
    const mutated = fc.tuple(fc.json(), fc.nat(), fc.constantFrom(',', ']', '}', '"', ' ', '\n', '0', '-', '.', 'e', '\\', 'u', 'x')).map(([text, at, c]) => {
      const i = at % (text.length + 1);
      return text.slice(0, i) + c + text.slice(i);
    });
    fc.assert(
      fc.property(fc.oneof(fc.json(), mutated, fc.string({ maxLength: 12 })), (text) => {
        let parses = true;
        try {
          JSON.parse(text);
        } catch {
          parses = false;
        }
        expect(jsonSyntaxError(text) === null).toBe(parses);
      }),
      { numRuns: 3000, seed: 7 },
    );
  });
});

describe('accepted weird-but-valid values pass the real nginx -t', () => {
  let folder = '';
  beforeAll(() => {
    folder = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-weird-'));
  });
  afterAll(() => {
    if (folder) fs.rmSync(folder, { recursive: true, force: true });
  });

  it('paths with spaces, brackets, & = % and non-ASCII letters; an id with braces, quotes and #; listen flags; both address families', async () => {
    const env = loadNginxEnv();
    const odd = path.join(folder, 'my dir (é) & [x]=1% 😀');
    fs.mkdirSync(path.join(odd, 'js'), { recursive: true });
    fs.mkdirSync(path.join(odd, 'modules'), { recursive: true });
    fs.copyFileSync(path.join(REPO_ROOT, 'dist', 'nginx', 'llm_balancer.js'), path.join(odd, 'js', 'llm_balancer.js'));
    fs.symlinkSync(env.modulePath, path.join(odd, 'modules', 'ngx js module.so'));
    const document = {
      strategy: 'least-connections',
      replicas: [
        { address: '127.0.0.1:9001', id: '{weird;"id" #1 é}' },
        { address: 'localhost:9002', id: "it's } {" },
        { address: '[::1]:9003' },
      ],
      nginx: {
        listen: '127.0.0.1:18089 default_server reuseport backlog=128',
        location: '/v1.0_beta~x/',
        js_path: path.join(odd, 'js'),
        config_json: 'état & co.json',
        status_allow: ['10.0.0.0/8', 'fd00::/8', '::ffff:127.0.0.1', '0.0.0.0/0', '2001:db8::1', '::/0'],
      },
    };
    const input = path.join(odd, 'balancer (1).yaml');
    const plan = planGeneration({
      inputPath: input,
      text: JSON.stringify(document),
      output: path.join(odd, 'run', 'nginx.conf'),
      snippet: false,
      modulePath: path.join(odd, 'modules', 'ngx js module.so'),
      defaultJsPath: '/nowhere',
    });
    if (!plan.ok) throw new Error(JSON.stringify(plan.errors));
    for (const f of plan.folders) fs.mkdirSync(f, { recursive: true });
    fs.writeFileSync(plan.jsonPath, plan.json);
    fs.writeFileSync(plan.confPath as string, plan.conf);
    expect(plan.jsonPath).toBe(path.join(odd, 'état & co.json'));
    const t = await run(env.nginxArgv[0], env.nginxArgv.slice(1).concat(['-p', path.join(odd, 'run'), '-c', 'nginx.conf', '-t'])).catch(
      (e: { stderr: string }) => e,
    );
    expect(t.stderr).toContain('test is successful');
    expect(JSON.parse(plan.json).config.replicas.map((r: { id: string }) => r.id)).toEqual(['{weird;"id" #1 é}', "it's } {", '[::1]:9003']);
  });
});
