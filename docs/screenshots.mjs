// The README's dashboard screenshots, taken by headless Chromium from a running `lit-d2l ui`.
//   node --experimental-websocket docs/screenshots.mjs http://127.0.0.1:5077 docs/screenshots SWEEP_ID
// docs/make_screenshots.sh makes the sweep, starts the dashboard and runs this.
import { join } from "node:path";
import { Browser } from "./cdp.mjs";

const [base, out, sweep] = process.argv.slice(2);
if (!sweep) throw new Error("usage: screenshots.mjs DASHBOARD_URL OUT_DIR SWEEP_ID");
// MLflow 3.17 shows every experiment as GenAI or Model training, as chosen in its sidebar.
const ML = "workflowType=machine_learning";

async function api(path, body) {
  const response = await fetch(`${base}/ajax-api/2.0/mlflow/${path}`, {
    method: body ? "POST" : "GET",
    headers: { "Content-Type": "application/json" },
    body: body && JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function searchRuns(filter) {
  const { experiments } = await api("experiments/search", { max_results: 1000 });
  const ids = experiments.map((e) => e.experiment_id);
  return (await api("runs/search", { experiment_ids: ids, filter, max_results: 1000 })).runs || [];
}

const [parent] = await searchRuns(`tags.\`lit_d2l.sweep_id\` = '${sweep}' and tags.\`lit_d2l.kind\` = 'sweep'`);
if (!parent) throw new Error(`no sweep ${sweep} on ${base}`);
const experiment = parent.info.experiment_id;
const children = await searchRuns(`tags.\`mlflow.parentRunId\` = '${parent.info.run_id}'`);
// A child whose curves show something: the middle arm, seed 0.
const arms = [...new Set(children.map((run) => tagOf(run, "arm")))].sort();
const middle = arms[Math.floor(arms.length / 2)];
const child = children.find((run) => tagOf(run, "arm") === middle && tagOf(run, "seed") === "0") || children[0];

function tagOf(run, key) {
  return (run.data.tags || []).find((tag) => tag.key === key)?.value;
}

const closeAssistant = `document.querySelector('[data-component-id="mlflow.assistant.chat_panel.close"]')?.click()`;
// In the open Columns menu (the box around its search field that lists the metrics), click each name.
const toggleColumns = (names) => `(() => {
  let menu = document.querySelector('input[placeholder="Search columns"]');
  while (menu && !menu.textContent.includes("Metrics (")) menu = menu.parentElement;
  return (${JSON.stringify(names)}).map((name) => {
    const hit = [...menu.querySelectorAll("*")].find((e) => e.children.length === 0 && e.textContent.trim() === name);
    hit?.click();
    return Boolean(hit);
  }).every(Boolean);
})()`;
const typeInto = (selector, text) => `(() => {
  const input = document.querySelector(${JSON.stringify(selector)});
  Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set.call(input, ${JSON.stringify(text)});
  input.dispatchEvent(new Event("input", { bubbles: true }));
  return true;
})()`;

const browser = await Browser.start({ width: 1600, height: 1000 });
const page = browser.page;
try {
  // 1. The sweep's runs table: the parent run, its children nested under it, a few metric columns.
  await page.goto(`${base}/#/experiments/${experiment}?${ML}`);
  await page.waitFor(`document.body.innerText.includes(${JSON.stringify(sweep.slice(0, 16))})`);
  await page.evaluate(closeAssistant);
  await page.evaluate(`document.querySelector('[data-component-id$="runnamecellrenderer.tsx_46"]').click()`);
  await page.waitFor(`document.body.innerText.includes(${JSON.stringify(child.info.run_name)})`, { settleMs: 500 });
  const columns = `document.querySelector('[data-component-id$="experimentviewrunscolumnselector.tsx_315"]')`;
  await page.evaluate(`${columns}.click()`);
  await page.waitFor(`document.querySelector('input[placeholder="Search columns"]')`, { settleMs: 500 });
  const toggled = await page.evaluate(toggleColumns(["Dataset", "Source", "Models", "val/loss", "weight_norm/w"]));
  if (!toggled) throw new Error("the Columns menu has changed: a column to toggle was not found");
  await page.evaluate(`${columns}.click()`);
  await page.waitFor(`[...document.querySelectorAll("[role=columnheader]")].some((e) => e.innerText === "val/loss")`);
  await page.screenshot(join(out, "runs-table.png"));

  // 2. One run's metric charts: the losses of one arm.
  await page.goto(`${base}/#/experiments/${experiment}/runs/${child.info.run_id}/model-metrics?${ML}`);
  await page.waitFor(`document.body.innerText.includes("loss_epoch")`);
  await page.evaluate(closeAssistant);
  await page.evaluate(typeInto('input[placeholder="Search metric charts"]', "loss"));
  await page.waitFor(`document.querySelectorAll(".js-plotly-plot").length >= 4`, { settleMs: 2500 });
  await page.screenshot(join(out, "run-charts.png"));

  // 3. The sweep's report.html in MLflow's artifact viewer, its figures loaded; then its loss curves.
  await page.goto(`${base}/#/experiments/${experiment}/runs/${parent.info.run_id}/artifacts/report/report.html?${ML}`);
  await page.waitFor(`document.querySelector("iframe")`, { settleMs: 0 });
  await page.evaluate(closeAssistant);
  const frame = { frame: "blob:" }; // the viewer shows the page in a sandboxed iframe of a blob: URL
  const loaded = "[...document.images].every((img) => img.complete && img.naturalWidth > 0)";
  await page.waitFor(`document.images.length >= 2 && ${loaded}`, frame);
  await page.screenshot(join(out, "report-html.png"));
  const figures = `[...document.querySelectorAll("figure")]`;
  const curves = `(${figures}.find((f) => f.textContent.startsWith("Loss curves")) || ${figures}.at(-1))`;
  await page.evaluate(`${curves}.scrollIntoView() || true`, frame);
  await page.waitFor("true", { settleMs: 800 });
  await page.screenshot(join(out, "report-curves.png"));
} finally {
  await browser.close();
}
