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
import { formatErrors } from '../../../shared/config/validate';
import type { ConfigError } from '../../../shared/config/validate';
import { loadBalancerFile } from './load';
import { preloadedConfig, renderNginxConfig } from './generate';
import { checkPath } from './nginx-values';

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

export function main(argv: string[], out: (text: string) => void, err: (text: string) => void): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    out(USAGE + '\n');
    return 0;
  }
  const options = parseArgs(argv);
  if (options === null) {
    err(USAGE + '\n');
    return 2;
  }
  const file = path.resolve(options.input);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    err(`llm-balancer: cannot read ${options.input}: ${error instanceof Error ? error.message : String(error)}\n`);
    return 2;
  }
  const loaded = loadBalancerFile(text, path.extname(file).toLowerCase() === '.json' ? 'json' : 'yaml');
  if (!loaded.ok) {
    err(`llm-balancer: ${options.input} is invalid:\n${formatErrors(loaded.errors)}\n`);
    return 2;
  }

  // The paths this command derives (or takes from its own flags) land in nginx.conf too: the same
  // check as the file's own paths.
  const output = options.output === null ? null : path.resolve(options.output);
  const jsPath = loaded.nginx.js_path ?? defaultJsPath();
  const modulePath = options.modulePath === null ? loaded.nginx.module_path : path.resolve(options.modulePath);
  const configJson =
    loaded.nginx.config_json !== null
      ? path.resolve(path.dirname(file), loaded.nginx.config_json)
      : (output ?? file) + '.json';
  const errors: ConfigError[] = [];
  if (loaded.nginx.js_path === null) checkPath('nginx.js_path', jsPath, errors, "the default: this package's dist/nginx");
  if (options.modulePath !== null) checkPath('--module-path', modulePath, errors);
  if (loaded.nginx.config_json === null) checkPath('nginx.config_json', configJson, errors, 'the default: named after ' + (output === null ? 'the input' : 'the output'));
  if (output === file) errors.push({ path: '-o', message: 'must not be the input file, got ' + JSON.stringify(output) });
  if (configJson === file) errors.push({ path: 'nginx.config_json', message: 'must not be the input file, got ' + JSON.stringify(configJson) });
  if (configJson === output) errors.push({ path: 'nginx.config_json', message: 'must not be the -o file, got ' + JSON.stringify(configJson) });
  if (errors.length > 0) {
    err(`llm-balancer: cannot generate from ${options.input}:\n${formatErrors(errors)}\n`);
    return 2;
  }

  const mode = options.snippet ? 'snippet' : 'full';
  const conf = renderNginxConfig(
    { config: loaded.config, nginx: { ...loaded.nginx, module_path: modulePath, js_path: jsPath, config_json: configJson }, source: options.input },
    mode,
  );
  const json = JSON.stringify(preloadedConfig(loaded.config, loaded.nginx), null, 2) + '\n';

  const temporaries: string[] = [];
  try {
    if (output !== null) {
      fs.mkdirSync(path.dirname(output), { recursive: true });
      // The folders the full config names relative to the prefix (pid and logs go there; nginx
      // creates temp/'s subfolders itself, but not temp/).
      if (mode === 'full') {
        for (const folder of ['logs', 'temp']) fs.mkdirSync(path.join(path.dirname(output), folder), { recursive: true });
      }
    }
    fs.mkdirSync(path.dirname(configJson), { recursive: true });
    const jsonTemporary = writeTemporary(configJson, json);
    temporaries.push(jsonTemporary);
    const confTemporary = output !== null ? writeTemporary(output, conf) : null;
    if (confTemporary !== null) temporaries.push(confTemporary);
    fs.renameSync(jsonTemporary, configJson);
    if (confTemporary !== null) fs.renameSync(confTemporary, output as string);
  } catch (error) {
    for (const temporary of temporaries) fs.rmSync(temporary, { force: true });
    err(`llm-balancer: cannot write: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
  err(`llm-balancer: wrote ${configJson}\n`);
  if (output === null) {
    out(conf);
    return 0;
  }
  err(`llm-balancer: wrote ${output}\n`);
  if (mode === 'full') {
    err(`llm-balancer: test it with: nginx -p ${path.dirname(output)} -c ${path.basename(output)} -t\n`);
  }
  return 0;
}
