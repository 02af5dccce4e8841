// `llm-balancer nginx-config <balancer.yaml> [--snippet]`: validates the balancer file, writes the
// JSON the njs module preloads, and prints the nginx configuration on stdout.
//   npx llm-balancer nginx-config balancer.yaml > llm.conf
// Invalid input exits 2 with every error and its field path; nothing is written.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatErrors } from '../../../shared/config/validate';
import { loadBalancerFile } from './load';
import { preloadedConfig, renderNginxConfig } from './generate';

const USAGE = `usage: llm-balancer nginx-config <balancer.yaml|json> [--snippet]

  Validates the balancer file, writes the JSON the njs module preloads (nginx.config_json,
  default: llm-balancer.json beside the input) and prints the nginx configuration:
  a complete nginx.conf, or with --snippet the part to include inside your own http {} block.`;

/** dist/nginx beside this CLI's bundle (dist/cli/llm-balancer.js). */
function defaultJsPath(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'nginx');
}

export function main(argv: string[], out: (text: string) => void, err: (text: string) => void): number {
  const args = argv.filter((a) => !a.startsWith('--'));
  const flags = argv.filter((a) => a.startsWith('--'));
  const unknown = flags.filter((f) => f !== '--snippet' && f !== '--help');
  if (flags.includes('--help')) {
    out(USAGE + '\n');
    return 0;
  }
  if (args[0] !== 'nginx-config' || args.length !== 2 || unknown.length > 0) {
    err(USAGE + '\n');
    return 2;
  }
  const file = path.resolve(args[1]);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    err(`llm-balancer: cannot read ${args[1]}: ${error instanceof Error ? error.message : String(error)}\n`);
    return 2;
  }
  const loaded = loadBalancerFile(text);
  if (!loaded.ok) {
    err(`llm-balancer: ${args[1]} is invalid:\n${formatErrors(loaded.errors)}\n`);
    return 2;
  }
  const jsPath = loaded.nginx.js_path ?? defaultJsPath();
  const configJson = path.resolve(path.dirname(file), loaded.nginx.config_json ?? 'llm-balancer.json');
  fs.writeFileSync(configJson, JSON.stringify(preloadedConfig(loaded.config, loaded.nginx), null, 2) + '\n');
  err(`llm-balancer: wrote ${configJson}\n`);
  out(
    renderNginxConfig(
      { config: loaded.config, nginx: { ...loaded.nginx, js_path: jsPath, config_json: configJson }, source: args[1] },
      flags.includes('--snippet') ? 'snippet' : 'full',
    ),
  );
  return 0;
}
