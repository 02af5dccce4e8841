// The rendezvous owner of a request body's prompt, computed the way the strategies do (first-block
// key, default block size): what every gateway node should pick for a prefix no table knows.

import crypto from 'node:crypto';
import { readLlmRequest } from '../../shared/llm-request';
import { prefixBlockHashes } from '../../shared/prefix-blocks';
import type { TextHash } from '../../shared/prefix-blocks';
import { prefixOwner } from '../../shared/prefix-placement';
import type { Replica } from '../../shared/types';
import { view } from './core';

/** Default prefix_affinity.block_tokens (64) × 4 characters per token, and max_blocks. */
const BLOCK_CHARS = 256;
const MAX_BLOCKS = 128;

/** The NGINX module's prompt-block hash (plugins/nginx/index.ts): the first 32 bits of MD5. */
export const nginxBlockHash: TextHash = (text) => parseInt(crypto.createHash('md5').update(text).digest('hex').substring(0, 8), 16);

/**
 * The id of the replica of `fleet` that owns `body`'s prompt prefix; throws when the body has no
 * full block. `hashText`: the gateway's block hash (nginxBlockHash for NGINX; the core's default,
 * the one Kong uses, when absent).
 */
export function prefixOwnerId(fleet: Array<Pick<Replica, 'id' | 'weight'>>, body: unknown, hashText?: TextHash): string {
  const parsed = readLlmRequest(body);
  if (!parsed.ok) throw new Error(parsed.message);
  const hashes = prefixBlockHashes(parsed.request.promptKey, BLOCK_CHARS, MAX_BLOCKS, hashText);
  const index = prefixOwner(
    fleet.map((r) => view(r.id, { weight: r.weight })),
    hashes,
  );
  if (index < 0) throw new Error('the prompt has no full block');
  return fleet[index].id;
}
