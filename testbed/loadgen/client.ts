// The streaming client: one POST per request over a keep-alive pool, the OpenAI server-sent-event
// stream parsed as it arrives, and the timings an LLM benchmark reports (the definitions of vLLM's
// benchmark_serving):
//   TTFT  time from sending to the first chunk that carries output text (not to the headers: a
//         server may flush headers at once and make the client wait for prefill);
//   ITL   the gaps between successive content chunks, as the client saw them;
//   TPOT  (e2e − TTFT) / (output tokens − 1), the mean decode time per token after the first;
//   e2e   time from sending to `data: [DONE]`.
// Output tokens come from the usage chunk (stream_options.include_usage) when the server sends
// one, else from the number of content chunks. Every request ends, one way or another, by its
// deadline: the promise never rejects and never hangs.

import http from 'node:http';
import { performance } from 'node:perf_hooks';

/**
 * How a request failed.
 * - connect-error: no response: refused, reset or unreachable before any byte came back, or the
 *   TCP connect itself outlived the deadline;
 * - timeout: the deadline passed while the server had the request (before or during the stream);
 * - client-timeout: the deadline passed before the request even had a socket (the client's pool
 *   was full: the generator, not the server, was the bottleneck);
 * - http-status: a non-2xx answer (see `status`);
 * - malformed-stream: not a valid OpenAI SSE stream: wrong content type, bad SSE framing, a data
 *   event that is not JSON, events after [DONE], or the stream ended without [DONE];
 * - stream-error: the stream carried an error event (`{"error": ...}`), as vLLM sends mid-stream.
 */
export type ErrorKind = 'connect-error' | 'timeout' | 'client-timeout' | 'http-status' | 'malformed-stream' | 'stream-error';

export const ERROR_KINDS: readonly ErrorKind[] = ['connect-error', 'timeout', 'client-timeout', 'http-status', 'malformed-stream', 'stream-error'];

/** What the client needs of a request (a LoadRequest fits). */
export interface SendableRequest {
  path: string;
  headers: Record<string, string>;
  body: unknown;
}

export interface ClientResult {
  ok: boolean;
  /** HTTP status, null when no response arrived. */
  status: number | null;
  error: ErrorKind | null;
  /** A human-readable reason for the error, null on success. */
  errorDetail: string | null;
  /** Header x-llm-replica, else the stream's system_fingerprint, else null. */
  replica: string | null;
  /** From sending until a connected socket: pool wait + TCP connect (≈0 on a reused socket). */
  socketReadyMs: number | null;
  /** From sending until the response headers. */
  headersMs: number | null;
  /** From sending until the first chunk with output text. */
  ttftMs: number | null;
  /** From sending until data: [DONE]; null unless ok. */
  e2eMs: number | null;
  /** (e2e − TTFT) / (outputTokens − 1); null unless ok with at least 2 tokens. */
  tpotMs: number | null;
  /** Gaps between successive content chunks. */
  interTokenMs: number[];
  /** usage.completion_tokens when present, else contentChunks. */
  outputTokens: number;
  contentChunks: number;
  /** usage.completion_tokens of the stream's usage chunk, null without one. */
  usageOutputTokens: number | null;
  /** From sending until this result was settled, whatever the outcome. */
  elapsedMs: number;
}

export interface ClientOptions {
  /** http://host:port, optionally with a path prefix. Use 127.0.0.1 rather than localhost (Node may try ::1 first). */
  baseUrl: string;
  /** Deadline per request, from sending to the end of the stream. */
  timeoutMs: number;
  /** Sockets the keep-alive pool may open to the target; more requests wait for one. */
  maxSockets?: number;
  /** Sent with every request, over the request's own headers (auth keys, a forced session id). */
  headers?: Record<string, string>;
  /** Send every request to this path instead of its own. */
  path?: string;
  /** Monotonic milliseconds; performance.now by default. */
  now?: () => number;
}

export interface LoadClient {
  /** Sends one request; `timeoutMs` overrides the client's deadline for this request only. */
  send(request: SendableRequest, overrides?: { timeoutMs?: number }): Promise<ClientResult>;
  /** Closes the pool's sockets. */
  close(): void;
}

/**
 * Default pool size: well above the concurrency of the rates this generator targets on one machine
 * (Little's law: 50 req/s × 20 s streams = 1000), so the pool is not what limits an open-loop run.
 */
