// Line charts on the vendored uPlot: labelled axes, one or more series that
// can grow (`set` again with more points), as wide as their container (and
// resized with it, whether the window or the grid around it changed), and a
// text description for screen readers. The container's `data-points` holds
// the number of points drawn and `data-axes` the axis labels (drawn on the
// canvas); the browser tests read them.

import { h, num } from './ui.js';

export const PALETTE = ['#1f6fd1', '#d1501f', '#2a9d4b', '#8e44ad', '#c0392b', '#b8860b', '#16a2b8', '#6c757d'];

// Room for the y tick labels: their longest text, plus the axis label.
const yAxisSize = (u, values) => 30 + 7 * Math.max(3, ...(values || []).map((v) => String(v).length));

// Steps are whole numbers: ticks never fall between two.
const STEP_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 2.5e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

const AXIS = { stroke: '#444', grid: { stroke: '#e6e6e6', width: 1 }, ticks: { stroke: '#ccc', width: 1 } };

/**
 * A chart in `parent`: `{title, x, y, series: [{label, color?}], range?}`.
 * Returns `{set(xs, ...ys), destroy()}`; `ys[k]` holds series k's values
 * (null for a gap).
 */
export function lineChart(parent, { title, x, y, series, range, key }) {
  const plotBox = h('div', { class: 'plot' });
  const empty = h('p', { class: 'chart-empty muted' }, 'No points yet');
  const figure = h(
    'figure',
    { class: 'chart', role: 'img', 'aria-label': `${title}: no points yet`, dataset: { chart: key || '', points: 0, axes: `${x} | ${y}` } },
    h('figcaption', {}, title),
    plotBox,
    empty,
  );
  parent.append(figure);
  // The container's width; a floor keeps a hidden or collapsed chart drawable.
  const width = () => Math.max(160, plotBox.clientWidth || figure.clientWidth || 360);
  const opts = {
    width: width(),
    height: 210,
    legend: { show: true, live: true },
    cursor: { drag: { x: true, y: false }, points: { size: 6 } },
    scales: { x: { time: false }, y: range ? { range } : { auto: true } },
    axes: [
      { ...AXIS, label: x, labelSize: 18, size: 34, incrs: x === 'step' ? STEP_INCRS : undefined, values: (u, splits) => splits.map((v) => num(v, 3)) },
      { ...AXIS, label: y, labelSize: 18, size: yAxisSize, values: (u, splits) => splits.map((v) => num(v, 3)) },
    ],
    series: [
      { label: x, value: (u, v) => (v === null || v === undefined ? '—' : num(v)) },
      ...series.map((s, i) => ({
        label: s.label,
        stroke: s.color || PALETTE[i % PALETTE.length],
        width: 2,
        spanGaps: true,
        points: { show: (u, si, i0, i1) => i1 - i0 < 60, size: 5 },
        value: (u, v) => (v === null || v === undefined ? '—' : num(v)),
      })),
    ],
  };
  // index.html loads the vendored script (deferred) before the app's modules run.
  const plot = new window.uPlot(opts, [[], ...series.map(() => [])], plotBox);
  // Fires on window resizes and on layout changes alike (the grid stacking on a phone).
  const resize = new ResizeObserver(() => {
    const w = width();
    if (w !== plot.width) plot.setSize({ width: w, height: 210 });
  });
  resize.observe(plotBox);
  return {
    set(xs, ...ys) {
      plot.setData([xs, ...ys]);
      const n = xs.length;
      figure.dataset.points = n;
      empty.hidden = n > 0;
      const last = ys.map((col, i) => `${series[i].label} ${num(col[n - 1])}`).join(', ');
      figure.setAttribute(
        'aria-label',
        n ? `${title}: ${n} points, ${x} ${num(xs[0])} to ${num(xs[n - 1])}; last: ${last}` : `${title}: no points yet`,
      );
    },
    destroy() {
      resize.disconnect();
      plot.destroy();
      figure.remove();
    },
  };
}

/**
 * Aligns several `[xs, ys]` series on the union of their x values (gaps as
 * null), for overlays of runs logged at different steps.
 */
export function alignSeries(list) {
  const xs = [...new Set(list.flatMap(([x]) => x))].sort((a, b) => a - b);
  const at = new Map(xs.map((v, i) => [v, i]));
  const ys = list.map(([x, y]) => {
    const col = new Array(xs.length).fill(null);
    x.forEach((v, i) => {
      col[at.get(v)] = y[i];
    });
    return col;
  });
  return [xs, ...ys];
}
