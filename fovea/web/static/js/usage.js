// The usage page: the folder's chat completions by model and day (UTC), from the usage API,
// drawn as a stacked bar chart of tokens and listed in a table under it.
import {alertBox, field, fill, h, svg} from "./dom.js";
import {describeError, formatNumber, isForbidden, permissionNotice} from "./console.js";

const DAY_S = 86400;
const RANGES = [{days: 7, label: "Last 7 days"}, {days: 30, label: "Last 30 days"}];
const SERIES_CLASSES = 8; // console.css colours series-0 … series-7
const CHART_HEIGHT = 240;
const MARGIN = {top: 14, right: 10, bottom: 40, left: 58};
const READ_NEEDS = "Reading usage needs the role ai.viewer, ai.editor or ai.admin on the " +
  "folder; ask the folder's admin for a key whose service account has one.";
const DAY_LABEL = new Intl.DateTimeFormat("en-US", {month: "short", day: "numeric", timeZone: "UTC"});
const COMPACT = new Intl.NumberFormat("en-US", {notation: "compact", maximumFractionDigits: 1});

export async function render(root, session) {
  const range = h("select", {name: "range"},
    RANGES.map((r) => h("option", {value: r.days}, r.label)));
  const body = h("div", {class: "usage-body"});
  const toolbar = h("div", {class: "toolbar"}, field("Range", range));
  let chart = null;
  let loads = 0;
  const view = h("div", {class: "console"},
    h("h1", {}, "Usage"),
    h("p", {class: "muted"},
      "Tokens, requests and images of the folder's chat completions, live and batch, by model ",
      "and day (UTC), as the usage API reports them."),
    toolbar,
    body);
  fill(root, view);

  async function load() {
    const ticket = ++loads; // a slower answer for an earlier choice is dropped
    const days = Number(range.value);
    body.setAttribute("aria-busy", "true");
    try {
      const buckets = await fetchUsage(session.api, rangeStart(days));
      if (ticket !== loads || !view.isConnected) return; // a later choice, or the page was left
      chart?.disconnect();
      chart = renderUsage(body, buckets, RANGES.find((r) => r.days === days).label);
    } catch (error) {
      if (ticket !== loads || !view.isConnected) return;
      fill(body, isForbidden(error)
        ? permissionNotice("read usage", error, READ_NEEDS)
        : alertBox(describeError(error)));
      toolbar.hidden = isForbidden(error);
    } finally {
      body.removeAttribute("aria-busy");
    }
  }

  range.addEventListener("change", load);
  await load();
  return () => {
    loads += 1;
    chart?.disconnect();
  };
}

// The first second of the UTC day `days - 1` days ago: whole days, today's included.
function rangeStart(days) {
  const today = Math.floor(Date.now() / 1000 / DAY_S) * DAY_S;
  return today - (days - 1) * DAY_S;
}

// Every bucket from `start` to now, following next_page while the API says there is more.
async function fetchUsage(api, start) {
  const buckets = [];
  let page = null;
  do {
    const answer = await api.get("/v1/organization/usage/completions", {
      start_time: start, bucket_width: "1d", group_by: "model", limit: 31, page,
    });
    buckets.push(...answer.data);
    page = answer.has_more ? answer.next_page : null;
  } while (page);
  return buckets;
}

function tokensOf(result) {
  return result.input_tokens + result.output_tokens;
}

// The chart, its legend and the table; returns the observer that redraws the chart to its
// width (so its text stays readable on a phone), for the page's cleanup.
function renderUsage(body, buckets, rangeLabel) {
  const models = [...new Set(buckets.flatMap((b) => b.results.map(modelOf)))].sort();
  if (!models.length) {
    const none = `No chat completions in the ${rangeLabel.toLowerCase()}.`;
    fill(body, h("div", {class: "card"}, h("p", {}, none)));
    return null;
  }
  const frame = h("div", {class: "chart-frame"});
  fill(body,
    h("section", {class: "card", "aria-labelledby": "usage-chart-title"},
      h("h2", {id: "usage-chart-title"}, "Tokens per day by model"),
      frame,
      legend(buckets, models)),
    h("section", {class: "card", "aria-labelledby": "usage-table-title"},
      h("h2", {id: "usage-table-title"}, "By model and day"),
      usageTable(buckets)));
  let drawnWidth = 0;
  const draw = () => {
    const width = Math.max(280, Math.floor(frame.clientWidth));
    if (width === drawnWidth) return;
    drawnWidth = width;
    fill(frame, barChart(buckets, models, rangeLabel, width));
  };
  draw();
  const observer = new ResizeObserver(draw);
  observer.observe(frame);
  return observer;
}

function modelOf(result) {
  return result.model ?? "(no model)";
}

function seriesClass(models, model) {
  return `series-${models.indexOf(model) % SERIES_CLASSES}`;
}

function barChart(buckets, models, rangeLabel, width) {
  const scale = chartScale(buckets, width);
  const titleId = "usage-chart-svg-title";
  const descId = "usage-chart-svg-desc";
  return svg("svg", {class: "chart", role: "img", width, height: CHART_HEIGHT,
    viewBox: `0 0 ${width} ${CHART_HEIGHT}`, "aria-labelledby": titleId, "aria-describedby": descId},
  svg("title", {id: titleId}, `Tokens per day by model, ${rangeLabel.toLowerCase()}`),
  svg("desc", {id: descId}, chartSummary(buckets, models, scale.dayTotals)),
  yAxis(scale),
  buckets.map((bucket, index) => dayBar(bucket, index, models, scale)),
  svg("text", {class: "axis-label", "text-anchor": "middle",
    transform: `translate(14 ${MARGIN.top + scale.plotHeight / 2}) rotate(-90)`}, "tokens"),
  svg("text", {class: "axis-label", "text-anchor": "middle",
    x: MARGIN.left + scale.plotWidth / 2, y: CHART_HEIGHT - 4}, "day (UTC)"));
}