export const DEFAULT_MAX_SOCKETS = 1024;

/** Characters of a non-2xx body kept in errorDetail: enough for an OpenAI error message. */
const ERROR_BODY_CHARS = 300;

export function createClient(options: ClientOptions): LoadClient {
  if (!(options.timeoutMs > 0)) throw new RangeError(`timeoutMs must be positive, got ${options.timeoutMs}`);
  const base = new URL(options.baseUrl);
  if (base.protocol !== 'http:') throw new RangeError(`only http:// targets are supported, got ${options.baseUrl}`);
  const pathPrefix = base.pathname.replace(/\/+$/, '');
  const now = options.now ?? (() => performance.now());
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? DEFAULT_MAX_SOCKETS });

  return {
    send: (request, overrides) =>
      sendOne(request, {
        agent,
        hostname: base.hostname.replace(/^\[|\]$/g, ''),
        port: base.port === '' ? 80 : Number(base.port),
        path: pathPrefix + (options.path ?? request.path),
        extraHeaders: options.headers ?? {},
        timeoutMs: overrides?.timeoutMs ?? options.timeoutMs,
        now,
      }),
    close: () => agent.destroy(),
  };
}

interface Target {
  agent: http.Agent;
  hostname: string;
  port: number;
  path: string;
  extraHeaders: Record<string, string>;
  timeoutMs: number;
  now: () => number;
}

/** Where a request stands; decides which kind of timeout the deadline is. */
type Phase = 'waiting-for-socket' | 'connecting' | 'awaiting-response' | 'streaming';

/** A stream-level failure raised while parsing; carries its error kind. */
class StreamFailure extends Error {
  constructor(
    readonly kind: 'malformed-stream' | 'stream-error',
    message: string,
  ) {
    super(message);
  }
}

