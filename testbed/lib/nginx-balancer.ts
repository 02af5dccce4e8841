// Real nginx running the built njs module with the configuration the project's generator renders
// (plugins/nginx/generator): for the nginx integration specs, npm start and the benchmarks.
import path from 'node:path';
import { configModule, preloadedConfig, renderNginxConfig } from '../../plugins/nginx/generator/generate';
import { loadBalancerFile } from '../../plugins/nginx/generator/load';
import { formatErrors } from '../../shared/config/validate';
import type { BalancerConfig } from '../../shared/config/types';
import { REPO_ROOT, loadNginxEnv, nginxTarget } from './nginx-env';
import { createPrefix, freePort, startNginx, testConfig } from './nginx-process';
import type { NginxInstance, NginxPrefix, NginxTestResult } from './nginx-process';

// Not imported from build/build.js: scripts bundle this file (npm start, the benchmarks), and the
// build script would drag esbuild in. Same path as build.js's NGINX_OUTFILE.
const NGINX_BUNDLE = path.join(REPO_ROOT, 'dist', 'nginx', 'llm_balancer.js');

export interface Rendered {
  config: BalancerConfig;
  conf: string;
  /** The preloaded config: JSON, or with js_engine qjs the module that sets it (configModule). */
  json: string;
}

/**
 * Validates `balancer` (a balancer file as an object: shared options + an `nginx` section) the way
 * the CLI does and renders the full nginx.conf for `port`, 2 workers, the JSON at `jsonPath`.
 */
export function render(balancer: Record<string, unknown>, port: number, jsonPath: string): Rendered {
  const env = loadNginxEnv();
  // The engine of the target nginx (LLMB_NGINX_TARGET) unless the file names one.
  const nginxSection = Object.assign({ worker_processes: 2, listen: `127.0.0.1:${port}`, js_engine: nginxTarget().engine }, (balancer.nginx as object | undefined) ?? {});
  const loaded = loadBalancerFile(JSON.stringify(Object.assign({}, balancer, { nginx: nginxSection })));
  if (!loaded.ok) throw new Error(`invalid balancer file:\n${formatErrors(loaded.errors)}`);
  const conf = renderNginxConfig(
    {
      config: loaded.config,
      nginx: Object.assign({}, loaded.nginx, { module_path: env.modulePath, js_path: path.dirname(NGINX_BUNDLE), config_json: jsonPath }),
      source: 'spec',
    },
    'full',
  );
  const preloaded = preloadedConfig(loaded.config, loaded.nginx);
  return { config: loaded.config, conf, json: loaded.nginx.js_engine === 'qjs' ? configModule(preloaded) : JSON.stringify(preloaded) };
}

export interface Balancer {
  nginx: NginxInstance;
  config: BalancerConfig;
  prefix: NginxPrefix;
  port: number;
  /** Re-renders with a new balancer file and reloads with HUP (the state zone is kept). */
  reconfigure(balancer: Record<string, unknown>): Promise<void>;
  /**
   * Error-log lines (level error or worse) where the njs module failed: uncaught exceptions, a
   * handler reporting its own failure, or a worker that crashed. Warnings are not failures: they may quote a replica's error
   * (e.g. the metrics scraper's "could not be read (connect failed)").
   */
  moduleErrors(): string[];
  stop(): Promise<void>;
}

export interface BalancerStartOptions {
  /**
   * The error log's level (nginx's default is `error`): `warn` shows the module's warnings, e.g.
   * the NGINX Plus peer sync's. Added to the generated main context as `error_log stderr <level>;`.
   */
  errorLogLevel?: 'warn' | 'notice' | 'info';
  /** Directives of the user's own put at the top of the balanced location, e.g. `deny all;` or `limit_req ...;`. */
  locationDirectives?: string[];
  /** http-context directives of the user's own, e.g. `limit_req_zone ...;`. */
  httpDirectives?: string[];
  /** Listen on this 127.0.0.1 port (default: a free one). */
  port?: number;
}

/** The rendered config with the test-only main-context additions of `options`. */
function withOptions(conf: string, options: BalancerStartOptions): string {
  let out = conf;
  const insert = (marker: string, lines: string[], what: string) => {
    if (!out.includes(marker)) throw new Error(`cannot place ${what}: no \`${marker.trim()}\` in the rendered config`);
    out = out.replace(marker, marker + lines.join('\n') + '\n');
  };
  // The generated config logs to logs/error.log; here nginx's stderr is read (moduleErrors, the
  // specs' warnings), at nginx's default level unless asked for more.
  out = out.replace('\nerror_log logs/error.log notice;\n', '\n');
  insert('\npid nginx.pid;\n', [`error_log stderr ${options.errorLogLevel ?? 'error'};`], 'error_log');
  if (options.httpDirectives) insert('\nhttp {\n', options.httpDirectives, 'http directives');
  if (options.locationDirectives) insert('\n    location /v1/ {\n', options.locationDirectives, 'location directives');
  return out;
}

/** The js_engine a balancer file renders with: its own nginx.js_engine, else the target's. */
function engineOf(balancer: Record<string, unknown>): string {
  const section = balancer.nginx as { js_engine?: unknown } | undefined;
  return section !== undefined && typeof section.js_engine === 'string' ? section.js_engine : nginxTarget().engine;
}

/** Renders, checks with `nginx -t` (throws with nginx's words on failure) and starts nginx. */
export async function startBalancer(balancer: Record<string, unknown>, label = 'balancer', options: BalancerStartOptions = {}): Promise<Balancer> {
  const port = options.port ?? (await freePort());
  const prefix = createPrefix(label);
  // The config's file: JSON for the njs engine's js_preload_object, a module under QuickJS (a
  // reconfigure keeps the engine: nginx cannot switch it on a reload).
  const configFile = engineOf(balancer) === 'qjs' ? 'llm-balancer.config.js' : 'llm-balancer.json';
  const jsonPath = path.join(prefix.dir, configFile);
  let rendered = render(balancer, port, jsonPath);
  rendered.conf = withOptions(rendered.conf, options);
  prefix.write(configFile, rendered.json);
  const confPath = prefix.write('nginx.conf', rendered.conf);
  const verdict: NginxTestResult = await testConfig(prefix.dir, confPath);
  if (!verdict.ok) {
    prefix.remove();
    throw new Error(`nginx -t failed:\n${verdict.output}\n${rendered.conf}`);
  }
  let nginx: NginxInstance;
  try {
    nginx = await startNginx({ conf: rendered.conf, port, prefix });
  } catch (e) {
    prefix.remove();
    throw e;
  }
  const result: Balancer = {
    nginx,
    get config() {
      return rendered.config;
    },
    prefix,
    port,
    async reconfigure(next) {
      rendered = render(next, port, jsonPath);
      rendered.conf = withOptions(rendered.conf, options);
      prefix.write(configFile, rendered.json);
      await nginx.reload(rendered.conf);
    },
    moduleErrors() {
      return nginx
        .stderr()
        .split('\n')
        // A worker that crashed (QuickJS segfaulted on fetches outliving their js_periodic run) is a module failure too.
        .filter((line) => /\[(error|crit|alert|emerg)\]/.test(line) && /js exception|js: llm-balancer: .*failed|worker process \d+ exited on signal/.test(line));
    },
    async stop() {
      await nginx.stop();
      prefix.remove();
    },
  };
  return result;
}

