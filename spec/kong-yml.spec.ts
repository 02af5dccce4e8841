import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { formatErrors, validate } from '../shared/config/index';

interface Plugin {
  name: string;
  config?: Record<string, unknown>;
}

const file = parse(fs.readFileSync(path.join(__dirname, '..', 'kong.yml'), 'utf8')) as {
  _format_version: string;
  services: Array<{ name: string; host: string; plugins?: Plugin[]; routes?: Array<{ plugins?: Plugin[] }> }>;
  upstreams: Array<{ name: string; targets: Array<{ target: string; weight: number }> }>;
};

describe('kong.yml', () => {
  const service = file.services[0];
  const plugins = service.plugins ?? [];
  const balancer = plugins.find((p) => p.name === 'llm-balancer');

  it('is a decK 3.0 file whose service points at the declared upstream', () => {
    expect(file._format_version).toBe('3.0');
    expect(file.upstreams.map((u) => u.name)).toContain(service.host);
  });

  it('configures llm-balancer with a config the shared schema accepts', () => {
    expect(balancer).toBeDefined();
    const result = validate(balancer!.config);
    if (!result.ok) throw new Error(formatErrors(result.errors));
    expect(result.config.strategy).toBe('consistent-hash');
    expect(result.config.hash_key).toEqual({ source: 'consumer', name: null });
  });

  it("keeps Kong's own key-auth and rate-limiting on the same service", () => {
    expect(plugins.map((p) => p.name)).toEqual(expect.arrayContaining(['key-auth', 'rate-limiting', 'llm-balancer']));
  });

  it("lists the same replicas as the upstream's targets, with the same weight ratios", () => {
    const result = validate(balancer!.config);
    if (!result.ok) throw new Error(formatErrors(result.errors));
    const targets = file.upstreams[0].targets;
    expect(result.config.replicas.map((r) => r.address)).toEqual(targets.map((t) => t.target));
    result.config.replicas.forEach((r, i) => expect(r.weight / result.config.replicas[0].weight).toBeCloseTo(targets[i].weight / targets[0].weight));
  });
});