function sendOne(request: SendableRequest, target: Target): Promise<ClientResult> {
  // Serialised before the clock starts: building the body is the generator's work, not latency.
  const payload = Buffer.from(JSON.stringify(request.body));
  const now = target.now;

  return new Promise<ClientResult>((resolve) => {
    const startedAt = now();
    let phase: Phase = 'waiting-for-socket';
    let settled = false;
    let status: number | null = null;
    let replicaHeader: string | null = null;
    let fingerprint: string | null = null;
    let socketReadyAt: number | null = null;
    let headersAt: number | null = null;
    let doneAt: number | null = null;
    let usageOutputTokens: number | null = null;
    const contentAt: number[] = [];

    const result = (error: ErrorKind | null, errorDetail: string | null): ClientResult => {
      const since = (at: number | null) => (at === null ? null : at - startedAt);
      const ok = error === null;
      const ttftMs = since(contentAt.length > 0 ? contentAt[0] : null);
      const e2eMs = ok ? since(doneAt) : null;
      const outputTokens = usageOutputTokens ?? contentAt.length;
      const interTokenMs: number[] = [];
      for (let i = 1; i < contentAt.length; i++) interTokenMs.push(contentAt[i] - contentAt[i - 1]);
      return {
        ok,
        status,
        error,
        errorDetail,
        replica: replicaHeader ?? fingerprint,
        socketReadyMs: since(socketReadyAt),
        headersMs: since(headersAt),
        ttftMs,
        e2eMs,
        tpotMs: ok && e2eMs !== null && ttftMs !== null && outputTokens > 1 ? (e2eMs - ttftMs) / (outputTokens - 1) : null,
        interTokenMs,
        outputTokens,
        contentChunks: contentAt.length,
        usageOutputTokens,
        elapsedMs: now() - startedAt,
      };
    };
    const finish = (error: ErrorKind | null, detail: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      resolve(result(error, detail));
    };
    /** Settles with an error and drops the connection (its state is unknown, it must not be reused). */
    const fail = (error: ErrorKind, detail: string) => {
      if (settled) return;
      finish(error, detail);
      req.destroy();
    };

    const req = http.request({
      agent: target.agent,
      method: 'POST',
      hostname: target.hostname,
      port: target.port,
      path: target.path,
      headers: {
        'content-type': 'application/json',
        accept: 'text/event-stream',
        'content-length': String(payload.length),
        ...request.headers,
        ...target.extraHeaders,
      },
    });

    const deadline = setTimeout(() => {
      const kind: ErrorKind = phase === 'waiting-for-socket' ? 'client-timeout' : phase === 'connecting' ? 'connect-error' : 'timeout';
      fail(kind, `no complete response within ${target.timeoutMs} ms (${phase})`);
    }, target.timeoutMs);

    req.on('socket', (socket) => {
      const ready = () => {
        socketReadyAt = now();
        if (phase === 'connecting' || phase === 'waiting-for-socket') phase = 'awaiting-response';
      };
      if (socket.connecting) {
        phase = 'connecting';
        socket.once('connect', ready);
      } else {
        ready();
      }
    });

    req.on('error', (error: NodeJS.ErrnoException) => {
      if (headersAt === null) fail('connect-error', describeError(error));
      else if (phase === 'streaming') fail('malformed-stream', `stream broke off: ${describeError(error)}`);
      else fail('http-status', `HTTP ${status}, then ${describeError(error)}`);
    });

    req.on('response', (res) => {
      headersAt = now();
      status = res.statusCode ?? null;
      replicaHeader = headerValue(res.headers['x-llm-replica']);
      res.setEncoding('utf8'); // a StringDecoder: UTF-8 characters split across packets stay whole

      if (status === null || status < 200 || status > 299) {
        let body = '';
        res.on('data', (text: string) => {
          if (body.length < ERROR_BODY_CHARS) body += text.slice(0, ERROR_BODY_CHARS - body.length);
        });
        const detail = () => `HTTP ${status}${body === '' ? '' : ': ' + body}`;
        // A complete error body leaves the connection reusable; a broken one does not.
        res.on('end', () => finish('http-status', detail()));
        res.on('close', () => fail('http-status', detail()));
        res.on('error', () => fail('http-status', detail()));
        return;
      }

      const contentType = headerValue(res.headers['content-type']) ?? '';
      if (!/^text\/event-stream\b/i.test(contentType)) {
        fail('malformed-stream', `expected content-type text/event-stream, got '${contentType}'`);
        return;
      }
      phase = 'streaming';

      let chunkAt = headersAt;
      const onEvent = (event: SseEvent) => {
        if (doneAt !== null) throw new StreamFailure('malformed-stream', 'event after data: [DONE]');
        if (event.event === 'error') throw new StreamFailure('stream-error', `error event: ${clip(event.data)}`);
        if (event.event !== null && event.event !== 'message') throw new StreamFailure('malformed-stream', `unexpected event type '${event.event}'`);
        if (event.data === '[DONE]') {
          doneAt = chunkAt;
          return;
        }
        const chunk = parseChunk(event.data);
        if (chunk.fingerprint !== null && fingerprint === null) fingerprint = chunk.fingerprint;
        if (chunk.completionTokens !== null) usageOutputTokens = chunk.completionTokens;
        if (chunk.hasContent) contentAt.push(chunkAt);
      };
      const parser = new SseParser(onEvent);
      const guard = (step: () => void) => {
        try {
          step();
        } catch (error) {
          if (error instanceof StreamFailure) fail(error.kind, error.message);
          else fail('malformed-stream', describeError(error as Error));
        }
      };

      res.on('data', (text: string) => {
        if (settled) return;
        chunkAt = now();
        guard(() => parser.push(text));
      });
      res.on('end', () => {
        if (settled) return;
        guard(() => {
          parser.end();
          if (doneAt === null) throw new StreamFailure('malformed-stream', 'stream ended without data: [DONE]');
          finish(null, null);
        });
      });
      res.on('error', (error: Error) => fail('malformed-stream', `stream broke off: ${describeError(error)}`));
      res.on('close', () => fail('malformed-stream', 'connection closed before the stream ended'));
    });

    req.end(payload);
  });
}

interface ParsedChunk {
  hasContent: boolean;
  completionTokens: number | null;
  fingerprint: string | null;
}

