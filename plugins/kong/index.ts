// The Kong plugin (built to dist/kong/llm-balancer.js, run by kong-js-pluginserver).
// Access phase: pick a replica with the shared core and point Kong at it with set_target.
// Log phase: record how the attempt ended. At this stage replicas come from the plugin's own
// config; reading targets and health from Kong's Admin API arrives with the Kong target.
// Every failure inside a phase is answered with a 503, because an exception thrown out of a JS
// plugin makes Kong proxy to the Service's default host: a silent wrong route.

import {
  createBalancer,
  createMemoryStore,
  formatErrors,
  kongSchema,
  noReplicaError,
  replicasFromConfig,
  splitAddress,
  validate,
} from '../../shared/index';
import type { Balancer, BalancerConfig, Replica, RequestView } from '../../shared/index';
import type { KongPdk } from './pdk';

export const Name = 'llm-balancer';
export const Version = '0.1.0';
/** After key-auth (1250) and rate-limiting (910): identity is known and throttled requests never take a replica. */
export const Priority = 790;
export const Schema = kongSchema();

const PICK_KEY = 'llm_balancer_pick';
const JSON_HEADERS = { 'Content-Type': 'application/json' };

/**
 * Balancers live at module level: Kong recycles plugin instances after 60 s idle, but state such as
 * in-flight counts and ejections must outlive them. One per plugin id (each route's plugin has its own).
 */
const balancers: Record<string, { signature: string; balancer: Balancer }> = Object.create(null);

const systemDeps = () => ({
  store: createMemoryStore(),
  clock: { now: () => Date.now() },
  random: { next: () => Math.random() },
});

function balancerFor(pluginId: string, config: BalancerConfig): Balancer {
  const signature = JSON.stringify(config);
  const known = balancers[pluginId];
  if (known && known.signature === signature) return known.balancer;
  const balancer = createBalancer(config, systemDeps());
  balancers[pluginId] = { signature, balancer };
  return balancer;
}

function firstValue(value: unknown): string | undefined {
  if (Array.isArray(value)) return value.length > 0 ? String(value[0]) : undefined;
  return typeof value === 'string' ? value : undefined;
}

async function requestView(kong: KongPdk, config: BalancerConfig): Promise<RequestView> {
  const source = config.hash_key === null ? null : config.hash_key.source;
  const view: RequestView = {};
  if (source === 'header' || source === 'cookie') {
    const headers = await kong.request.getHeaders();
    view.headers = {};
    for (const name of Object.keys(headers)) view.headers[name.toLowerCase()] = firstValue(headers[name]);
  } else if (source === 'query') {
    const query = await kong.request.getQuery();
    view.query = {};
    for (const name of Object.keys(query)) view.query[name] = firstValue(query[name]);
  } else if (source === 'client-ip') {
    view.clientIp = await kong.client.getIp();
  } else if (source === 'consumer') {
    const consumer = await kong.client.getConsumer();
    view.consumer = consumer && consumer.id ? consumer.id : null;
  } else if (source === 'body') {
    const raw = await kong.request.getRawBody();
    const text = typeof raw === 'string' ? raw : raw ? Buffer.from(raw).toString('utf8') : '';
    try {
      view.body = JSON.parse(text);
    } catch {
      view.body = null;
    }
  }
  return view;
}

export class Plugin {
  private readonly config: BalancerConfig | null;
  private readonly configError: string | null;
  private readonly pluginId: string;

  constructor(rawConfig: Record<string, unknown>) {
    const checked = validate(rawConfig);
    this.pluginId = String(rawConfig.__plugin_id ?? 'default');
    this.config = checked.ok ? checked.config : null;
    this.configError = checked.ok ? null : formatErrors(checked.errors);
  }

  private replicas(): Replica[] {
    return this.config ? replicasFromConfig(this.config) : [];
  }

  async access(kong: KongPdk): Promise<void> {
    try {
      if (this.config === null) {
        await kong.log.err('llm-balancer: invalid configuration: ' + this.configError);
        await kong.response.exit(503, JSON.stringify(noReplicaError('internal-error', 'invalid plugin configuration')), JSON_HEADERS);
        return;
      }
      const balancer = balancerFor(this.pluginId, this.config);
      const result = balancer.pick(this.replicas(), await requestView(kong, this.config));
      if (!result.ok) {
        await kong.response.exit(503, JSON.stringify(noReplicaError(result.reason, result.message)), JSON_HEADERS);
        return;
      }
      const target = splitAddress(result.replicas[0].address);
      balancer.onStart(result.replicas[0].id);
      await kong.ctx.shared.set(PICK_KEY, result.replicas[0].id);
      await kong.service.setTarget(target.host, target.port);
    } catch (error) {
      await kong.log.err('llm-balancer: access failed: ' + String(error));
      await kong.response.exit(503, JSON.stringify(noReplicaError('internal-error', 'the balancer failed to pick a replica')), JSON_HEADERS);
    }
  }

  async log(kong: KongPdk): Promise<void> {
    try {
      const picked = await kong.ctx.shared.get(PICK_KEY);
      if (typeof picked !== 'string' || this.config === null) return;
      const entry = JSON.parse(await kong.log.serialize()) as { response?: { status?: number }; latencies?: { proxy?: number } };
      const status = entry.response && typeof entry.response.status === 'number' ? entry.response.status : 0;
      const latency = entry.latencies && typeof entry.latencies.proxy === 'number' ? entry.latencies.proxy : -1;
      balancerFor(this.pluginId, this.config).onEnd(this.replicas(), picked, { status, latencyMs: latency });
    } catch (error) {
      await kong.log.err('llm-balancer: log failed: ' + String(error));
    }
  }
}
