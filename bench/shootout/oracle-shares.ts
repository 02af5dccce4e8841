// Every shootout row as a share of the oracle's (issue 16). The `oracle` row routes by the emulated
// replicas' true state (testbed/oracle/router.ts, started inside the emulator process: no gateway
// hop), so what it achieves is the yardstick of what routing can get out of these replicas; a
// row's shares say how much of that a balancer that sees only what a gateway sees keeps.
// Goodput and hit rate shares are row ÷ oracle; the TTFT p50 share is oracle ÷ row, so for all
// three 1.00 is "as good as the oracle", below is worse, above is better. Pure: data in, numbers out.

import type { LevelResult, Row } from './format';

/** The row name of the oracle router. */
export const ORACLE_ROW = 'oracle';

/** Issue 16's target: the best shipped strategy keeps this share of the oracle's goodput and hit rate. */
export const ORACLE_TARGET = 0.9;

export interface OracleShares {
  /** Goodput share (requests within the SLO) ÷ the oracle's. */
  goodput: number | null;
  /** Prefix-cache hit rate ÷ the oracle's; null when the oracle hit nothing (no shared prefixes). */
  hitRate: number | null;
  /** The oracle's TTFT p50 ÷ this row's (1 = as fast, below 1 = slower). */
  ttftP50: number | null;
}

function share(value: number | null | undefined, of: number | null | undefined): number | null {
  if (value === null || value === undefined || of === null || of === undefined || !(of > 0)) return null;
  return value / of;
}

export function oracleShares(row: Row, oracle: Row): OracleShares {
  return {
    goodput: share(row.report.goodput?.share, oracle.report.goodput?.share),
    hitRate: share(row.cache?.hitRate, oracle.cache?.hitRate),
    ttftP50: share(oracle.report.metrics.ttft.p50Ms, row.report.metrics.ttft.p50Ms),
  };
}

/** The level's oracle row, if it ran. */
export function oracleRowOf(level: LevelResult): Row | undefined {
  return level.rows.find((row) => row.strategy === ORACLE_ROW);
}

/**
 * A row llm-balancer ships: anything but the oracle rows (`oracle`, `oracle (overlap 4)`) and nginx's
 * own balancers (`nginx round robin`, `nginx least_conn`); njs rows, Kong rows and node rows all count.
 */
export function isShippedRow(name: string): boolean {
  return !name.startsWith(ORACLE_ROW) && !name.startsWith('nginx ');
}

export interface OracleVerdict {
  /** The shipped row closest to the oracle: the highest of min(goodput share, hit share). */
  row: string;
  shares: OracleShares;
  /** Both shares ≥ ORACLE_TARGET (goodput alone when the oracle hit nothing). */
  met: boolean;
}

/**
 * The best shipped row against the oracle. Best means the one whose weaker share of the two the
 * target names is highest: the target asks for one row that keeps both, not the best of each.
 * Null when no shipped row has a goodput share.
 */
export function judgeAgainstOracle(candidates: Array<{ row: string; shares: OracleShares }>): OracleVerdict | null {
  let best: OracleVerdict | null = null;
  let bestScore = -Infinity;
  for (const candidate of candidates) {
    if (!isShippedRow(candidate.row) || candidate.shares.goodput === null) continue;
    const score = candidate.shares.hitRate === null ? candidate.shares.goodput : Math.min(candidate.shares.goodput, candidate.shares.hitRate);
    if (score > bestScore) {
      bestScore = score;
      best = { row: candidate.row, shares: candidate.shares, met: score >= ORACLE_TARGET };
    }
  }
  return best;
}

/** One line saying whether the best shipped row of a level reaches the target. */
export function renderVerdict(verdict: OracleVerdict | null): string {
  if (verdict === null) return 'Against the oracle: no shipped row with a goodput to compare.';
  const s = verdict.shares;
  const f = (value: number | null) => (value === null ? '-' : value.toFixed(2) + 'x');
  return (
    `Against the oracle: the closest shipped row is \`${verdict.row}\` — goodput ${f(s.goodput)}, cache hits ${f(s.hitRate)}, ` +
    `TTFT p50 ${f(s.ttftP50)} (oracle ÷ row) of the oracle's; target ≥ ${ORACLE_TARGET}x on goodput and hits` +
    `${s.hitRate === null ? ' (no cache hits to compare: goodput alone)' : ''}: **${verdict.met ? 'met' : 'missed'}**.`
  );
}
