// `llm-balancer nginx-config <balancer.yaml> [-o FILE] [--snippet] [--module-path PATH]`: validates
// the balancer file, then writes the JSON the njs module preloads and the nginx configuration
// (to FILE, or on stdout).
//   npx llm-balancer nginx-config balancer.yaml -o llm/nginx.conf
// Invalid input exits 2 with every error and its field path; nothing at all is written then.
//
// Files: the preloaded JSON is named after the file it belongs to (FILE.json, or beside the input
// as <input>.json when printing), so two balancer files in one folder never share one: with a
// fixed name, a.conf would preload whatever b was generated with last. Both files are written to a
// temporary name and renamed into place, so a reader (or nginx reloading) sees the old file or the
// new one, never a half-written one, and an error leaves the old ones untouched. With -o and a full
// config, FILE's folder gets the logs/ and temp/ folders the config names relative to nginx's
// prefix, so `nginx -p <that folder> -c nginx.conf` runs on a fresh folder.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatErrors, quote } from '../../../shared/config/validate';
import type { ConfigError } from '../../../shared/config/validate';
import { loadBalancerFile } from './load';
import { configModule, preloadedConfig, renderNginxConfig, waitingRoomSocket } from './generate';
import { checkPath, checkSocketPath } from './nginx-values';

const USAGE = `usage: llm-balancer nginx-config <balancer.yaml|json> [-o FILE] [--snippet] [--module-path PATH]

  Validates the balancer file, then writes the nginx configuration and the JSON the njs module
  preloads (nginx.config_json; default: named after the configuration file, FILE.json).
    -o FILE              write the configuration to FILE (atomically) instead of stdout; a complete
                         config also gets FILE's folder's logs/ and temp/: run it with
                         nginx -p <FILE's folder> -c <FILE>
    --snippet            only the part to include inside your own http {} block
    --module-path PATH   ngx_http_js_module.so to load (overrides nginx.module_path)
  Without -o the configuration goes to stdout and the JSON beside the input, as <input>.json.
  A .json input is read as strict JSON, anything else as YAML. On any error nothing is written.`;

/** dist/nginx beside this CLI's bundle (dist/cli/llm-balancer.js). */
function defaultJsPath(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'nginx');
}

interface Options {
  input: string;
  output: string | null;
  snippet: boolean;
  modulePath: string | null;
}

/** The command line, or null when it is not one this command takes. */
function parseArgs(argv: string[]): Options | null {
  const positional: string[] = [];
  let output: string | null = null;
  let modulePath: string | null = null;
  let snippet = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const valued = /^(-o|--output|--module-path)(?:=(.*))?$/.exec(arg);
    if (valued) {
      const value = valued[2] !== undefined ? valued[2] : argv[++i];
      if (value === undefined || value === '') return null;
      if (valued[1] === '--module-path') modulePath = value;
      else output = value;
    } else if (arg === '--snippet') {
      snippet = true;
    } else if (arg.startsWith('-')) {
      return null;
    } else {
      positional.push(arg);
    }
  }
  if (positional[0] !== 'nginx-config' || positional.length !== 2) return null;
  return { input: positional[1], output, snippet, modulePath };
}

/** Writes `text` to a temporary file beside `file`; returns its name (rename it into place). */
function writeTemporary(file: string, text: string): string {
  const temporary = path.join(path.dirname(file), '.' + path.basename(file) + '.' + process.pid + '.tmp');
  fs.writeFileSync(temporary, text, { mode: 0o644 });
  return temporary;
}

/** What one run is asked to do; `inputPath` as given on the command line. */
export interface GenerationRequest {
  inputPath: string;
  text: string;
  output: string | null;
  snippet: boolean;
  modulePath: string | null;
  /** js_path when the file sets none (the CLI: this package's dist/nginx). */
  defaultJsPath: string;
}

/** The files one run writes, or why it writes nothing. Pure: main() does the I/O. */
export type GenerationPlan =
  | { ok: true; conf: string; json: string; confPath: string | null; jsonPath: string; folders: string[] }
  | { ok: false; heading: string; errors: ConfigError[] };

