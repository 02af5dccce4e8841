import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { formatErrors } from '../shared/config/index';
import { loadPluginConfig } from '../plugins/kong/index';

interface Plugin {
  name: string;
  config?: Record<string, unknown>;
}

const file = parse(fs.readFileSync(path.join(__dirname, '..', 'kong.yml'), 'utf8')) as {
  _format_version: string;
  services: Array<{ name: string; host: string; plugins?: Plugin[]; routes?: Array<{ plugins?: Plugin[] }> }>;
  upstreams: Array<{ name: string; targets: Array<{ target: string; weight: number }>; healthchecks?: { active?: { http_path?: string }; passive?: unknown } }>;
};

describe('kong.yml', () => {
  const service = file.services[0];
  const plugins = service.plugins ?? [];
  const balancer = plugins.find((p) => p.name === 'llm-balancer');

  it('is a decK 3.0 file whose service points at the declared upstream', () => {
    expect(file._format_version).toBe('3.0');
    expect(file.upstreams.map((u) => u.name)).toContain(service.host);
  });

  it('configures llm-balancer with a config the plugin accepts (shared schema + kong record)', () => {
    expect(balancer).toBeDefined();
    const result = loadPluginConfig(balancer!.config ?? {});
    if (!result.ok) throw new Error(formatErrors(result.errors));
    expect(result.config.strategy).toBe('consistent-hash');
    expect(result.config.hash_key).toEqual({ source: 'consumer', name: null });
  });

  it("keeps Kong's own key-auth and rate-limiting on the same service", () => {
    expect(plugins.map((p) => p.name)).toEqual(expect.arrayContaining(['key-auth', 'rate-limiting', 'llm-balancer']));
  });

  it("reads its replicas from the declared upstream, which has weighted targets and active + passive checks", () => {
    const result = loadPluginConfig(balancer!.config ?? {});
    if (!result.ok) throw new Error(formatErrors(result.errors));
    const upstream = file.upstreams.find((u) => u.name === result.kong.upstream);
    expect(upstream, 'kong.upstream names an upstream of this file').toBeDefined();
    expect(upstream!.targets.length).toBeGreaterThan(1);
    expect(new Set(upstream!.targets.map((t) => t.weight)).size).toBeGreaterThan(1);
    expect(upstream!.healthchecks?.active?.http_path).toBe('/health');
    expect(upstream!.healthchecks?.passive).toBeDefined();
    expect(result.kong.admin_url).toMatch(/^http:\/\/127\.0\.0\.1:8001/);
  });
});
