// A fake njs request object for specs that call the NGINX module's handlers in Node (with a fake
// `ngx` host): the variables it starts with, what the handler logged with r.error, the rest inert.

import type { NjsRequest } from '../../plugins/nginx/runtime';

export function fakeRequest(variables: Record<string, string | undefined> = {}, requestText?: string): NjsRequest & { errors: string[] } {
  const errors: string[] = [];
  return {
    variables: Object.assign({ llm_balancer_plan: '', llm_balancer_tried: '', llm_balancer_error: '' }, variables),
    args: {},
    headersIn: {},
    rawHeadersIn: [],
    headersOut: {},
    remoteAddress: '127.0.0.1',
    method: 'POST',
    uri: '/v1/chat/completions',
    requestText,
    return: () => undefined,
    internalRedirect: () => undefined,
    sendBuffer: () => undefined,
    error: (m: string) => errors.push(m),
    warn: () => undefined,
    errors,
  };
}
