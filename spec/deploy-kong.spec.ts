// deploy/kong (Dockerfile, docker-compose.yml, the error template) agrees with the README's Kong
// installation: no Docker engine runs here, so the image is never built in these tests (its README
// says so); what can be checked without one is checked: every kong.conf line of the README is the
// Dockerfile's KONG_* variable with the same value, the plugin file it copies is where the package
// installs its Kong bundle, the error template is the README's and yields JSON, the compose file
// parses and mounts files that exist.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO_ROOT } from './helpers/nginx-env';

const DEPLOY = path.join(REPO_ROOT, 'deploy', 'kong');
const read = (file: string) => fs.readFileSync(path.join(DEPLOY, file), 'utf8');

/** The README's kong.conf block of the Kong section: setting → value. */
function readmeKongConf(): Record<string, string> {
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Kong: install and configure'));
  const block = section.slice(section.indexOf('```ini') + 6, section.indexOf('```', section.indexOf('```ini') + 6));
  const settings: Record<string, string> = {};
  for (const line of block.split('\n')) {
    const m = /^\s*([a-z_]+)\s*=\s*(.+?)\s*$/.exec(line);
    if (m) settings[m[1]] = m[2];
  }
  return settings;
}

/** The Dockerfile's ENV variables (one ENV instruction, continued lines, double-quoted values). */
function dockerEnv(): Record<string, string> {
  const text = read('Dockerfile').replace(/\\\n/g, ' ');
  const env: Record<string, string> = {};
  for (const line of text.split('\n').filter((l) => l.startsWith('ENV '))) {
    for (const m of line.matchAll(/([A-Z_]+)="([^"]*)"/g)) env[m[1]] = m[2];
  }
  return env;
}

describe('deploy/kong', () => {
  it("sets every kong.conf line of the README as the Dockerfile's KONG_* variable, with the same value", () => {
    const conf = readmeKongConf();
    expect(Object.keys(conf)).toEqual(expect.arrayContaining(['plugins', 'pluginserver_names', 'pluginserver_llm_balancer_start_cmd', 'error_template_json']));
    const env = dockerEnv();
    for (const [setting, value] of Object.entries(conf)) expect(env['KONG_' + setting.toUpperCase()], setting).toBe(value);
    expect(Object.keys(env).length).toBe(Object.keys(conf).length);
  });

  it('copies the Kong bundle from where the package installs it, into the directory the plugin server is started on', () => {
    const dockerfile = read('Dockerfile');
    expect(dockerfile).toContain('node_modules/llm-balancer/dist/kong/llm-balancer.js /usr/local/kong/js-plugins/llm-balancer/');
    const packageFiles = (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { files: string[] }).files;
    expect(packageFiles).toContain('dist/kong/');
    expect(dockerEnv().KONG_PLUGINSERVER_LLM_BALANCER_START_CMD).toContain('-d /usr/local/kong/js-plugins/llm-balancer ');
    // Node 20+ (the package's engines) from the official image; the plugin server pinned as in the README.
    expect(dockerfile).toMatch(/^FROM node:20-/m);
    expect(dockerfile).toContain('kong-pdk@0.6.0');
  });

  it("ships the README's error template, which yields valid JSON for Kong's messages", () => {
    const template = read('openai-error.json').trim();
    const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    expect(readme).toContain(template);
    const answer = JSON.parse(template.replace('%s', 'An invalid response was received from the upstream server')) as { error: { type: string } };
    expect(answer.error.type).toBe('upstream_error');
  });

  it('has a compose file that parses, builds this Dockerfile and mounts the repository kong.yml', () => {
    const compose = parse(read('docker-compose.yml')) as { services: { kong: { build: string; volumes: string[]; environment: Record<string, string> } } };
    const kong = compose.services.kong;
    expect(kong.build).toBe('.');
    expect(kong.environment.KONG_DATABASE).toBe('off');
    for (const volume of kong.volumes) {
      const host = volume.split(':')[0];
      expect(fs.existsSync(path.resolve(DEPLOY, host)), host).toBe(true);
    }
    expect(kong.volumes[0].split(':')[1]).toBe(kong.environment.KONG_DECLARATIVE_CONFIG);
  });
});
