// The request as the core sees it, read through Kong's PDK. Only what the configured hash key
// reads is fetched: every PDK call is an RPC round trip to Kong (~0.1 ms), and a body read costs
// ~26 ms per MiB, so the body is read only when the strategy uses a body key, and only up to
// kong.max_body_bytes.

import type { BalancerConfig } from '../../shared/config/types';
import type { RequestView } from '../../shared/types';
import type { KongPdk } from './pdk';

function firstValue(value: unknown): string | undefined {
  if (Array.isArray(value)) return value.length > 0 ? String(value[0]) : undefined;
  return typeof value === 'string' ? value : undefined;
}

/** The parsed JSON body, or null (no body, too large, not buffered by Kong, not JSON): then the request has no key. */
async function jsonBody(kong: KongPdk, maxBytes: number): Promise<unknown> {
  const length = Number(await kong.request.getHeader('content-length'));
  if (isFinite(length) && length > maxBytes) return null;
  // nil when Kong could not keep the body in memory (larger than its client_body_buffer_size).
  const raw = await kong.request.getRawBody();
  if (raw === null || raw === undefined) return null;
  const text = typeof raw === 'string' ? raw : Buffer.from(raw).toString('utf8');
  // A chunked body has no Content-Length: check what actually arrived.
  if (Buffer.byteLength(text) > maxBytes) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/**
 * Reads what the hash key needs. The consumer is Kong's authenticated consumer (key-auth, JWT,
 * OIDC... ran before us, priority 790): its id, so renaming a consumer keeps its replica.
 */
export async function requestViewFromKong(
  kong: KongPdk,
  config: BalancerConfig,
  readsHashKey: boolean,
  maxBodyBytes: number,
  readsBody: boolean = false,
): Promise<RequestView> {
  const view: RequestView = {};
  // LLM-aware strategies read the OpenAI body (a missing, oversized or non-OpenAI one gives them
  // nothing to go on: least-tokens then counts its default, prefix-affinity balances by load).
  if (readsBody) view.body = await jsonBody(kong, maxBodyBytes);
  if (!readsHashKey || config.hash_key === null) return view;
  const source = config.hash_key.source;
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
    view.consumer = consumer && typeof consumer.id === 'string' && consumer.id !== '' ? consumer.id : null;
  } else if (source === 'body' && view.body === undefined) {
    view.body = await jsonBody(kong, maxBodyBytes);
  }
  return view;
}
