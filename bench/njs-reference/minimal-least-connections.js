// bench:gateway reference point, not a product: the least bookkeeping a least-connections picker
// in njs needs, written by hand for speed (no objects, no closures, four fixed replicas).
//   pick:    skip ejected replicas, fewest in flight (random tie-break), count the start
//   outcome: in flight -1, picks +1, consecutive failures, latency EWMA
// No retries plan, no health checks, no half-open trials, no TTFT, no status: llm-balancer does
// all of that. It shows how close to native nginx ANY njs picker with shared state can get.
/* global ngx */

const KEYS = ['r:0:', 'r:1:', 'r:2:', 'r:3:'];
const HALF_LIFE_MS = 10000;

function pick(r) {
  const d = ngx.shared.reference;
  const now = Date.now();
  let seed = d.incr('seed', 1, 0);
  let best = -1;
  let bestCost = Infinity;
  let ties = 0;
  for (let i = 0; i < KEYS.length; i++) {
    const until = d.get(KEYS[i] + 'eu');
    if (until !== undefined && until > now) continue;
    const cost = (d.get(KEYS[i] + 'if') || 0) + 1;
    if (cost < bestCost) {
      bestCost = cost;
      best = i;
      ties = 1;
    } else if (cost === bestCost) {
      ties++;
      seed = Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) >>> 0;
      if ((seed / 4294967296) * ties < 1) best = i;
    }
  }
  d.incr(KEYS[best] + 'if', 1, 0);
  r.variables.reference_picked = String(best);
  return 'reference_' + best;
}

function outcome(r) {
  const picked = r.variables.reference_picked;
  if (!picked) return '';
  const d = ngx.shared.reference;
  const p = KEYS[Number(picked)];
  d.incr(p + 'if', -1, 0);
  d.incr(p + 'pk', 1, 0);
  const status = r.variables.upstream_status;
  if (status >= '500') d.incr(p + 'cf', 1, 0);
  else d.set(p + 'cf', 0);
  const latency = parseFloat(r.variables.upstream_response_time) * 1000;
  const now = Date.now();
  const previous = d.get(p + 'ew');
  const keep = previous === undefined ? 0 : Math.pow(0.5, (now - d.get(p + 'ea')) / HALF_LIFE_MS);
  d.set(p + 'ew', previous === undefined ? latency : previous * keep + latency * (1 - keep));
  d.set(p + 'ea', now);
  return '';
}

export default { pick, outcome };
