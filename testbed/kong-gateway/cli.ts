// Runs the Kong-playing gateway (gateway.ts) until SIGINT/SIGTERM:
//   node --import tsx testbed/kong-gateway/cli.ts --config '{"strategy":"least-connections","replicas":[...]}' \
//     [--port 8000] [--service-retries 0] [--json]
// --config is the llm-balancer plugin config as JSON, or @FILE (JSON or YAML). --json prints one
// JSON line when ready ({url, port}) and, when stopped, one more ({handled, errors}); for scripts
// that spawn this (the shootout). Needs dist/kong/llm-balancer.js (`node build/build.js`).

import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { startKongGateway } from './gateway';

const USAGE = `usage: node --import tsx testbed/kong-gateway/cli.ts --config JSON|@FILE [--port N] [--service-retries N] [--json]`;

function fail(message: string): never {
  console.error(`${message}\n\n${USAGE}`);
  process.exit(2);
}

function readConfig(text: string): Record<string, unknown> {
  const source = text.startsWith('@') ? fs.readFileSync(text.slice(1), 'utf8') : text;
  const parsed: unknown = text.startsWith('@') ? parseYaml(source) : JSON.parse(source);
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) fail('--config must be an object');
  return parsed as Record<string, unknown>;
}

async function main(): Promise<void> {
  let values;
  try {
    values = parseArgs({
      options: {
        config: { type: 'string' },
        port: { type: 'string' },
        'service-retries': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean' },
      },
    }).values;
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error));
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (values.config === undefined) fail('--config is required');
  let config: Record<string, unknown>;
  try {
    config = readConfig(values.config);
  } catch (error) {
    fail(`--config: ${error instanceof Error ? error.message : String(error)}`);
  }
  const port = values.port === undefined ? 0 : Number(values.port);
  const serviceRetries = values['service-retries'] === undefined ? 0 : Number(values['service-retries']);
  if (!Number.isInteger(port) || port < 0) fail(`--port must be a port number, got '${values.port}'`);
  if (!Number.isInteger(serviceRetries) || serviceRetries < 0) fail(`--service-retries must be a whole number, got '${values['service-retries']}'`);

  const gateway = await startKongGateway({ config, port, serviceRetries });
  if (values.json) console.log(JSON.stringify({ url: gateway.url, port: gateway.port }));
  else console.log(`"Kong" (the real kong-js-pluginserver behind a streaming proxy) on ${gateway.url}; Ctrl-C stops it.`);

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    gateway.stop().then(
      () => {
        const summary = { handled: gateway.handled(), errors: gateway.errors() };
        if (values.json) console.log(JSON.stringify(summary));
        else console.log(`handled ${summary.handled} requests; ${summary.errors.length} errors${summary.errors.length > 0 ? ':\n' + summary.errors.join('\n') : ''}`);
        process.exit(0);
      },
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
