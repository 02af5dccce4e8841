import { describe, expect, it } from 'vitest';
import { healthOfState, replicasFromPlusPeers } from '../plugins/nginx/plus-api';

// The documented shape of GET /api/9/http/upstreams/{name} (trimmed to what matters here).
const DOCUMENT = {
  peers: [
    { id: 0, server: '10.0.0.1:8000', name: '10.0.0.1:8000', backup: false, weight: 5, state: 'up', active: 2 },
    { id: 1, server: '10.0.0.2:8000', name: 'gpu-b:8000', backup: false, weight: 4, state: 'draining', active: 0 },
    { id: 2, server: '10.0.0.3:8000', name: '10.0.0.3:8000', backup: false, weight: 1, state: 'unhealthy', active: 0 },
    { id: 3, server: '10.0.0.9:8000', name: '10.0.0.9:8000', backup: true, weight: 1, state: 'up', active: 0 },
    { id: 4, server: '10.0.0.7:8000', name: '10.0.0.7:8000', backup: false, weight: 2, state: 'up', active: 0 },
  ],
  keepalive: 0,
  zombies: 0,
  zone: 'llm',
};

describe('NGINX Plus upstream API → replicas', () => {
  it.each([
    ['up', 'healthy'],
    [undefined, 'healthy'],
    ['draining', 'draining'],
    ['down', 'unhealthy'],
    ['unavail', 'unhealthy'],
    ['unhealthy', 'unhealthy'],
    ['checking', 'unhealthy'],
  ])('state %s → %s', (state, health) => {
    expect(healthOfState(state)).toBe(health);
  });

  it('keeps configured replicas (id, upstream block), adds new peers by address, skips backups', () => {
    const configured = [
      { id: 'gpu-a', address: '10.0.0.1:8000', weight: 1 },
      { id: 'gpu-b', address: '10.0.0.2:8000', weight: 1 },
    ];
    expect(replicasFromPlusPeers(DOCUMENT, configured, ['llm_balancer_0', 'llm_balancer_1'])).toEqual([
      { id: 'gpu-a', address: '10.0.0.1:8000', weight: 5, health: 'healthy', target: 'llm_balancer_0' },
      { id: 'gpu-b', address: '10.0.0.2:8000', weight: 4, health: 'draining', target: 'llm_balancer_1' },
      { id: '10.0.0.3:8000', address: '10.0.0.3:8000', weight: 1, health: 'unhealthy', target: '10.0.0.3:8000' },
      { id: '10.0.0.7:8000', address: '10.0.0.7:8000', weight: 2, health: 'healthy', target: '10.0.0.7:8000' },
    ]);
  });

  it.each([null, 'text', {}, { peers: 'x' }, { peers: [{ weight: 1 }] }, { peers: [null] }])('rejects a malformed document %j', (document) => {
    expect(replicasFromPlusPeers(document, [], [])).toBeNull();
  });
});
