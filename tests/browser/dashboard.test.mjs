// dashboard.test.mjs - drives the coordinator's dashboard in headless Debian Chromium.
//
// Usage: node dashboard.test.mjs URL EXPECT_JSON SCREENSHOT_PNG
//   EXPECT_JSON: {"statuses": {"ID": "status", ...}, "select": "ID",
//                 "phases": {"STEP": "phase", ...}, "last_event": "EVENT",
//                 "bars": {"STEP": ["act ok", "comp ok"], ...},
//                 "finished": {"completed": N, "compensated": M}, "definitions": [...]}
// Checks, at 1400 px width, that every saga shows with its status, that the saga table
// fits without sideways scrolling, that the status cards filter the list, that the charts
// (finished per minute over the last hour, step latency) are drawn with these sagas, that
// clicking a saga shows its SVG step timeline (one bar per attempt) and history, and that
// the screenshot is not blank. Exits 0 when all holds, 1 (with the reason on stderr) otherwise.
// tests/test_dashboard.c runs it under ctest. Uses playwright-core with the system's
// /usr/bin/chromium: no browser is ever downloaded.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, expectJson, shot] = process.argv.slice(2);
if (!url || !expectJson || !shot) {
  console.error("usage: node dashboard.test.mjs URL EXPECT_JSON SCREENSHOT_PNG");
  process.exit(2);
}
const expect = JSON.parse(expectJson);
const TIMEOUT = 20000;

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

