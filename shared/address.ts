// Splitting "host:port" (and "[v6]:port") for gateways that want host and port apart
// (Kong's set_target). The validator has already checked the form; this never throws.

export interface HostPort {
  host: string;
  port: number;
}

export function splitAddress(address: string): HostPort {
  const colon = address.lastIndexOf(':');
  let host = colon >= 0 ? address.slice(0, colon) : address;
  const port = colon >= 0 ? parseInt(address.slice(colon + 1), 10) : NaN;
  if (host.charAt(0) === '[' && host.charAt(host.length - 1) === ']') host = host.slice(1, -1);
  return { host: host, port: port };
}
