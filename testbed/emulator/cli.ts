// Runs emulated replicas until SIGINT/SIGTERM:
//   node --import tsx testbed/emulator/cli.ts --replicas h100,h100,a100,a100 \
//     [--ports 8001,8002,8003,8004] [--time-scale 1] [--seed 1] [--host 127.0.0.1] \
//     [--fault 2:slowdown=3] [--fault h100-1:hang] [--admin-port 8000] [--json] \
//     [--models base-a] [--models 3:base-b] [--lora-adapters 'adapter-*'] [--max-loras 4] [--lora-load-ms 50] \
//     [--oracle] [--weights 1,1,0.8,0.8] [--oracle-overlap 1]
// Replicas are named <profile>-<position> (h100-1, h100-2, a100-3, ...). A --fault names a replica
// by its 1-based position or its name, then comma-separated settings (see faults.ts). --models and
// --lora-adapters apply to every replica, or with an R: prefix to one (a later one overrides an
// earlier for the replicas both reach). --json prints one JSON line (replicas and admin address)
// instead of the table, for scripts that spawn this. --oracle also starts the oracle router
// (testbed/oracle/router.ts) over these replicas: it reads their true state, so it must run in
// this process; the shootout's `oracle` row sends its trace there.

import { parseArgs } from 'node:util';
import { DEFAULT_OVERLAP_WEIGHT, startOracleRouter } from '../oracle/router';
import type { OracleRouter } from '../oracle/router';
import { DEFAULT_LORA_LOAD_MS, DEFAULT_MAX_LORAS, PROFILES, PROFILE_NAMES, parseFaultsText, parseLoraAdapterList, startEmulatedReplicas } from './index';
import type { FaultsPatch, ReplicaSpec } from './index';

const USAGE = `usage: node --import tsx testbed/emulator/cli.ts --replicas h100,a100,l4 [options]
  --replicas LIST      profiles, one per replica (${PROFILE_NAMES.join(', ')})
  --ports LIST         one port per replica (default: free ports)
  --time-scale X       multiplies every duration (default 1; 0.1 runs 10x faster)
  --seed N             base seed; replica i gets N + i - 1 (default 1)
  --host HOST          listen address (default 127.0.0.1)
  --fault R:SETTINGS   R = position (1-based) or name; e.g. 2:slowdown=3  1:hang  a100-3:errorRate=0.2
  --admin-port N       an admin server for all replicas (GET /admin/replicas, POST /admin/replicas/NAME/faults)
  --models [R:]LIST    served model names (vLLM --served-model-name), for all replicas or replica R;
                       other names then get vLLM's 404 (default: one name, and ANY requested name is served)
  --lora-adapters [R:]LIST
                       adapters a replica can load (vLLM --enable-lora): NAME or PREFIX* (any name
                       with that prefix), each optionally @PARENT; e.g. 'adapter-*' or 'sql-lora@base-a'
  --max-loras N        adapters per batch and GPU slots (vLLM --max-loras; default ${DEFAULT_MAX_LORAS}, vLLM's is 1)
  --lora-load-ms MS    time to load a missing adapter at real-GPU speed (default ${DEFAULT_LORA_LOAD_MS})
  --oracle             also start the oracle router in front of the replicas (routes by their true
                       cache, queue and KV state; its address is printed as 'oracle')
  --weights LIST       one weight per replica, for the oracle's cost (default 1 each)
  --oracle-overlap W   the oracle's weight of a block to prefill against a block carried
                       (Dynamo's overlap_score_weight; default ${DEFAULT_OVERLAP_WEIGHT})
  --json               print one JSON line instead of the table
profiles:
${PROFILE_NAMES.map((name) => `  ${name.padEnd(6)} ${PROFILES[name].description}`).join('\n')}`;

function fail(message: string): never {
  console.error(`${message}\n\n${USAGE}`);
  process.exit(2);
}

function parseNumber(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) fail(`${flag} must be a number, got '${text}'`);
  return value;
}

