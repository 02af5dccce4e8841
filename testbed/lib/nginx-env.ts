// Access to the nginx + njs provisioned by build/fetch-nginx.js (`npm test`'s pretest runs it), per
// generation: 'trixie' (the default, .cache/nginx: nginx 1.26 + njs 0.8.9, njs engine only) and 'forky'
// (.cache/nginx-forky: nginx 1.30 + njs 1.0 with QuickJS). Self-contained on purpose (no import of
// build/): npm start bundles this file, and the folder names are checked against fetch-nginx.js by
// spec/fetch-nginx.spec.ts.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The nginx generations build/fetch-nginx.js provisions (its GENERATIONS). */
export type NginxGeneration = 'trixie' | 'forky';
export const NGINX_GENERATIONS: readonly NginxGeneration[] = ['trixie', 'forky'];
export const DEFAULT_NGINX_GENERATION: NginxGeneration = 'trixie';

/** <repo>/.cache/nginx/env.json for the default generation, <repo>/.cache/nginx-<generation>/env.json otherwise. */
export function nginxEnvPath(generation: NginxGeneration = DEFAULT_NGINX_GENERATION): string {
  if (!NGINX_GENERATIONS.includes(generation)) throw new Error(`unknown nginx generation ${JSON.stringify(generation)}`);
  const dir = generation === DEFAULT_NGINX_GENERATION ? 'nginx' : `nginx-${generation}`;
  return path.join(REPO_ROOT, '.cache', dir, 'env.json');
}

export const NGINX_ENV_PATH = nginxEnvPath();

/** A `js_engine` value. */
export type JsEngine = 'njs' | 'qjs';

/** The shape of .cache/nginx/env.json (and .cache/nginx-forky/env.json). */
export interface NginxEnv {
  schema: number;
  generation: NginxGeneration;
  /** 'system', 'debian-trixie' or 'debian-forky' */
  source: string;
  /** argv prefix that runs nginx: append e.g. ['-e', 'stderr', '-p', prefix, '-c', conf] */
  nginxArgv: string[];
  /** argv prefix that runs the njs CLI (njs engine, script mode): append e.g. ['-p', dir, 'script.js'] */
  njsArgv: string[];
  /** argv prefix that runs a file as a module under QuickJS (`njs -n QuickJS -m`), or null without QuickJS */
  njsQjsArgv: string[] | null;
  /** argv prefix that runs wrk (the gateway benchmark's load generator), or null when unavailable */
  wrkArgv: string[] | null;
  /** absolute path for `load_module` */
  modulePath: string;
  /** the `js_engine` values the module accepts (`nginx -t`): ['njs'] or ['njs', 'qjs'] */
  engines: JsEngine[];
  nginxVersion: string;
  njsVersion: string;
  libraryPath: string | null;
  root: string | null;
  packages: { name: string; version: string }[];
}

function provisionCommand(generation: NginxGeneration): string {
  return generation === DEFAULT_NGINX_GENERATION ? 'node build/fetch-nginx.js' : `node build/fetch-nginx.js --generation ${generation}`;
}

/** An nginx generation and the njs engine the module runs on there. */
export interface NginxTarget {
  generation: NginxGeneration;
  engine: JsEngine;
}

/** The targets `npm test` runs the real-nginx specs on: trixie's only engine, forky's recommended one, and forky's njs engine. */
export const NGINX_TARGETS: readonly string[] = ['trixie/njs', 'forky/qjs', 'forky/njs'];

/**
 * The nginx the real-nginx specs, npm start and the benchmarks use: LLMB_NGINX_TARGET
 * (`<generation>/<engine>`: trixie/njs, the default; forky/qjs; forky/njs). Every default of this
 * file (loadNginxEnv, runNjs, startNginx) and the rendered js_engine follow it, so one variable
 * moves a whole spec run to another nginx.
 */
export function nginxTarget(): NginxTarget {
  const text = process.env.LLMB_NGINX_TARGET;
  if (text === undefined || text === '') return { generation: DEFAULT_NGINX_GENERATION, engine: 'njs' };
  if (!NGINX_TARGETS.includes(text)) throw new Error(`LLMB_NGINX_TARGET must be one of ${NGINX_TARGETS.join(', ')}, got ${JSON.stringify(text)}`);
  const [generation, engine] = text.split('/') as [NginxGeneration, JsEngine];
  return { generation, engine };
}

