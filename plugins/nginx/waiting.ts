// The waiting room's own server (admission.enabled): where a request of a saturated pool waits.
// @llm_balancer_wait proxies the request's headers here over a unix socket; this js_content
// handler holds that inner request on a timer until the room decides (shared/waiting-room.ts):
//   its turn    → TURN_STATUS (409, empty), which the outer location turns into @llm_balancer_admitted
//   timed out or displaced → admission.reject_status with the OpenAI-style JSON and Retry-After,
//                 passed through to the client as it is
//   gone        → 204 to nobody: the client left, the outer request's log phase took it out
// Every tick may run the dispatch round (at most one per ROUND_MS across the workers), which asks the
// balancer how much room each pool has (in-flight counts, scraped load: shared/saturation.ts).
// A cold handler: only waiting requests run it. Nothing per request is kept at module level (QuickJS
// reuses contexts): each wait's state is in its own closure.

import { claimRound, dispatchRound, entryMissing, parseTicket, verdictOf } from '../../shared/waiting-room';
import type { WaitingDict, WaitingEntry } from '../../shared/waiting-room';
import { internalError } from './errors';
import { answerOverloaded } from './admission';
import { context, discoveredReplicas } from './handlers';
import type { Context } from './handlers';
import { MODELS_ROUTING_KEY, TICKET_HEADER, TURN_STATUS } from './names';
import { describeError, systemClock, waitingDict } from './runtime';
import type { NjsRequest } from './runtime';

/** How often a waiting request looks at its verdict (and may run the round). */
export const POLL_MS = 25;

/** One dispatch round: grants, per pool, what the balancer says it has room for. */
function runRound(ctx: Context, dict: WaitingDict, now: number): void {
  const discovered = ctx.config.models.discovery ? discoveredReplicas(ctx, MODELS_ROUTING_KEY) : null;
  const replicas = discovered !== null ? discovered : ctx.replicas;
  dispatchRound(dict, now, function (pool: string): number {
    return ctx.balancer.room(replicas, pool === '' ? {} : { model: pool });
  });
}

/** Ends the inner request whose outer one left: its connection may be closed already. */
function finishQuietly(r: NjsRequest): void {
  try {
    r.return(204);
  } catch (e) {
    // "failed to send response": the proxy connection closed with the client's.
  }
}

/** js_content of the waiting room's server: holds the request until its verdict. */
export function wait(r: NjsRequest): void {
  let entry: WaitingEntry | null;
  let ctx: Context;
  let dict: WaitingDict;
  try {
    const ticket = r.headersIn[TICKET_HEADER];
    entry = ticket === undefined ? null : parseTicket(ticket);
    ctx = context();
    dict = waitingDict();
  } catch (e) {
    r.error('llm-balancer: the waiting room failed: ' + describeError(e));
    r.headersOut['Content-Type'] = 'application/json';
    r.return(500, internalError('the waiting room failed (see the nginx error log)'));
    return;
  }
  if (entry === null) {
    r.headersOut['Content-Type'] = 'application/json';
    r.return(400, internalError('the waiting room was asked without a ticket'));
    return;
  }
  const waiting: WaitingEntry = entry;
  const since = systemClock.now();
  let missing = false;
  function tick(): void {
    try {
      const now = systemClock.now();
      const verdict = verdictOf(dict, waiting, now, missing);
      if (verdict === 'go') {
        r.return(TURN_STATUS);
        return;
      }
      if (verdict === 'timeout' || verdict === 'displaced') {
        answerOverloaded(r, ctx.config, ctx.store, verdict, now - since);
        return;
      }
      if (verdict === 'gone') {
        // Nobody reads this answer: the outer request (and its proxy connection here) is gone.
        finishQuietly(r);
        return;
      }
      missing = entryMissing(dict, waiting);
      if (claimRound(dict)) {
        runRound(ctx, dict, now);
        // The round may have granted this very request: no need to wait a tick for it.
        if (verdictOf(dict, waiting, now, false) === 'go') {
          r.return(TURN_STATUS);
          return;
        }
      }
      setTimeout(tick, POLL_MS);
    } catch (e) {
      r.error('llm-balancer: the waiting room failed: ' + describeError(e));
      try {
        r.headersOut['Content-Type'] = 'application/json';
        r.return(500, internalError('the waiting room failed (see the nginx error log)'));
      } catch (ignored) {
        // The outer request is gone too.
      }
    }
  }
  tick();
}
