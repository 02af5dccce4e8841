// The shootout's chart: hand-written SVG, no dependencies. One panel per load level; in it one
// series per row (strategy): a bar from p50 to p99 of e2e latency with ticks at p50, p90 and p99
// and a dot at the mean, on a shared millisecond axis. Pure: data in, text out.

import type { ShootoutResult } from './format';

const ROW_HEIGHT = 22;
const LABEL_WIDTH = 170;
const PLOT_WIDTH = 520;
const PANEL_GAP = 46;
const TOP = 40;

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A round axis maximum ≥ value: 1, 2 or 5 × a power of ten. */
function niceCeiling(value: number): number {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

export function renderChart(result: ShootoutResult): string {
  let maxMs = 0;
  for (const level of result.levels) for (const row of level.rows) maxMs = Math.max(maxMs, row.report.metrics.e2e.p99Ms ?? 0);
  const axisMax = niceCeiling(maxMs);
  const x = (valueMs: number) => LABEL_WIDTH + (Math.min(valueMs, axisMax) / axisMax) * PLOT_WIDTH;
  const parts: string[] = [];
  let y = TOP;
  for (const level of result.levels) {
    parts.push(`<text x="10" y="${y}" font-weight="bold">${Math.round(level.level * 100)}% of capacity (${level.ratePerS} req/s)</text>`);
    y += 12;
    for (const row of level.rows) {
      const e2e = row.report.metrics.e2e;
      const cy = y + ROW_HEIGHT / 2;
      const series: string[] = [`<text x="${LABEL_WIDTH - 8}" y="${cy + 4}" text-anchor="end">${escapeXml(row.strategy)}</text>`];
      if (e2e.p50Ms !== null && e2e.p90Ms !== null && e2e.p99Ms !== null && e2e.meanMs !== null) {
        series.push(
          `<rect x="${x(e2e.p50Ms).toFixed(1)}" y="${cy - 6}" width="${Math.max(1, x(e2e.p99Ms) - x(e2e.p50Ms)).toFixed(1)}" height="12" fill="#9ecae1"/>`,
          `<rect x="${x(e2e.p50Ms).toFixed(1)}" y="${cy - 6}" width="${Math.max(1, x(e2e.p90Ms) - x(e2e.p50Ms)).toFixed(1)}" height="12" fill="#4292c6"/>`,
          `<line x1="${x(e2e.p99Ms).toFixed(1)}" x2="${x(e2e.p99Ms).toFixed(1)}" y1="${cy - 8}" y2="${cy + 8}" stroke="#08306b" stroke-width="2"/>`,
          `<circle cx="${x(e2e.meanMs).toFixed(1)}" cy="${cy}" r="3.5" fill="#d94801"/>`,
          `<text x="${(x(e2e.p99Ms) + 6).toFixed(1)}" y="${cy + 4}" font-size="10" fill="#555">p99 ${Math.round(e2e.p99Ms)}</text>`,
        );
      } else {
        series.push(`<text x="${LABEL_WIDTH}" y="${cy + 4}" fill="#a00">no completed requests</text>`);
      }
      parts.push(
        `<g class="series" data-level="${level.level}" data-strategy="${escapeXml(row.strategy)}" data-p50="${e2e.p50Ms ?? ''}" data-p90="${e2e.p90Ms ?? ''}" data-p99="${e2e.p99Ms ?? ''}" data-mean="${e2e.meanMs ?? ''}">${series.join('')}</g>`,
      );
      y += ROW_HEIGHT;
    }
    y += PANEL_GAP;
  }
  // The shared axis, under the last panel.
  const axisY = y - PANEL_GAP + 8;
  const ticks: string[] = [];
  for (let i = 0; i <= 5; i++) {
    const value = (axisMax * i) / 5;
    ticks.push(
      `<line x1="${x(value).toFixed(1)}" x2="${x(value).toFixed(1)}" y1="${TOP}" y2="${axisY}" stroke="#ddd"/>`,
      `<text x="${x(value).toFixed(1)}" y="${axisY + 14}" text-anchor="middle" font-size="10">${Math.round(value)}</text>`,
    );
  }
  const height = axisY + 56;
  const width = LABEL_WIDTH + PLOT_WIDTH + 70;
  const legendY = axisY + 36;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<text x="10" y="18" font-size="14" font-weight="bold">e2e latency per strategy (ms, emulator timeScale ${result.settings.timeScale})</text>`,
    ...ticks,
    ...parts,
    `<text x="${LABEL_WIDTH + PLOT_WIDTH / 2}" y="${axisY + 28}" text-anchor="middle" font-size="11">ms</text>`,
    `<rect x="${LABEL_WIDTH}" y="${legendY - 9}" width="18" height="10" fill="#4292c6"/><text x="${LABEL_WIDTH + 22}" y="${legendY}" font-size="11">p50–p90</text>`,
    `<rect x="${LABEL_WIDTH + 90}" y="${legendY - 9}" width="18" height="10" fill="#9ecae1"/><text x="${LABEL_WIDTH + 112}" y="${legendY}" font-size="11">p90–p99 (tick: p99)</text>`,
    `<circle cx="${LABEL_WIDTH + 250}" cy="${legendY - 4}" r="3.5" fill="#d94801"/><text x="${LABEL_WIDTH + 258}" y="${legendY}" font-size="11">mean</text>`,
    '</svg>',
    '',
  ].join('\n');
}
