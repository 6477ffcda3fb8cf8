// Time-series charts on uPlot (vendored, global `uPlot`), themed from the CSS variables.

// container → {chart, args}: one chart per container, its arguments kept for a theme redraw.
const charts = new Map();

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** Line styles by role, read from the stylesheet so light and dark both work. */
function styleFor(role) {
  const styles = {
    actual: { stroke: cssVar("--actual"), width: 1.5 },
    forecast: { stroke: cssVar("--forecast"), width: 2 },
    bound: { stroke: cssVar("--band-edge"), width: 1 },
    naive: { stroke: cssVar("--naive"), width: 1.5, dash: [6, 4] },
  };
  return styles[role];
}

function axes(format) {
  const common = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--grid") }, ticks: { stroke: cssVar("--grid") } };
  return [common, { ...common, size: 64, values: (u, splits) => splits.map(format) }];
}

/** Count the non-null values of each series (what the chart really draws). */
export function pointCounts(data) {
  return data.slice(1).map((values) => values.filter((v) => v != null).length);
}

/**
 * Draw (or redraw) a chart in `container`.
 * series: [{label, role, value(v) → text}]; data: [xs, ...ys] with null for gaps;
 * band: [upperIndex, lowerIndex] (series indexes, 1-based as uPlot counts) to shade between.
 */
export function drawChart(container, args) {
  const { series, data, band, format, height = 320 } = args;
  charts.get(container)?.chart.destroy();
  const options = {
    width: Math.max(container.clientWidth, 280),
    height,
    // Candles are UTC days: label the axis in UTC whatever the reader's time zone.
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: { x: { time: true } },
    series: [{}, ...series.map((s) => ({
      label: s.label, ...styleFor(s.role), spanGaps: false, points: { show: false },
      value: (u, v) => (v == null ? "—" : s.value(v)),
    }))],
    bands: band ? [{ series: band, fill: cssVar("--band") }] : [],
    axes: axes(format),
    legend: { live: true },
    cursor: { drag: { x: true, y: false } },
  };
  const chart = new uPlot(options, data, container);
  charts.set(container, { chart, args });
  return chart;
}

export function clearChart(container) {
  charts.get(container)?.chart.destroy();
  charts.delete(container);
}

// Colours come from the stylesheet: redraw when the system switches light/dark.
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  for (const [container, { args }] of charts) drawChart(container, args);
});

/** Keep every chart as wide as its container. */
export function followWidth(container) {
  new ResizeObserver(() => {
    const chart = charts.get(container)?.chart;
    if (chart && container.clientWidth && chart.width !== container.clientWidth) {
      chart.setSize({ width: container.clientWidth, height: chart.height });
    }
  }).observe(container);
}