// Where things go: a value's height, a day's slot, which days get a label.
function chartScale(buckets, width) {
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const plotHeight = CHART_HEIGHT - MARGIN.top - MARGIN.bottom;
  const dayTotals = buckets.map((b) => b.results.reduce((sum, r) => sum + tokensOf(r), 0));
  const top = niceCeiling(Math.max(...dayTotals, 4)); // at least 4: whole numbers on the ticks
  const slot = plotWidth / buckets.length;
  return {
    width, plotWidth, plotHeight, dayTotals, slot,
    barWidth: Math.max(2, slot * 0.7),
    labelEvery: Math.ceil(buckets.length / Math.max(1, Math.floor(plotWidth / 48))),
    y: (value) => MARGIN.top + plotHeight - (value / top) * plotHeight,
    ticks: [0, 0.25, 0.5, 0.75, 1].map((share) => top * share),
  };
}

function yAxis(scale) {
  return scale.ticks.map((value) => svg("g", {class: "tick"},
    svg("line", {class: value ? "grid" : "axis", x1: MARGIN.left, x2: scale.width - MARGIN.right,
      y1: scale.y(value), y2: scale.y(value)}),
    svg("text", {x: MARGIN.left - 6, y: scale.y(value) + 4, "text-anchor": "end"},
      COMPACT.format(value))));
}

// One day: its models' tokens stacked in the legend's order, each with a tooltip.
function dayBar(bucket, index, models, scale) {
  const x = MARGIN.left + index * scale.slot + (scale.slot - scale.barWidth) / 2;
  const day = DAY_LABEL.format(bucket.start_time * 1000);
  const order = (result) => models.indexOf(modelOf(result));
  let base = 0;
  const stack = [...bucket.results].sort((a, b) => order(a) - order(b)).map((result) => {
    const tokens = tokensOf(result);
    const top = scale.y(base + tokens);
    const rect = svg("rect", {class: `bar ${seriesClass(models, modelOf(result))}`,
      x, width: scale.barWidth, y: top, height: Math.max(0, scale.y(base) - top)},
    svg("title", {}, `${day}, ${modelOf(result)}: ${formatNumber(tokens)} tokens`));
    base += tokens;
    return rect;
  });
  const label = index % scale.labelEvery === 0
    ? svg("text", {x: x + scale.barWidth / 2, y: MARGIN.top + scale.plotHeight + 16,
      "text-anchor": "middle"}, day)
    : null;
  return svg("g", {}, stack, label);
}

// Each model's tokens over the whole range.
function modelTotals(buckets, models) {
  const results = buckets.flatMap((b) => b.results);
  return models.map((model) => results.filter((r) => modelOf(r) === model)
    .reduce((sum, r) => sum + tokensOf(r), 0));
}

// What the chart shows, in words, for a screen reader.
function chartSummary(buckets, models, dayTotals) {
  const total = dayTotals.reduce((a, b) => a + b, 0);
  const totals = modelTotals(buckets, models);
  const perModel = models.map((model, index) => `${model} ${formatNumber(totals[index])}`);
  const busiest = dayTotals.indexOf(Math.max(...dayTotals));
  return `${formatNumber(total)} tokens over ${buckets.length} days: ${perModel.join(", ")}. ` +
    `Busiest day ${DAY_LABEL.format(buckets[busiest].start_time * 1000)} with ` +
    `${formatNumber(dayTotals[busiest])} tokens.`;
}

function legend(buckets, models) {
  const totals = modelTotals(buckets, models);
  return h("ul", {class: "legend", "aria-label": "Models"}, models.map((model, index) => h("li", {},
    h("span", {class: `swatch ${seriesClass(models, model)}`, "aria-hidden": "true"}),
    model,
    h("span", {class: "muted"}, `${formatNumber(totals[index])} tokens`))));
}

const COLUMNS = [
  ["Requests", "num_model_requests"],
  ["Input tokens", "input_tokens"],
  ["Cached tokens", "input_cached_tokens"],
  ["Image tokens", "input_image_tokens"],
  ["Output tokens", "output_tokens"],
  ["Images", "num_images"],
  ["Failed", "num_failed_requests"],
];

// Newest day first; one row per model that day; totals at the foot.
function usageTable(buckets) {
  const rows = [];
  const totals = Object.fromEntries(COLUMNS.map(([, key]) => [key, 0]));
  for (const bucket of [...buckets].reverse()) {
    const day = new Date(bucket.start_time * 1000).toISOString().slice(0, 10);
    for (const result of [...bucket.results].sort((a, b) => modelOf(a).localeCompare(modelOf(b)))) {
      for (const [, key] of COLUMNS) totals[key] += result[key] ?? 0;
      rows.push(h("tr", {},
        h("td", {class: "nowrap"}, day),
        h("td", {class: "nowrap"}, modelOf(result)),
        COLUMNS.map(([, key]) => h("td", {class: "num"}, formatNumber(result[key])))));
    }
  }
  return h("div", {class: "table-wrap"},
    h("table", {class: "usage"},
      h("thead", {}, h("tr", {},
        h("th", {scope: "col"}, "Day"), h("th", {scope: "col"}, "Model"),
        COLUMNS.map(([label]) => h("th", {scope: "col", class: "num"}, label)))),
      h("tbody", {}, rows),
      h("tfoot", {}, h("tr", {},
        h("th", {scope: "row", colspan: 2}, "Total"),
        COLUMNS.map(([, key]) => h("td", {class: "num"}, formatNumber(totals[key])))))));
}

// 1, 2 or 5 times a power of ten, at or above `value`: round numbers on the axis.
function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}