export function planGeneration(request: GenerationRequest): GenerationPlan {
  const file = path.resolve(request.inputPath);
  const loaded = loadBalancerFile(request.text, path.extname(file).toLowerCase() === '.json' ? 'json' : 'yaml');
  if (!loaded.ok) return { ok: false, heading: request.inputPath + ' is invalid', errors: loaded.errors };

  // The paths this command derives (or takes from its own flags) land in nginx.conf too: the same
  // check as the file's own paths.
  const output = request.output === null ? null : path.resolve(request.output);
  const jsPath = loaded.nginx.js_path ?? request.defaultJsPath;
  const modulePath = request.modulePath === null ? loaded.nginx.module_path : path.resolve(request.modulePath);
  const jsonPath =
    loaded.nginx.config_json !== null ? path.resolve(path.dirname(file), loaded.nginx.config_json) : (output ?? file) + (loaded.nginx.js_engine === 'qjs' ? '.config.js' : '.json');
  const errors: ConfigError[] = [];
  if (loaded.nginx.js_path === null) checkPath('nginx.js_path', jsPath, errors, "the default: this package's dist/nginx");
  if (request.modulePath !== null) checkPath('--module-path', modulePath, errors);
  if (loaded.nginx.config_json === null) checkPath('nginx.config_json', jsonPath, errors, 'the default: named after ' + (output === null ? 'the input' : 'the output'));
  if (loaded.config.admission.enabled && loaded.nginx.waiting_room_socket === null) {
    checkSocketPath('nginx.waiting_room_socket', waitingRoomSocket({ waiting_room_socket: null, config_json: jsonPath }), errors, 'the default: the preloaded config\'s path + .sock');
  }
  if (output === file) errors.push({ path: '-o', message: 'must not be the input file, got ' + quote(output) });
  if (jsonPath === file) errors.push({ path: 'nginx.config_json', message: 'must not be the input file, got ' + quote(jsonPath) });
  if (jsonPath === output) errors.push({ path: 'nginx.config_json', message: 'must not be the -o file, got ' + quote(jsonPath) });
  if (errors.length > 0) return { ok: false, heading: 'cannot generate from ' + request.inputPath, errors };

  const mode = request.snippet ? 'snippet' : 'full';
  const conf = renderNginxConfig(
    { config: loaded.config, nginx: { ...loaded.nginx, module_path: modulePath, js_path: jsPath, config_json: jsonPath }, source: request.inputPath },
    mode,
  );
  // js_engine qjs: the same object as a module (QuickJS ignores js_preload_object).
  const json = loaded.nginx.js_engine === 'qjs' ? configModule(preloadedConfig(loaded.config, loaded.nginx)) : JSON.stringify(preloadedConfig(loaded.config, loaded.nginx), null, 2) + '\n';
  const folders: string[] = [];
  if (output !== null) {
    folders.push(path.dirname(output));
    // The folders the full config names relative to the prefix (logs, and temp/ whose
    // subfolders nginx creates itself).
    if (mode === 'full') folders.push(path.join(path.dirname(output), 'logs'), path.join(path.dirname(output), 'temp'));
  }
  folders.push(path.dirname(jsonPath));
  return { ok: true, conf, json, confPath: output, jsonPath, folders };
}

/** `bundleFolder`: where llm_balancer.js is (the built CLI finds it beside itself; specs that run main() here say). */
export function main(argv: string[], out: (text: string) => void, err: (text: string) => void, bundleFolder?: string): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    out(USAGE + '\n');
    return 0;
  }
  const options = parseArgs(argv);
  if (options === null) {
    err(USAGE + '\n');
    return 2;
  }
  let text: string;
  try {
    text = fs.readFileSync(path.resolve(options.input), 'utf8');
  } catch (error) {
    err(`llm-balancer: cannot read ${options.input}: ${error instanceof Error ? error.message : String(error)}\n`);
    return 2;
  }
  const plan = planGeneration({
    inputPath: options.input,
    text,
    output: options.output,
    snippet: options.snippet,
    modulePath: options.modulePath,
    defaultJsPath: bundleFolder ?? defaultJsPath(),
  });
  if (!plan.ok) {
    err(`llm-balancer: ${plan.heading}:\n${formatErrors(plan.errors)}\n`);
    return 2;
  }
  const temporaries: string[] = [];
  try {
    for (const folder of plan.folders) fs.mkdirSync(folder, { recursive: true });
    const jsonTemporary = writeTemporary(plan.jsonPath, plan.json);
    temporaries.push(jsonTemporary);
    const confTemporary = plan.confPath !== null ? writeTemporary(plan.confPath, plan.conf) : null;
    if (confTemporary !== null) temporaries.push(confTemporary);
    fs.renameSync(jsonTemporary, plan.jsonPath);
    if (confTemporary !== null && plan.confPath !== null) fs.renameSync(confTemporary, plan.confPath);
  } catch (error) {
    for (const temporary of temporaries) fs.rmSync(temporary, { force: true });
    err(`llm-balancer: cannot write: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
  err(`llm-balancer: wrote ${plan.jsonPath}\n`);
  if (plan.confPath === null) {
    out(plan.conf);
    return 0;
  }
  err(`llm-balancer: wrote ${plan.confPath}\n`);
  if (!options.snippet) {
    err(`llm-balancer: test it with: nginx -p ${path.dirname(plan.confPath)} -c ${path.basename(plan.confPath)} -t\n`);
  }
  return 0;
}
