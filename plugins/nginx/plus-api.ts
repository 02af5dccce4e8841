// NGINX Plus as the source of replicas: its upstream API (`GET /api/9/http/upstreams/{name}`)
// lists the peers with their weight and state. These pure functions turn that document into the
// core's replicas; the njs module fetches it periodically (js_periodic + ngx.fetch) and keeps
// the result in a string shared dict so every worker routes on the same peer list.

import type { ReplicaConfig } from '../../shared/config/types';
import type { Replica, ReportedHealth } from '../../shared/types';

/** The fields of a Plus API peer we use (the API returns many more). */
export interface PlusPeer {
  server: string;
  name?: string;
  backup?: boolean;
  weight?: number;
  state?: string;
}

/** A replica from the Plus API, with the upstream block to proxy to when one was generated for it. */
export interface PlusReplica extends Replica {
  /** The generated upstream block for a configured replica (keepalive), or the bare address. */
  target: string;
}

/** Plus peer state → the health the core understands. `checking` is a peer on its slow-start probation. */
export function healthOfState(state: string | undefined): ReportedHealth {
  if (state === 'up' || state === undefined) return 'healthy';
  if (state === 'draining') return 'draining';
  return 'unhealthy'; // down, unavail, unhealthy, checking
}

/**
 * Replicas from the API's peers. A peer whose address matches a configured replica keeps that
 * replica's id and upstream block (so its state and keepalive connections carry over); any other
 * peer is routed to by address. Backup peers are left out: the core has its own failover.
 * Returns null when the document does not have the documented shape.
 */
export function replicasFromPlusPeers(document: unknown, configured: ReplicaConfig[], upstreams: string[]): PlusReplica[] | null {
  if (document === null || typeof document !== 'object') return null;
  const peers = (document as { peers?: unknown }).peers;
  if (!Array.isArray(peers)) return null;
  const replicas: PlusReplica[] = [];
  for (let i = 0; i < peers.length; i++) {
    const peer = peers[i] as PlusPeer;
    if (peer === null || typeof peer !== 'object' || typeof peer.server !== 'string') return null;
    if (peer.backup === true) continue;
    let known = -1;
    for (let j = 0; j < configured.length; j++) {
      if (configured[j].address === peer.server) known = j;
    }
    replicas.push({
      id: known >= 0 ? configured[known].id : peer.server,
      address: peer.server,
      weight: typeof peer.weight === 'number' && peer.weight >= 0 ? peer.weight : 1,
      health: healthOfState(peer.state),
      target: known >= 0 ? upstreams[known] : peer.server,
    });
  }
  return replicas;
}
