// nginx's own balancer in front of the replicas: the baseline rows of bench:gateway and the
// strategy shootout. One `upstream {}` with every replica, nginx's balancing directive (none:
// its weighted round robin), keepalive connections, unbuffered streaming. Plain JavaScript so
// both the .js and the TypeScript benchmarks import it as is.

/**
 * @param {{ port: number, servers: string[], balancing: string | null, workers: number, keepalive: number,
 *           httpDirectives?: string[], locationDirectives?: string[] }} options
 * @returns {string} a complete nginx.conf (temp paths relative to the prefix: temp/...)
 */
export function nativeNginxConf(options) {
  const servers = options.servers.map((address) => `    server ${address} max_fails=0;`).join('\n');
  const http = (options.httpDirectives ?? []).map((line) => `  ${line}\n`).join('');
  const location = (options.locationDirectives ?? []).map((line) => `      ${line}\n`).join('');
  return `worker_processes ${options.workers};
pid nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path temp/client_body;
  proxy_temp_path temp/proxy;
  fastcgi_temp_path temp/fastcgi;
  uwsgi_temp_path temp/uwsgi;
  scgi_temp_path temp/scgi;
${http}  upstream replicas {
${options.balancing === null ? '' : `    ${options.balancing};\n`}${servers}
    keepalive ${options.keepalive};
  }
  server {
    listen 127.0.0.1:${options.port};
    location /v1/ {
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
${location}    }
  }
}
`;
}
