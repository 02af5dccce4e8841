// Access to the nginx + njs provisioned by build/fetch-nginx.js (`npm test`'s pretest runs it).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const NGINX_ENV_PATH = path.join(REPO_ROOT, '.cache', 'nginx', 'env.json');

/** The shape of .cache/nginx/env.json. */
export interface NginxEnv {
  schema: number;
  /** 'system' or 'debian-trixie' */
  source: string;
  /** argv prefix that runs nginx: append e.g. ['-e', 'stderr', '-p', prefix, '-c', conf] */
  nginxArgv: string[];
  /** argv prefix that runs the njs CLI: append e.g. ['-p', dir, 'script.js'] */
  njsArgv: string[];
  /** argv prefix that runs wrk (the gateway benchmark's load generator), or null when unavailable */
  wrkArgv: string[] | null;
  /** absolute path for `load_module` */
  modulePath: string;
  nginxVersion: string;
  njsVersion: string;
  libraryPath: string | null;
  root: string | null;
  packages: { name: string; version: string }[];
}

export function loadNginxEnv(): NginxEnv {
  let text: string;
  try {
    text = fs.readFileSync(NGINX_ENV_PATH, 'utf8');
  } catch {
    throw new Error(
      `${path.relative(REPO_ROOT, NGINX_ENV_PATH)} is missing: run \`node build/fetch-nginx.js\` ` +
        '(npm test runs it as pretest) to provision nginx + njs',
    );
  }
  const env = JSON.parse(text) as NginxEnv;
  const missing = [env.njsArgv[env.njsArgv.length - 1], env.nginxArgv[env.nginxArgv.length - 1], env.modulePath].filter(
    (f) => !fs.existsSync(f),
  );
  if (missing.length) {
    throw new Error(`${NGINX_ENV_PATH} is stale (${missing.join(', ')} missing): run \`node build/fetch-nginx.js\``);
  }
  return env;
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
}

/**
 * Run a script in the real njs CLI. `script` is a path to an existing .js file, or source code
 * (written to a temporary file that is removed afterwards). Never throws for a non-zero exit.
 * Note: njs's console.log prints each argument on its OWN line: pass one string.
 */
export async function runNjs(script: string, options: RunNjsOptions = {}): Promise<RunResult> {
  const env = loadNginxEnv();
  let tmpDir: string | null = null;
  let file = script;
  if (!(script.endsWith('.js') && !script.includes('\n') && fs.existsSync(script))) {
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-njs-'));
    file = path.join(tmpDir, 'main.js');
    fs.writeFileSync(file, script);
  }
  const args: string[] = env.njsArgv.slice(1);
  const dirs = options.path ?? [];
  for (let i = 0; i < dirs.length; i++) args.push('-p', path.resolve(dirs[i]));
  args.push(file);
  try {
    return await new Promise<RunResult>((resolve) => {
      const child = execFile(
        env.njsArgv[0],
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
