// The dashboard screenshots of docs/mlflow.md, taken by headless Chromium from a running `lit-d2l ui`.
//   node --experimental-websocket docs/screenshots.mjs http://127.0.0.1:5077 docs/screenshots SWEEP_ID...
// docs/make_screenshots.sh runs the shipped suites, starts the dashboard and runs this with their sweep ids
// (regularization, overfitting, initialization): the runs table and the parent's Overview of the first, a
// child's page of the last (the one with per-layer diagnostics), and the first screen of every report.
import { join } from "node:path";
import { Browser } from "./cdp.mjs";

const [base, out, ...sweeps] = process.argv.slice(2);
if (!sweeps.length) throw new Error("usage: screenshots.mjs DASHBOARD_URL OUT_DIR SWEEP_ID...");
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

function tagOf(run, key) {
  return (run.data.tags || []).find((tag) => tag.key === key)?.value;
}

/** A sweep's parent run, its children, and a child whose curves show something: the middle arm, seed 0. */
async function sweepRuns(sweep) {
  const [parent] = await searchRuns(`tags.\`lit_d2l.sweep_id\` = '${sweep}' and tags.\`lit_d2l.kind\` = 'sweep'`);
  if (!parent) throw new Error(`no sweep ${sweep} on ${base}`);
  const children = await searchRuns(`tags.\`mlflow.parentRunId\` = '${parent.info.run_id}'`);
  const arms = [...new Set(children.map((run) => tagOf(run, "arm")))].sort();
  const middle = arms[Math.floor(arms.length / 2)];
  const child = children.find((run) => tagOf(run, "arm") === middle && tagOf(run, "seed") === "0") || children[0];
  return { sweep, parent, child, experiment: parent.info.experiment_id };
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

const suites = await Promise.all(sweeps.map(sweepRuns));
const first = suites[0];
const diagnosed = suites.at(-1);
const browser = await Browser.start({ width: 1600, height: 1000 });
const page = browser.page;
try {
  // 1. The first sweep's runs table: the parent run (its verdict metric) with its children nested under it.
  const { experiment, parent, child, sweep } = first;
  await page.goto(`${base}/#/experiments/${experiment}?${ML}`);
  await page.waitFor(`document.body.innerText.includes(${JSON.stringify(sweep.slice(0, 16))})`);
  await page.evaluate(closeAssistant);
  await page.evaluate(`document.querySelector('[data-component-id$="runnamecellrenderer.tsx_46"]').click()`);
  await page.waitFor(`document.body.innerText.includes(${JSON.stringify(child.info.run_name)})`, { settleMs: 500 });
  const columns = `document.querySelector('[data-component-id$="experimentviewrunscolumnselector.tsx_315"]')`;
  await page.evaluate(`${columns}.click()`);
  await page.waitFor(`document.querySelector('input[placeholder="Search columns"]')`, { settleMs: 500 });
  const toggled = await page.evaluate(toggleColumns(["Source", "Models", "best/val/loss", "val/loss"]));
  if (!toggled) throw new Error("the Columns menu has changed: a column to toggle was not found");
  // The swept values, each a top-level param of the children named by its key's last part (`l2`, `init`).
  const settings = Object.keys(JSON.parse(tagOf(child, "arm_settings") || "{}"));
  const swept = settings.map((key) => key.split(".").pop());
  await page.evaluate(toggleColumns(swept));
  await page.evaluate(`${columns}.click()`);
  await page.waitFor(`[...document.querySelectorAll("[role=columnheader]")].some((e) => e.innerText === "best/val/loss")`);
  await page.screenshot(join(out, "runs-table.png"));

  // 2. The parent's Overview: the sweep's description and verdict.
  await page.goto(`${base}/#/experiments/${experiment}/runs/${parent.info.run_id}?${ML}`);
  await page.waitFor(`document.body.innerText.includes("Verdict") || document.body.innerText.includes("verdict")`, { settleMs: 1500 });
  await page.evaluate(closeAssistant);
  await page.screenshot(join(out, "parent-overview.png"));

  // 3. A child of the diagnosed sweep, as it opens (Overview), and its Model metrics tab.
  const kid = diagnosed.child;
  await page.goto(`${base}/#/experiments/${diagnosed.experiment}/runs/${kid.info.run_id}?${ML}`);
  await page.waitFor(`document.body.innerText.includes("val/loss")`, { settleMs: 1500 });
  await page.evaluate(closeAssistant);
  await page.screenshot(join(out, "child-overview.png"));
  await page.goto(`${base}/#/experiments/${diagnosed.experiment}/runs/${kid.info.run_id}/model-metrics?${ML}`);
  await page.waitFor(`document.querySelectorAll(".js-plotly-plot").length >= 2`, { settleMs: 2500 });
  await page.evaluate(closeAssistant);
  await page.screenshot(join(out, "child-metrics.png"));

  // 4. The first screen of every sweep's report.html in MLflow's artifact viewer, its figures loaded.
  for (const suite of suites) {
    const name = suite.sweep.replace(/-[0-9a-f]+$/, "");
    await page.goto("about:blank"); // a fresh page: MLflow's viewer may keep the previous report otherwise
    await page.goto(`${base}/#/experiments/${suite.experiment}/runs/${suite.parent.info.run_id}/artifacts/report/report.html?${ML}`);
    await page.waitFor(`document.querySelector("iframe")`, { settleMs: 0, timeoutMs: 180000 }); // 1 MB reports
    await page.evaluate(closeAssistant);
    const frame = { frame: "blob:" }; // the viewer shows the page in a sandboxed iframe of a blob: URL
    const loaded = "[...document.images].every((img) => img.complete && img.naturalWidth > 0)";
    await page.waitFor(`document.images.length >= 1 && ${loaded}`, frame);
    await page.screenshot(join(out, `report-${name}.png`));
  }
} finally {
  await browser.close();
}
