// Raw HTTP/1.1 over a socket, for requests no HTTP client would send (a bad request line, a
// wrong Content-Length, invalid chunked framing, a body trickled byte by byte): bytes out, the
// answer parsed as far as it goes. Bounded: every exchange ends by the given timeout.
import net from 'node:net';

export interface RawReply {
  /** 0 when no status line arrived (nginx closed the connection without answering, or the timeout hit). */
  status: number;
  headers: Record<string, string>;
  /** The body as received (chunked framing removed when the answer was chunked and complete). */
  body: string;
  /** The exchange ended by the timeout, not by the server closing. */
  timedOut: boolean;
}

export interface RawOptions {
  /** Sent one after the other, `gapMs` apart (a slow client); instead of `data`. */
  pieces?: Array<string | Buffer>;
  gapMs?: number;
  /** Give up after this long (default 5 s). */
  timeoutMs?: number;
  /** Close our side right after sending (a client that leaves mid-request). */
  closeAfterSend?: boolean;
}

function dechunk(text: string): string | null {
  let out = '';
  let rest = text;
  for (;;) {
    const line = rest.indexOf('\r\n');
    if (line < 0) return null;
    const size = parseInt(rest.slice(0, line), 16);
    if (isNaN(size)) return null;
    if (size === 0) return out;
    out += rest.slice(line + 2, line + 2 + size);
    rest = rest.slice(line + 2 + size + 2);
  }
}

export function parseReply(text: string, timedOut: boolean): RawReply {
  const end = text.indexOf('\r\n\r\n');
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  if (!match || end < 0) return { status: 0, headers: {}, body: text, timedOut };
  const headers: Record<string, string> = {};
  for (const line of text.slice(0, end).split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = text.slice(end + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = dechunk(body) ?? body;
  else if (headers['content-length'] !== undefined) body = body.slice(0, Number(headers['content-length']));
  return { status: Number(match[1]), headers, body, timedOut };
}

/**
 * Sends `data` on a fresh connection to 127.0.0.1:`port` and reads until the server closes or,
 * once a complete answer with Content-Length or chunked framing arrived, stops there.
 */
export function rawRequest(port: number, data: string | Buffer, options: RawOptions = {}): Promise<RawReply> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (timedOut: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(parseReply(Buffer.concat(chunks).toString('latin1'), timedOut));
    };
    const timer = setTimeout(() => finish(true), options.timeoutMs ?? 5_000);
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      const reply = parseReply(Buffer.concat(chunks).toString('latin1'), false);
      if (reply.status === 0) return;
      const text = Buffer.concat(chunks).toString('latin1');
      const bodyStart = text.indexOf('\r\n\r\n') + 4;
      const length = reply.headers['content-length'];
      if (length !== undefined && Buffer.byteLength(text.slice(bodyStart), 'latin1') >= Number(length)) finish(false);
      else if (/chunked/i.test(reply.headers['transfer-encoding'] ?? '') && text.endsWith('0\r\n\r\n')) finish(false);
    });
    socket.on('close', () => finish(false));
    socket.on('error', () => finish(false));
    socket.on('connect', async () => {
      const pieces = options.pieces ?? [data];
      for (let i = 0; i < pieces.length && !settled; i++) {
        socket.write(pieces[i]);
        if (options.gapMs && i < pieces.length - 1) await new Promise((r) => setTimeout(r, options.gapMs));
      }
      if (options.closeAfterSend) socket.end();
    });
  });
}

/** A request head (request line + headers + blank line) for `rawRequest`. */
export function head(method: string, path: string, headers: Record<string, string | number> = {}): string {
  let text = `${method} ${path} HTTP/1.1\r\nHost: gateway\r\n`;
  for (const [name, value] of Object.entries(headers)) text += `${name}: ${value}\r\n`;
  return text + '\r\n';
}