/** One data event of an OpenAI stream: a completion chunk (chat or legacy), or an error. */
function parseChunk(data: string): ParsedChunk {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    throw new StreamFailure('malformed-stream', `data is not JSON: ${clip(data)}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new StreamFailure('malformed-stream', `data is not a JSON object: ${clip(data)}`);
  }
  const chunk = value as Record<string, unknown>;
  if (chunk.error !== undefined && chunk.error !== null) throw new StreamFailure('stream-error', `error chunk: ${clip(data)}`);
  if (!Array.isArray(chunk.choices)) throw new StreamFailure('malformed-stream', `chunk without a choices array: ${clip(data)}`);
  let hasContent = false;
  for (const choice of chunk.choices as unknown[]) {
    if (typeof choice !== 'object' || choice === null) throw new StreamFailure('malformed-stream', `choice is not an object: ${clip(data)}`);
    const entry = choice as { text?: unknown; delta?: { content?: unknown; reasoning_content?: unknown } };
    const delta = entry.delta ?? {};
    // Reasoning models stream their thinking first; it is output all the same (vLLM counts it).
    if (nonEmpty(entry.text) || nonEmpty(delta.content) || nonEmpty(delta.reasoning_content)) hasContent = true;
  }
  const usage = chunk.usage as { completion_tokens?: unknown } | null | undefined;
  const completionTokens = usage !== null && typeof usage === 'object' && typeof usage.completion_tokens === 'number' ? usage.completion_tokens : null;
  const fingerprint = typeof chunk.system_fingerprint === 'string' && chunk.system_fingerprint !== '' ? chunk.system_fingerprint : null;
  return { hasContent, completionTokens, fingerprint };
}

function nonEmpty(value: unknown): boolean {
  return typeof value === 'string' && value.length > 0;
}

export interface SseEvent {
  /** The `event:` field, null when absent. */
  event: string | null;
  /** The `data:` lines joined with '\n'. */
  data: string;
}

/** A single SSE line longer than this is not an LLM stream (a chunk is a few hundred bytes). */
const MAX_LINE_CHARS = 1 << 20;

/**
 * Incremental server-sent-events parser (WHATWG HTML §9.2.6), strict: a line must be blank, a
 * comment (`:`) or one of the fields data, event, id, retry; anything else, an over-long line, or
 * a stream that ends inside an event throws a malformed-stream failure. Lines end in \n, \r\n or
 * \r, and a \r\n split across two chunks counts once.
 */
export class SseParser {
  private partial = '';
  private lastChunkEndedWithCr = false;
  private dataLines: string[] = [];
  private eventType: string | null = null;

  constructor(private readonly onEvent: (event: SseEvent) => void) {}

  push(text: string): void {
    let start = 0;
    if (this.lastChunkEndedWithCr && text.startsWith('\n')) start = 1;
    this.lastChunkEndedWithCr = false;
    const lineEnd = /\r\n|\r|\n/g;
    lineEnd.lastIndex = start;
    let match: RegExpExecArray | null;
    while ((match = lineEnd.exec(text)) !== null) {
      const line = this.partial + text.slice(start, match.index);
      this.partial = '';
      start = match.index + match[0].length;
      if (match[0] === '\r' && start === text.length) this.lastChunkEndedWithCr = true;
      this.line(line);
    }
    this.partial += text.slice(start);
    if (this.partial.length > MAX_LINE_CHARS) throw new StreamFailure('malformed-stream', `SSE line longer than ${MAX_LINE_CHARS} characters`);
  }

  /** The stream is over: anything left unterminated is an error. */
  end(): void {
    if (this.partial !== '' || this.dataLines.length > 0 || this.eventType !== null) {
      throw new StreamFailure('malformed-stream', 'stream ended inside an event (no blank line after it)');
    }
  }

  private line(line: string): void {
    if (line === '') {
      // A blank line dispatches; an event without data is dropped, as browsers do.
      if (this.dataLines.length > 0) this.onEvent({ event: this.eventType, data: this.dataLines.join('\n') });
      this.dataLines = [];
      this.eventType = null;
      return;
    }
    if (line.startsWith(':')) return; // a comment (keep-alive pings)
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        this.dataLines.push(value);
        return;
      case 'event':
        this.eventType = value;
        return;
      case 'id':
      case 'retry':
        return; // reconnection bookkeeping: meaningless for a POST that is never retried
      default:
        throw new StreamFailure('malformed-stream', `not an SSE line: ${clip(line)}`);
    }
  }
}

function headerValue(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  const first = Array.isArray(value) ? value[0] : value;
  return first === undefined || first === '' ? null : first;
}

/** Long payloads in error details are cut to this many characters. */
const DETAIL_CHARS = 120;

function clip(text: string): string {
  return text.length <= DETAIL_CHARS ? text : text.slice(0, DETAIL_CHARS) + '…';
}

function describeError(error: Error & { code?: string }): string {
  return error.code !== undefined ? `${error.code}: ${error.message}` : error.message;
}
