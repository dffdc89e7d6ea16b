// A minimal Chrome DevTools Protocol client: start headless Chromium, drive one page, take screenshots.
// Node >= 20 with --experimental-websocket (Node >= 22: built in); no packages.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Browser {
  static async start({ width = 1600, height = 1000, port = 9333, binary = "chromium" } = {}) {
    const profile = mkdtempSync(join(tmpdir(), "lit-d2l-chromium-"));
    const args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"];
    args.push(`--remote-debugging-port=${port}`, `--user-data-dir=${profile}`, `--window-size=${width},${height}`);
    const proc = spawn(binary, [...args, "about:blank"], { stdio: "ignore" });
    for (let i = 0; i < 100; i++) {
      try {
        const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
        const page = targets.find((t) => t.type === "page");
        if (page) return new Browser(proc, profile, await Page.open(page.webSocketDebuggerUrl, width, height));
      } catch {
        // not listening yet
      }
      await sleep(200);
    }
    proc.kill();
    throw new Error("chromium did not start");
  }

  constructor(proc, profile, page) {
    Object.assign(this, { proc, profile, page });
  }

  async close() {
    const exited = new Promise((resolve) => this.proc.once("exit", resolve));
    this.proc.kill();
    await exited;
    rmSync(this.profile, { recursive: true, force: true, maxRetries: 5 });
  }
}

export class Page {
  static async open(url, width, height) {
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    const page = new Page(ws);
    await page.send("Page.enable");
    await page.send("Runtime.enable");
    await page.send("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile: false });
    // Sandboxed iframes run in processes of their own: attach to them as they come, to read their DOM.
    await page.send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: false, flatten: true });
    return page;
  }

  constructor(ws) {
    this.ws = ws;
    this.next = 1;
    this.pending = new Map();
    this.frames = new Map(); // targetId -> { sessionId, url } of an attached iframe
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      const { targetInfo, sessionId, targetId } = message.params || {};
      if (message.method === "Target.attachedToTarget") {
        this.frames.set(targetInfo.targetId, { sessionId, url: targetInfo.url });
      } else if (message.method === "Target.targetInfoChanged" && this.frames.has(targetInfo.targetId)) {
        this.frames.get(targetInfo.targetId).url = targetInfo.url; // known once the frame has navigated
      } else if (message.method === "Target.detachedFromTarget") {
        this.frames.delete(targetId);
      }
      const waiting = this.pending.get(message.id);
      if (!waiting) return;
      this.pending.delete(message.id);
      if (message.error) waiting.reject(new Error(`${waiting.method}: ${message.error.message}`));
      else waiting.resolve(message.result);
    };
  }

  send(method, params = {}, sessionId = undefined) {
    const id = this.next++;
    this.ws.send(JSON.stringify({ id, method, params, sessionId }));
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject, method }));
  }

  /** The value of a JavaScript expression in the page, or in the (out-of-process) iframe whose URL starts
   * with `frame`. */
  async evaluate(expression, { frame } = {}) {
    let session;
    if (frame !== undefined) {
      session = [...this.frames.values()].find(({ url }) => url.startsWith(frame))?.sessionId;
      if (!session) throw new Error(`no frame at ${frame}`);
    }
    const params = { expression, returnByValue: true, awaitPromise: true };
    const { result, exceptionDetails } = await this.send("Runtime.evaluate", params, session);
    if (exceptionDetails) throw new Error(`${expression}: ${exceptionDetails.text}`);
    return result.value;
  }

  async goto(url) {
    await this.send("Page.navigate", { url });
  }

  /** Wait until `expression` is truthy in the page (the React app has rendered), then let it settle. */
  async waitFor(expression, { timeoutMs = 60000, settleMs = 1500, frame } = {}) {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      if (await this.evaluate(`Boolean(${expression})`, { frame }).catch(() => false)) {
        await sleep(settleMs);
        return;
      }
      await sleep(250);
    }
    throw new Error(`timed out waiting for ${expression}`);
  }

  async screenshot(file) {
    const { data } = await this.send("Page.captureScreenshot", { format: "png" });
    writeFileSync(file, Buffer.from(data, "base64"));
  }
}

export { sleep };