async function main(): Promise<void> {
  let values;
  try {
    values = parseArgs({
      options: {
        replicas: { type: 'string' },
        ports: { type: 'string' },
        'time-scale': { type: 'string' },
        seed: { type: 'string' },
        host: { type: 'string' },
        fault: { type: 'string', multiple: true },
        'admin-port': { type: 'string' },
        models: { type: 'string', multiple: true },
        'lora-adapters': { type: 'string', multiple: true },
        'max-loras': { type: 'string' },
        'lora-load-ms': { type: 'string' },
        oracle: { type: 'boolean' },
        weights: { type: 'string' },
        'oracle-overlap': { type: 'string' },
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
  if (values.replicas === undefined) fail('--replicas is required');
  const profiles = values.replicas.split(',').map((name) => name.trim()).filter((name) => name !== '');
  for (const profile of profiles) if (!PROFILE_NAMES.includes(profile)) fail(`unknown profile '${profile}'`);
  const ports = values.ports === undefined ? [] : values.ports.split(',').map((port) => parseNumber('--ports', port, 0));
  if (ports.length > 0 && ports.length !== profiles.length) fail(`--ports lists ${ports.length} ports for ${profiles.length} replicas`);
  if ((values.weights !== undefined || values['oracle-overlap'] !== undefined) && !values.oracle) fail('--weights and --oracle-overlap are for the oracle: add --oracle');
  const overlapWeight = parseNumber('--oracle-overlap', values['oracle-overlap'], DEFAULT_OVERLAP_WEIGHT);
  if (!(overlapWeight >= 0)) fail(`--oracle-overlap must be >= 0, got '${values['oracle-overlap']}'`);
  const weights = values.weights === undefined ? profiles.map(() => 1) : values.weights.split(',').map((weight) => parseNumber('--weights', weight, 0));
  if (weights.length !== profiles.length) fail(`--weights lists ${weights.length} weights for ${profiles.length} replicas`);
  if (weights.some((weight) => !(weight > 0))) fail(`--weights must all be > 0, got '${values.weights}'`);

  const specs: ReplicaSpec[] = profiles.map((profile, index) => ({ name: `${profile}-${index + 1}`, profile, port: ports[index] ?? 0 }));
  const replicaNamed = (target: string): ReplicaSpec | undefined => {
    const position = Number(target);
    return Number.isInteger(position) ? specs[position - 1] : specs.find((candidate) => candidate.name === target);
  };
  for (const fault of values.fault ?? []) {
    const colon = fault.indexOf(':');
    if (colon < 0) fail(`--fault '${fault}' needs REPLICA:SETTINGS`);
    const target = fault.slice(0, colon);
    const spec = replicaNamed(target);
    if (spec === undefined) fail(`--fault '${fault}': no replica '${target}'`);
    const parsed = parseFaultsText(fault.slice(colon + 1));
    if (!parsed.ok) fail(`--fault '${fault}': ${parsed.error}`);
    spec.faults = Object.assign({}, spec.faults, parsed.patch) as FaultsPatch;
  }
  // An R: prefix counts only when R is a replica: model names may contain ':' themselves (llama3:8b).
  const perReplica = (text: string): { targets: ReplicaSpec[]; list: string } => {
    const colon = text.indexOf(':');
    const spec = colon < 0 ? undefined : replicaNamed(text.slice(0, colon));
    return spec === undefined ? { targets: specs, list: text } : { targets: [spec], list: text.slice(colon + 1) };
  };
  for (const option of values.models ?? []) {
    const { targets, list } = perReplica(option);
    const names = list.split(',').map((name) => name.trim()).filter((name) => name !== '');
    if (names.length === 0) fail(`--models '${option}' names no model`);
    for (const spec of targets) spec.servedModels = names;
  }
  for (const option of values['lora-adapters'] ?? []) {
    const { targets, list } = perReplica(option);
    const adapters = parseLoraAdapterList(list);
    if (typeof adapters === 'string') fail(`--lora-adapters '${option}': ${adapters}`);
    for (const spec of targets) spec.loraAdapters = adapters;
  }

  const emulator = await startEmulatedReplicas(specs, {
    timeScale: parseNumber('--time-scale', values['time-scale'], 1),
    seed: parseNumber('--seed', values.seed, 1),
    host: values.host,
    adminPort: values['admin-port'] === undefined ? undefined : parseNumber('--admin-port', values['admin-port'], 0),
    maxLoras: parseNumber('--max-loras', values['max-loras'], DEFAULT_MAX_LORAS),
    loraLoadMs: parseNumber('--lora-load-ms', values['lora-load-ms'], DEFAULT_LORA_LOAD_MS),
  });
  let oracle: OracleRouter | null = null;
  if (values.oracle) {
    try {
      oracle = await startOracleRouter(emulator.replicas, weights, { overlapWeight });
    } catch (error) {
      await emulator.close();
      throw error;
    }
  }

  if (values.json) {
    console.log(
      JSON.stringify({
        replicas: emulator.replicas.map((replica) => ({
          name: replica.name,
          profile: replica.profile.name,
          address: replica.address,
          models: replica.models.baseNames,
          adapters: replica.models.registeredAdapters(),
          faults: replica.faults(),
        })),
        admin: emulator.admin === null ? null : emulator.admin.address,
        oracle: oracle === null ? null : `127.0.0.1:${oracle.port}`,
      }),
    );
  } else {
    for (const replica of emulator.replicas) {
      const faults = replica.faults();
      const active = Object.entries(faults)
        .filter(([key, value]) => (key === 'slowdown' ? value !== 1 : key === 'errorRate' ? value !== 0 : value === true))
        .map(([key, value]) => (typeof value === 'boolean' ? key : `${key}=${value}`));
      const models = replica.models.strict ? `  models: ${replica.models.baseNames.join(',')}` : '';
      console.log(`${replica.name.padEnd(10)} ${replica.profile.name.padEnd(6)} http://${replica.address}${models}${active.length > 0 ? '  faults: ' + active.join(',') : ''}`);
    }
    if (emulator.admin !== null) console.log(`admin      http://${emulator.admin.address}/admin/replicas`);
    if (oracle !== null) console.log(`oracle     ${oracle.url}  (routes by the replicas' true state)`);
    console.log('Ctrl-C stops the replicas.');
  }

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    Promise.resolve(oracle?.stop())
      .then(() => emulator.close())
      .then(
        () => process.exit(0),
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
