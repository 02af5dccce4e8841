// What each string of a balancer file's `nginx:` section may hold, checked before anything is
// rendered: every one of them lands in nginx.conf (or in the JSON the module fetches with), and
// nginx.conf has no quoting the generator could lean on everywhere (`listen`, `location`, `allow`
// take bare words). So the rule is: a value is refused unless it is one of the forms its directive
// is documented to take, and the error says which form was expected.
//
// Paths (module_path, js_path, config_json) are written double-quoted and escaped, so no path can
// break out of its directive anyway; they are still refused when they hold control characters,
// quotes, backslashes, `;`, `{`, `}`, `$`, `#` or a backtick. None of these is needed in a real
// module or data path, each is the kind of character a paste error or an injection attempt
// brings, and refusing them keeps the generated file readable and safe to copy into a shell.
// Spaces and non-ASCII letters stay allowed (a home folder may hold both).

import { hostPortProblem, quote } from '../../../shared/config/validate';
import type { ConfigError } from '../../../shared/config/validate';
import type { NginxOptions } from './options';

/**
 * Words allowed after the address in `nginx.listen`. Only flags that work without anything else
 * in the config: `ssl` needs certificates (terminate TLS in front, or include the --snippet in your
 * own TLS server), `http2` on listen is deprecated since nginx 1.25.1, `proxy_protocol` needs the
 * real-IP setup of the proxy in front.
 */
export const LISTEN_FLAGS = ['default_server', 'reuseport', 'deferred', 'backlog=N', 'ipv6only=on|off'];

/** The location prefix: a `/` and then unreserved URI characters and `/` only. */
const LOCATION = /^\/[A-Za-z0-9._~/-]*$/;

/** A path: anything printable but quotes, backslash, `;{}$#` and backtick (see the header). */
const PATH = /^[^\u0000-\u001f\u007f-\u009f\u2028\u2029"'\\;{}$#`]+$/;

/** An nginx upstream name as the NGINX Plus API spells it in its URL. */
const UPSTREAM_NAME = /^[A-Za-z0-9_.:-]+$/;


/** null when `text` is a port, `*:port`, `host:port`, `ipv4:port` or `[ipv6]:port` plus allowed flags; else what is wrong. */
export function listenProblem(text: string): string | null {
  const words = text.split(' ');
  const address = words[0];
  if (/^[0-9]+$/.test(address)) {
    const port = parseInt(address, 10);
    if (address.length > 5 || port < 1 || port > 65535) return 'the port must be 1-65535';
  } else if (address.slice(0, 2) === '*:') {
    if (hostPortProblem('0.0.0.0' + address.slice(1)) !== null) return 'the port must be 1-65535';
  } else {
    const problem = hostPortProblem(address);
    if (problem !== null) return 'the address must be a port, *:port, host:port, ipv4:port or [ipv6]:port' + (problem === '' ? '' : ' (' + problem + ')');
  }
  const seen: string[] = [];
  for (let i = 1; i < words.length; i++) {
    const flag = words[i];
    const name = flag.split('=')[0];
    const known =
      flag === 'default_server' ||
      flag === 'reuseport' ||
      flag === 'deferred' ||
      /^backlog=[1-9][0-9]{0,6}$/.test(flag) ||
      flag === 'ipv6only=on' ||
      flag === 'ipv6only=off';
    if (!known) return 'after the address only ' + LISTEN_FLAGS.join(', ') + ' may follow, separated by single spaces; got ' + quote(flag);
    if (seen.indexOf(name) >= 0) return quote(name) + ' is given twice';
    seen.push(name);
  }
  return null;
}

/** The 4 octets of a dotted IPv4 address, or null. */
function ipv4Bytes(text: string): number[] | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const bytes: number[] = [];
  for (let i = 0; i < 4; i++) {
    if (!/^[0-9]{1,3}$/.test(parts[i])) return null;
    const value = parseInt(parts[i], 10);
    if (value > 255) return null;
    bytes.push(value);
  }
  return bytes;
}

/** The 16 bytes of an IPv6 address (`::` and an embedded IPv4 tail allowed), or null. */
function ipv6Bytes(text: string): number[] | null {
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups: number[][] = [];
  for (let h = 0; h < halves.length; h++) {
    const out: number[] = [];
    if (halves[h] !== '') {
      const parts = halves[h].split(':');
      for (let i = 0; i < parts.length; i++) {
        const last = h === halves.length - 1 && i === parts.length - 1;
        if (last && parts[i].indexOf('.') >= 0) {
          const v4 = ipv4Bytes(parts[i]);
          if (v4 === null) return null;
          out.push(v4[0] * 256 + v4[1], v4[2] * 256 + v4[3]);
        } else if (/^[0-9A-Fa-f]{1,4}$/.test(parts[i])) {
          out.push(parseInt(parts[i], 16));
        } else {
          return null;
        }
      }
    }
    groups.push(out);
  }
  let words: number[];
  if (groups.length === 1) {
    if (groups[0].length !== 8) return null;
    words = groups[0];
  } else {
    const missing = 8 - groups[0].length - groups[1].length;
    // `::` stands for at least one zero group.
    if (missing < 1) return null;
    words = groups[0].concat(new Array(missing).fill(0), groups[1]);
  }
  const bytes: number[] = [];
  for (let i = 0; i < 8; i++) bytes.push(words[i] >> 8, words[i] & 255);
  return bytes;
}

