// The slice of Kong's JavaScript PDK this plugin calls. Declared here because kong-pdk's own
// generated .d.ts files do not type-check; every method is an RPC to Kong and returns a promise.

export interface KongPdk {
  request: {
    getHeaders(maxHeaders?: number): Promise<Record<string, string | string[]>>;
    getQuery(maxArgs?: number): Promise<Record<string, string | string[] | boolean>>;
    /** One header, case-insensitive; null when absent. */
    getHeader(name: string): Promise<string | null>;
    getRawBody(): Promise<Uint8Array | string | null>;
    getPath(): Promise<string>;
    getMethod(): Promise<string>;
  };
  client: {
    getIp(): Promise<string>;
    getConsumer(): Promise<{ id?: string; username?: string } | null>;
  };
  router: {
    /** The route Kong's router matched (admission.route_priorities reads its name and id). */
    getRoute(): Promise<{ id?: string; name?: string | null } | null>;
  };
  service: {
    setTarget(host: string, port: number): Promise<null>;
    setRetries(retries: number): Promise<null>;
    /** Milliseconds, integers 1 – 2147483646 (Kong raises a Lua error otherwise: a 500). */
    setTimeouts(connectMs: number, writeMs: number, readMs: number): Promise<null>;
    request: {
      /** The body sent to the replica instead of the client's (Content-Length follows). */
      setRawBody(body: string): Promise<null>;
    };
  };
  response: {
    exit(status: number, body?: string, headers?: Record<string, string>): Promise<null>;
    getStatus(): Promise<number>;
    /** "service" (the replica answered), "exit" (a plugin answered), "error" (nginx failed the attempt: refused, timed out). */
    getSource(): Promise<string>;
  };
  ctx: {
    shared: {
      get(key: string): Promise<unknown>;
      set(key: string, value: unknown): Promise<null>;
    };
  };
  log: {
    serialize(): Promise<string>;
    err(...parts: unknown[]): Promise<null>;
    warn(...parts: unknown[]): Promise<null>;
    notice(...parts: unknown[]): Promise<null>;
  };
}