const profile = mkdtempSync(join(tmpdir(), "saga-chromium-"));
// A fresh profile each run (playwright passes it to Chromium as --user-data-dir).
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1400, height: 1000 },
  timeout: 60000,
});
let failed = false;
try {
  const page = browser.pages()[0] || await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(url, { waitUntil: "load", timeout: TIMEOUT });

  // Every saga, with its status.
  for (const [id, status] of Object.entries(expect.statuses)) {
    const row = page.locator(`tr.saga[data-saga-id="${id}"]`);
    await row.waitFor({ timeout: TIMEOUT });
    await page.waitForFunction(([i, s]) => {
      const tr = document.querySelector(`tr.saga[data-saga-id="${i}"]`);
      return tr && tr.dataset.status === s;
    }, [id, status], { timeout: TIMEOUT }).catch(async () => {
      throw new Error(`${id}: shows ${await row.getAttribute("data-status")}, expected ${status}`);
    });
    const badge = (await row.locator(".badge").textContent()).trim();
    check(badge === status, `${id}: badge says "${badge}", expected "${status}"`);
  }

  // The saga table fits its panel at 1400 px: no sideways scrolling, every error on screen.
  const fit = await page.evaluate(() => {
    const t = document.querySelector("table.sagas"), p = t.closest(".panel");
    const pr = p.getBoundingClientRect();
    const cut = [...t.querySelectorAll("td.err")].filter((td) => td.getBoundingClientRect().right > pr.right + 1).length;
    return { table: t.scrollWidth, panel: p.clientWidth, scroll: p.scrollWidth, cut, page: document.documentElement.scrollWidth, vw: innerWidth };
  });
  check(fit.table <= fit.panel + 1 && fit.scroll <= fit.panel + 1 && fit.cut === 0 && fit.page <= fit.vw,
        `the saga table fits at 1400 px: ${JSON.stringify(fit)}`);

  // The charts: the last hour's finished sagas per minute, and the step-latency histogram.
  if (expect.finished) {
    await page.waitForFunction((w) => {
      const t = document.getElementById("throughput");
      return t.dataset.completed === String(w.completed) && t.dataset.compensated === String(w.compensated);
    }, expect.finished, { timeout: TIMEOUT }).catch(async () => {
      throw new Error(`throughput shows ${await page.getAttribute("#throughput", "data-completed")} completed, ` +
                      `${await page.getAttribute("#throughput", "data-compensated")} compensated, expected ${JSON.stringify(expect.finished)}`);
    });
    const tp = await page.$$eval("#throughput .tp-bar", (g) => ({
      bars: g.length,
      completed: g.reduce((n, x) => n + x.querySelectorAll(".tp-completed").length, 0),
      tall: g.every((x) => [...x.querySelectorAll(".tp-completed, .tp-compensated")].every((r) => r.getBoundingClientRect().height >= 1)),
    }));
    check(tp.bars === 60 && tp.completed >= 1 && tp.tall, `throughput chart: ${JSON.stringify(tp)}`);
    await page.waitForFunction(() => Number(document.getElementById("latency").dataset.total) > 0, null, { timeout: TIMEOUT })
      .catch(() => { throw new Error("the step-latency histogram counts no step"); });
    const lat = await page.$$eval("#latency .lat-bar", (g) => ({ bars: g.length, drawn: g.filter((x) => x.querySelector(".lat-ok")).length }));
    check(lat.bars === 17 && lat.drawn >= 1, `latency histogram: ${JSON.stringify(lat)}`);
  }

  // The status cards filter the list: each card shows exactly its sagas.
  for (const status of ["stuck", "running", "compensating"]) {
    const want = Object.entries(expect.statuses).filter(([, s]) => s === status).map(([i]) => i).sort();
    await page.click(`.card[data-status="${status}"]`);
    await page.waitForFunction((w) => {
      const ids = [...document.querySelectorAll("tr.saga")].map((t) => t.dataset.sagaId).sort();
      return JSON.stringify(ids) === JSON.stringify(w);
    }, want, { timeout: TIMEOUT }).catch(() => { throw new Error(`the ${status} card does not list exactly ${want}`); });
    const count = (await page.textContent(`#count-${status}`)).trim();
    check(Number(count) === want.length, `#count-${status} is ${count}, expected ${want.length}`);
  }
  await page.click('.card[data-status=""]');
  await page.locator(`tr.saga[data-saga-id="${expect.select}"]`).waitFor({ timeout: TIMEOUT });

  // One saga's timeline and history.
  await page.click(`tr.saga[data-saga-id="${expect.select}"]`);
  await page.waitForSelector(`#detail[data-saga-id="${expect.select}"] .tl-row`, { timeout: TIMEOUT });
  // The bars are laid out once the detail panel is shown: wait for that, not for a time.
  await page.waitForFunction(() => {
    const bars = [...document.querySelectorAll("#timeline .tl-bar")];
    return bars.length > 0 && bars.every((b) => b.getBoundingClientRect().width >= 2);
  }, null, { timeout: TIMEOUT }).catch(() => { throw new Error("the timeline bars are not drawn"); });
  await page.screenshot({ path: shot, fullPage: true });
  const phases = await page.$$eval("#timeline .tl-row", (rows) =>
    Object.fromEntries(rows.map((r) => [r.dataset.step, r.dataset.phase])));
  check(JSON.stringify(phases) === JSON.stringify(expect.phases),
        `timeline phases ${JSON.stringify(phases)}, expected ${JSON.stringify(expect.phases)}`);
  const bars = await page.$$eval("#timeline .tl-bar", (b) => b.map((x) => x.getBoundingClientRect().width + "/" + x.getAttribute("class")));
  check(bars.length > 0 && bars.every((w) => parseFloat(w) >= 2), `timeline bars are drawn (${bars})`);
  // One bar per attempt, in the action or compensation lane, classed by how it ended.
  const perStep = await page.$$eval("#timeline .tl-row[data-step]", (rows) => Object.fromEntries(rows.map((r) =>
    [r.dataset.step, [...r.querySelectorAll(".tl-bar")].map((b) => b.getAttribute("class").replace("tl-bar ", ""))])));
  for (const [step, want] of Object.entries(expect.bars || {}))
    check(JSON.stringify(perStep[step]) === JSON.stringify(want), `timeline bars of ${step}: ${JSON.stringify(perStep[step])}, expected ${JSON.stringify(want)}`);
  const events = await page.$$eval("#history tr", (rows) => rows.map((r) => r.dataset.event));
  check(events[0] === "started" && events[events.length - 1] === expect.last_event,
        `history runs from started to ${expect.last_event}: ${events}`);
  check(new URL(page.url()).hash === "#" + expect.select, "the selection is in the URL");

  // The rates table lists the definitions.
  const defs = await page.$$eval("#rates tr", (rows) => rows.map((r) => r.dataset.definition));
  for (const d of expect.definitions || [])
    check(defs.includes(d), `rates table lists ${d}: ${defs}`);

  const size = statSync(shot).size;
  check(size > 20000, `screenshot is ${size} bytes: blank?`);
  // Count the colours of the screenshot in the page itself (no PNG decoder needed here).
  const png = (await import("node:fs")).readFileSync(shot).toString("base64");
  const stats = await page.evaluate(async (b64) => {
    const img = new Image();
    img.src = "data:image/png;base64," + b64;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.width; c.height = img.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    const colours = new Set();
    let sum = 0, sum2 = 0, n = 0;
    for (let i = 0; i < d.length; i += 4 * 7) {
      colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      const l = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
      sum += l; sum2 += l * l; n++;
    }
    const mean = sum / n;
    return { width: c.width, height: c.height, colours: colours.size, variance: sum2 / n - mean * mean };
  }, png);
  check(stats.colours >= 50, `screenshot has ${stats.colours} colours: blank?`);
  check(stats.variance > 100, `screenshot luminance variance ${stats.variance.toFixed(1)}: blank?`);
  check(errors.length === 0, `page errors: ${errors.join("; ")}`);
  console.log(`dashboard ok (node ${process.version}): ${Object.keys(expect.statuses).length} sagas, timeline of ${expect.select}, ` +
              `screenshot ${stats.width}x${stats.height}, ${size} bytes, ${stats.colours} colours`);
} catch (e) {
  failed = true;
  console.error("dashboard test failed: " + e.message);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
