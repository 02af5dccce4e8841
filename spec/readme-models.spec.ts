// The README's multi-model examples ("Several models behind one endpoint") are valid configs: the
// NGINX file passes the shared validator, the Kong plugin config passes the plugin's loader.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { formatErrors, validate } from '../shared/config/validate';
import { loadPluginConfig } from '../plugins/kong/index';

const README = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');

function exampleBlocks(): unknown[] {
  const start = README.indexOf('## Several models behind one endpoint');
  const end = README.indexOf('\n## ', start + 1);
  expect(start).toBeGreaterThan(0);
  return [...README.slice(start, end).matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => parse(m[1]) as unknown);
}

describe('README: several models behind one endpoint', () => {
  it('the NGINX example validates and declares three replicas with their models', () => {
    const result = validate(exampleBlocks()[0]);
    if (!result.ok) throw new Error(formatErrors(result.errors));
    expect(result.config.models.declared.map((d) => d.replica)).toEqual(['llama-a', 'llama-b', 'qwen-a']);
    expect(result.config.models.default).toBe('meta-llama/Llama-3.1-8B-Instruct');
  });

  it('the Kong example loads in the plugin (discovery on, an alias and a default)', () => {
    const kongFile = exampleBlocks()[1] as { plugins: Array<{ name: string; config: Record<string, unknown> }> };
    expect(kongFile.plugins[0].name).toBe('llm-balancer');
    const loaded = loadPluginConfig(kongFile.plugins[0].config);
    expect(loaded.ok).toBe(true);
    if (loaded.ok) {
      expect(loaded.config.models.discovery).toBe(true);
      expect(loaded.config.models.aliases).toEqual([{ name: 'gpt-4o-mini', model: 'meta-llama/Llama-3.1-8B-Instruct' }]);
      expect(loaded.kong.upstream).toBe('llm-replicas');
    }
  });
});
