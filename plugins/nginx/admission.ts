// Admission on NGINX (admission.*, issue 15): the request's side of the waiting room
// (shared/waiting-room.ts; the room's own server, where requests wait, is waiting.ts).
//
//   route      a saturated pool (the pick answers `saturated`), or one where others already wait:
//              hold() queues the request, sets $llm_balancer_ticket and redirects to
//              @llm_balancer_wait, which proxies (headers only) to the waiting room's server on a
//              unix socket. Sheddable bands (priority < 0) and a full queue are answered at once.
//   admitted   the room's "your turn" (409, intercepted) leads to @llm_balancer_admitted: route
//              again, this time picking as admitted (the grant counted it in the pool's room), and
//              the grant is spent once the pick started (its in-flight count now holds the place).
//   outcome    the log phase: a request that never started an attempt and still holds a ticket
//              left while waiting (499: nginx noticed the client's close in the proxy to the room).
// Counters (the status page, Prometheus) are in the state zone: the waiting zone's entries expire.

import { overloadedAnswer } from '../../shared/errors';
import { consumerBand } from '../../shared/admission-queue';
import type { RejectedBecause } from '../../shared/admission-queue';
import type { WaitingEntry } from '../../shared/waiting-room';
import { consumeGrant, enter, leave, parseTicket, waitingByBand } from '../../shared/waiting-room';
import type { AdmissionReport } from '../../shared/status-report';
import { TICKET_VAR, WAIT_LOCATION } from './names';
import { systemClock, waitingDict } from './runtime';
import type { NjsRequest } from './runtime';
import type { BalancerConfig } from '../../shared/config/types';
import type { Store } from '../../shared/types';

/** State-zone counters of admission: requests sent on after a wait, turned away by why, gone while waiting. */
export const ADMITTED_AFTER_WAIT_KEY = 'adm:admitted';
export const LEFT_WHILE_WAITING_KEY = 'adm:left';
export function rejectedKey(because: RejectedBecause): string {
  return 'adm:' + because;
}

/** A priority band as the variable holds it: an integer from -100 to 100. */
const BAND_TEXT = /^-?[0-9]{1,3}$/;

/**
 * The request's priority band: the value of nginx.priority_variable (set by the user's auth layer)
 * when it holds one, else the verified consumer's in admission.consumer_priorities, else
 * admission.priority.
 */
export function bandOf(r: NjsRequest, config: BalancerConfig, priorityVariable: string | null, consumerVariable: string): number {
  const text = priorityVariable === null ? undefined : r.variables[priorityVariable];
  if (priorityVariable === null || text === undefined || text === '') {
    const listed = config.admission.consumer_priorities.length > 0 ? consumerBand(config.admission.consumer_priorities, [r.variables[consumerVariable]]) : null;
    return listed !== null ? listed : config.admission.priority;
  }
  const band = BAND_TEXT.test(text) ? Number(text) : NaN;
  if (!(band >= -100 && band <= 100)) {
    r.warn('llm-balancer: $' + priorityVariable + ' is "' + text + '", not a priority band from -100 to 100: admission.priority ' + config.admission.priority + ' applies');
    return config.admission.priority;
  }
  return band;
}

/** Whose turn it is within a band (admission.fairness consumer): the verified consumer, '' for anonymous requests. */
export function tenantOf(r: NjsRequest, config: BalancerConfig, consumerVariable: string): string {
  if (config.admission.fairness !== 'consumer') return '';
  const who = r.variables[consumerVariable];
  return who === undefined ? '' : who;
}

/** Answers a request admission turned away: admission.reject_status, OpenAI-style JSON, Retry-After. */
export function answerOverloaded(r: NjsRequest, config: BalancerConfig, store: Store, because: RejectedBecause, waitedMs: number): void {
  store.incr(rejectedKey(because), 1, 0);
  const answer = overloadedAnswer(config.admission, because, waitedMs);
  r.headersOut['Content-Type'] = 'application/json';
  r.headersOut['Retry-After'] = String(answer.retryAfterS);
  r.return(answer.status, answer.body);
}

/**
 * The pool has no room now (or others wait in it): the request joins the waiting room and goes
 * to wait behind @llm_balancer_wait; sheddable or with the queue full, it is answered at once.
 */
export function hold(r: NjsRequest, config: BalancerConfig, store: Store, pool: string, band: number, tenant: string): void {
  if (band < 0) {
    answerOverloaded(r, config, store, 'shed', 0);
    return;
  }
  const admission = config.admission;
  const entered = enter(waitingDict(), pool, band, tenant, systemClock.now() + admission.max_wait_s * 1000, admission.max_queue);
  if (!entered.queued) {
    answerOverloaded(r, config, store, 'full', 0);
    return;
  }
  // A displaced request's own waiter answers it (it sees its x| verdict at its next tick).
  r.variables[TICKET_VAR] = entered.entry.key;
  r.internalRedirect(WAIT_LOCATION);
}

/** The ticket the request waited with, or null (it never waited, or the variable is not ours). */
export function ticketOf(r: NjsRequest): WaitingEntry | null {
  const key = r.variables[TICKET_VAR];
  return key === undefined || key === '' ? null : parseTicket(key);
}

/** The admitted request's pick has started: its grant is spent. */
export function admittedAfterWait(store: Store, ticket: WaitingEntry): void {
  consumeGrant(waitingDict(), ticket);
  store.incr(ADMITTED_AFTER_WAIT_KEY, 1, 0);
}

/** Log phase of a request that started no attempt: if it still waited (its client left), it leaves the room. */
export function leaveIfWaiting(r: NjsRequest, store: Store): void {
  const ticket = ticketOf(r);
  if (ticket === null) return;
  if (leave(waitingDict(), ticket)) store.incr(LEFT_WHILE_WAITING_KEY, 1, 0);
}

/** What the status page and Prometheus show of admission on this nginx (all its workers). */
export function admissionReport(store: Store): AdmissionReport {
  const count = function (key: string): number {
    const value = store.get(key);
    return value === undefined ? 0 : value;
  };
  return {
    waiting: waitingByBand(waitingDict()),
    admittedAfterWait: count(ADMITTED_AFTER_WAIT_KEY),
    rejected: { shed: count(rejectedKey('shed')), full: count(rejectedKey('full')), timeout: count(rejectedKey('timeout')), displaced: count(rejectedKey('displaced')) },
    left: count(LEFT_WHILE_WAITING_KEY),
  };
}
