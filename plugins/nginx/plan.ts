// A request's failover bookkeeping, kept in two js_var variables that survive nginx's error_page
// redirects ($llm_balancer_plan, $llm_balancer_tried; see handlers.ts). They hold replica IDS,
// not indexes: with NGINX Plus as the replica source (nginx.plus_api) the replica list is re-read
// by every njs VM (a retry location and the log phase get fresh ones), and a peer sync between
// the pick and its retry or outcome may reorder, add or remove replicas. An id always names the
// same replica (its state keys are by id), whatever list is current.
// Ids are free text (a configured id may hold a comma): each is URI-encoded, then comma-joined.
// Pure string work, unit-tested in Node.

/** ["gpu-a", "b,c"] → "gpu-a,b%2Cc" */
export function joinIds(ids: string[]): string {
  return joinIdsOf(ids.map((id) => ({ id: id })));
}

/**
 * joinIds of the items' ids (a pick's replicas, on every request), concatenated: no array of ids
 * or parts in between (allocations are most of what a request costs the njs engine).
 */
export function joinIdsOf(items: Array<{ id: string }>): string {
  let out = '';
  for (let i = 0; i < items.length; i++) out += (i === 0 ? '' : ',') + encodeURIComponent(items[i].id);
  return out;
}

/**
 * The one id of a list holding a single entry (the usual request: one attempt), or null when the
 * list holds several, none, or one that does not decode (parseIds then says what it holds).
 * No arrays: the log phase of every request reads $llm_balancer_tried.
 */
export function singleId(list: string | undefined): string | null {
  if (list === undefined || list === null || list === '' || list.indexOf(',') >= 0) return null;
  try {
    return decodeURIComponent(list);
  } catch (e) {
    return null;
  }
}

/** The inverse of joinIds; empty or absent → []. An entry that does not decode is dropped. */
export function parseIds(list: string | undefined): string[] {
  const out: string[] = [];
  if (list === undefined || list === null || list === '') return out;
  const parts = list.split(',');
  for (let i = 0; i < parts.length; i++) {
    if (parts[i] === '') continue;
    try {
      out.push(decodeURIComponent(parts[i]));
    } catch (e) {
      // Not written by joinIds: skip it.
    }
  }
  return out;
}

/**
 * The replica for the next failover attempt: the first plan entry after the last one tried that
 * was not tried yet and is still `usable` (present in the current list and taking traffic), or
 * null when none is left. Plans never repeat an id, so "after the last tried" is well defined.
 */
export function nextInPlan(plan: string[], tried: string[], usable: (id: string) => boolean): string | null {
  if (tried.length === 0) return null;
  const last = tried[tried.length - 1];
  let start = tried.length;
  for (let i = 0; i < plan.length; i++) {
    if (plan[i] === last) {
      start = i + 1;
      break;
    }
  }
  for (let i = start; i < plan.length; i++) {
    let seen = false;
    for (let j = 0; j < tried.length; j++) if (tried[j] === plan[i]) seen = true;
    if (!seen && usable(plan[i])) return plan[i];
  }
  return null;
}