/** The env of `generation` (default: the target's, trixie unless LLMB_NGINX_TARGET says); throws when it is not provisioned. */
export function loadNginxEnv(generation: NginxGeneration = nginxTarget().generation): NginxEnv {
  const envPath = nginxEnvPath(generation);
  let text: string;
  try {
    text = fs.readFileSync(envPath, 'utf8');
  } catch {
    throw new Error(
      `${path.relative(REPO_ROOT, envPath)} is missing: run \`${provisionCommand(generation)}\` ` +
        '(npm test runs it as pretest) to provision nginx + njs',
    );
  }
  const env = JSON.parse(text) as NginxEnv;
  const missing = [env.njsArgv[env.njsArgv.length - 1], env.nginxArgv[env.nginxArgv.length - 1], env.modulePath].filter(
    (f) => !fs.existsSync(f),
  );
  if (missing.length) {
    throw new Error(`${envPath} is stale (${missing.join(', ')} missing): run \`${provisionCommand(generation)}\``);
  }
  // An env.json written before there were generations (schema 2) describes the default one, njs engine only.
  return Object.assign({ generation: DEFAULT_NGINX_GENERATION, engines: ['njs'], njsQjsArgv: null }, env);
}

/** The env of `generation`, or why it is not there (for a spec's skip message); never throws. */
export function tryLoadNginxEnv(generation: NginxGeneration): { env: NginxEnv; reason: null } | { env: null; reason: string } {
  try {
    return { env: loadNginxEnv(generation), reason: null };
  } catch (error) {
    return { env: null, reason: error instanceof Error ? error.message : String(error) };
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** exit code; null when killed (see `signal`) */
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunNjsOptions {
  /** module directories for `import x from 'name.js'` (njs `-p`, repeatable) */
  path?: string[];
  /** kill njs after this long (default 10 s) */
  timeoutMs?: number;
  /** whose njs CLI (default: the target's, nginxTarget) */
  generation?: NginxGeneration;
  /** 'qjs' runs the script as an ES module under QuickJS (`njs -n QuickJS -m`); default: the target's engine */
  engine?: JsEngine;
}

/**
 * Run a script in the real njs CLI. `script` is a path to an existing .js file, or source code
 * (written to a temporary file that is removed afterwards). Never throws for a non-zero exit; throws
 * when `engine: 'qjs'` is asked of an njs CLI without QuickJS.
 * Note: njs's console.log prints each argument on its OWN line: pass one string.
 */
export async function runNjs(script: string, options: RunNjsOptions = {}): Promise<RunResult> {
  const env = loadNginxEnv(options.generation);
  const engine = options.engine ?? (options.generation === undefined ? nginxTarget().engine : 'njs');
  const argv = engine === 'qjs' ? env.njsQjsArgv : env.njsArgv;
  if (!argv) throw new Error(`the ${env.generation} njs CLI (${env.njsVersion}) has no QuickJS engine`);
  let tmpDir: string | null = null;
  let file = script;
  if (!(script.endsWith('.js') && !script.includes('\n') && fs.existsSync(script))) {
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-njs-'));
    file = path.join(tmpDir, 'main.js');
    fs.writeFileSync(file, script);
  }
  const args: string[] = argv.slice(1);
  const dirs = options.path ?? [];
  for (let i = 0; i < dirs.length; i++) args.push('-p', path.resolve(dirs[i]));
  args.push(file);
  try {
    return await new Promise<RunResult>((resolve) => {
      const child = execFile(
        argv[0],
        args,
        { timeout: options.timeoutMs ?? 10_000, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
          resolve({ stdout, stderr, code, signal: (error?.signal as NodeJS.Signals | undefined) ?? null });
        },
      );
      child.stdin?.end();
    });
  } finally {
    if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  }
}

/**
 * Run `body` in njs after `import m from '<bundle>'`: the way nginx's js_import loads a bundle.
 * `body` sees the default export as `m`.
 */
export function runWithBundle(bundlePath: string, body: string, options: Omit<RunNjsOptions, 'path'> = {}): Promise<RunResult> {
  const abs = path.resolve(bundlePath);
  const code = `import m from '${path.basename(abs)}';\n${body}\n`;
  return runNjs(code, Object.assign({}, options, { path: [path.dirname(abs)] }));
}
