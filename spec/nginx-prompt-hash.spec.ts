// The njs module hashes prompt blocks with nginx's native MD5 (plugins/nginx/index.ts), not the
// JavaScript FNV loop of shared/hash.ts (~0.1 µs per character under both njs engines). In Node with
// a fake njs host: the module (index.ts) evaluated afresh, as an njs VM evaluates it, a chat request
// routed through `route`, and the prefix table slots it wrote compared with the chain of the first
// 32 bits of MD5 (node:crypto), and with the JavaScript default's. The real engines run the same
// bundle in every real-nginx prefix spec (trixie/njs, forky/qjs, forky/njs).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { prefixTableKeys } from '../shared/balancer';
import { preloadedConfig } from '../plugins/nginx/generator/generate';
import { loadBalancerFile } from '../plugins/nginx/generator/load';
import { nginxBlockHash } from './helpers/prefix';
import { fakeRequest } from './helpers/njs-request';

const globals = globalThis as unknown as Record<string, unknown>;


function installHost(): Map<string, number> {
  const numbers = new Map<string, number>();
  globals.ngx = {
    INFO: 6,
    WARN: 5,
    ERR: 4,
    log: () => undefined,
    shared: {
      llm_balancer: {
        get: (k: string) => numbers.get(k),
        set: (k: string, v: number) => numbers.set(k, v),
        incr: (k: string, d: number, init: number) => {
          const next = (numbers.has(k) ? (numbers.get(k) as number) : init) + d;
          numbers.set(k, next);
          return next;
        },
        delete: (k: string) => numbers.delete(k),
      },
      llm_balancer_models: { get: () => undefined, set: () => undefined, delete: () => false },
    },
  };
  return numbers;
}


afterEach(() => {
  delete globals.ngx;
  delete globals.llm_balancer_config;
});

describe("the njs module's prompt-block hash", () => {
  it.each(['prefix-affinity', 'least-tokens', 'llm'])('%s records the slots of the MD5 chain', async (strategy) => {
    const numbers = installHost();
    const loaded = loadBalancerFile(JSON.stringify({ strategy, replicas: [{ address: '10.0.0.1:8000' }, { address: '10.0.0.2:8000' }], models: { discovery: false } }));
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
    globals.llm_balancer_config = JSON.parse(JSON.stringify(preloadedConfig(loaded.config, loaded.nginx)));
    vi.resetModules();
    const module = (await import('../plugins/nginx/index')).default;
    const body = { model: 'm', messages: [{ role: 'system', content: 'You are a careful assistant. '.repeat(60) }, { role: 'user', content: 'hi' }] };
    const r = fakeRequest({}, JSON.stringify(body));
    module.route(r);
    expect(r.errors).toEqual([]);
    expect(r.variables.llm_balancer_target).toMatch(/^llm_balancer_\d$/);
    const md5Keys = prefixTableKeys(loaded.config, { body }, false, nginxBlockHash);
    const fnvKeys = prefixTableKeys(loaded.config, { body });
    expect(md5Keys.length).toBeGreaterThan(0);
    for (const key of md5Keys) expect(numbers.get(key), key).not.toBeUndefined();
    for (const key of fnvKeys) if (!md5Keys.includes(key)) expect(numbers.get(key), key).toBeUndefined();
  });
});