/** null when `text` is what `allow` takes here: an IPv4 or IPv6 address, or a CIDR without host bits. */
export function allowProblem(text: string): string | null {
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const bytes = ipv4Bytes(address) || ipv6Bytes(address);
  if (bytes === null) {
    return text === 'all' ? 'to open the page to everyone list 0.0.0.0/0 and ::/0' : '';
  }
  if (slash < 0) return null;
  const bits = bytes.length * 8;
  const length = text.slice(slash + 1);
  if (!/^[0-9]{1,3}$/.test(length) || parseInt(length, 10) > bits) return 'the prefix length must be 0-' + bits;
  const prefix = parseInt(length, 10);
  for (let bit = prefix; bit < bits; bit++) {
    if ((bytes[bit >> 3] >> (7 - (bit & 7))) & 1) return 'address bits beyond the /' + prefix + ' prefix are set';
  }
  return null;
}

/** Every `nginx:` string checked against its directive; errors appended with their field paths. */
export function checkNginxValues(nginx: NginxOptions, errors: ConfigError[]): void {
  if (typeof nginx.listen === 'string') {
    const problem = listenProblem(nginx.listen);
    if (problem !== null) {
      errors.push({ path: 'nginx.listen', message: 'must be a port or address:port, optionally followed by ' + LISTEN_FLAGS.join(', ') + ', got ' + quote(nginx.listen) + ' (' + problem + ')' });
    }
  }
  if (typeof nginx.location === 'string' && !LOCATION.test(nginx.location)) {
    errors.push({ path: 'nginx.location', message: 'must be a URI prefix starting with / of letters, digits and - . _ ~ / only, got ' + quote(nginx.location) });
  }
  if (Array.isArray(nginx.status_allow)) {
    for (let i = 0; i < nginx.status_allow.length; i++) {
      const entry = nginx.status_allow[i];
      if (typeof entry !== 'string') continue;
      const problem = allowProblem(entry);
      if (problem !== null) {
        errors.push({ path: 'nginx.status_allow[' + i + ']', message: 'must be an IPv4 or IPv6 address or CIDR such as 10.0.0.0/8 or fd00::/8, got ' + quote(entry) + (problem === '' ? '' : ' (' + problem + ')') });
      }
    }
  }
  for (const field of ['module_path', 'js_path', 'config_json'] as const) {
    const value = nginx[field];
    if (typeof value === 'string') checkPath('nginx.' + field, value, errors);
  }
  if (nginx.js_context_reuse !== null && nginx.js_context_reuse !== undefined && nginx.js_engine !== 'qjs') {
    errors.push({ path: 'nginx.js_context_reuse', message: 'applies only with js_engine qjs (the njs engine runs every request in a fresh VM), got js_engine ' + quote(String(nginx.js_engine)) });
  }
  if (nginx.plus_api) {
    const url = nginx.plus_api.url;
    if (typeof url === 'string' && plusUrlProblem(url) !== null) {
      errors.push({ path: 'nginx.plus_api.url', message: 'must be an http(s) URL such as http://127.0.0.1:8080/api/9 (host, optional port, a path of URL characters), got ' + quote(url) + ' (' + plusUrlProblem(url) + ')' });
    }
    const upstream = nginx.plus_api.upstream;
    if (typeof upstream === 'string' && !UPSTREAM_NAME.test(upstream)) {
      errors.push({ path: 'nginx.plus_api.upstream', message: 'must be an upstream name of letters, digits and _ . : - only, got ' + quote(upstream) });
    }
  }
}

/** A path that is written into nginx.conf (a user's, or one the CLI derived from the files it was given). */
export function checkPath(fieldPath: string, value: string, errors: ConfigError[], origin?: string): void {
  if (PATH.test(value) && value.trim() === value) return;
  errors.push({
    path: fieldPath,
    message: 'must be a file path without control characters, quotes, backslashes, ; { } $ # ` or surrounding spaces, got ' + quote(value) + (origin ? ' (' + origin + ')' : ''),
  });
}

/** Longest unix socket path (sun_path is 108 bytes on Linux, with its NUL; a margin for other systems). */
export const MAX_SOCKET_PATH = 100;

/** A unix socket path written into nginx.conf (listen unix:..., server unix:...). */
export function checkSocketPath(fieldPath: string, value: string, errors: ConfigError[], origin?: string): void {
  const suffix = origin ? ' (' + origin + ')' : '';
  if (!PATH.test(value) || value.indexOf(':') >= 0 || value.charAt(0) !== '/') {
    errors.push({ path: fieldPath, message: 'must be an absolute file path without control characters, quotes, backslashes, : ; { } $ # ` or spaces, got ' + quote(value) + suffix });
  } else if (Buffer.byteLength(value) > MAX_SOCKET_PATH) {
    errors.push({ path: fieldPath, message: 'must be at most ' + MAX_SOCKET_PATH + ' bytes (a unix socket path), got ' + Buffer.byteLength(value) + ' bytes: ' + quote(value) + suffix + '; set nginx.waiting_room_socket to a shorter path' });
  }
}

function plusUrlProblem(url: string): string | null {
  const match = /^https?:\/\/(\[[^\]]*\]|[^/:[\]]+)(:[0-9]+)?(\/.*)?$/.exec(url);
  if (!match) return 'scheme://host[:port][/path]';
  const host = match[1];
  const port = match[2] ? match[2].slice(1) : '80';
  const hostPort = host + ':' + port;
  const problem = hostPortProblem(hostPort);
  if (problem !== null) return problem === '' ? 'the port must be 1-65535' : problem;
  if (match[3] !== undefined && !/^[A-Za-z0-9._~%:@/-]*$/.test(match[3])) return 'the path may hold URL characters only';
  return null;
}
