// dashboard.test.mjs - drives the coordinator's dashboard in headless Debian Chromium.
//
// Usage: node dashboard.test.mjs URL EXPECT_JSON SCREENSHOT_PNG
//   EXPECT_JSON: {"statuses": {"ID": "status", ...}, "select": "ID",
//                 "phases": {"STEP": "phase", ...}, "last_event": "EVENT",
//                 "bars": {"STEP": ["act ok", "comp ok"], ...},
//                 "finished": {"completed": N, "compensated": M}, "definitions": [...],
//                 "drawing": {"STEP": "phase", ...}, "drawing_shot": "PNG",
//                 "cluster": {"instance": "ID", "partitions": N, "stuck": K}}
//   (drawing: see checkSagaDrawing at the end; cluster: the cluster view lists instance
//   ID as live and owning all N partitions, and counts K stuck sagas)
// Checks, at 1400 px width, that every saga shows with its status, that the saga table
// fits without sideways scrolling, that the status cards filter the list, that the charts
// (finished per minute over the last hour, step latency) are drawn with these sagas, that
// clicking a saga shows its SVG step timeline (one bar per attempt), the drawing of its
// saga coloured by phase, and its history, and that the screenshot is not blank. Exits 0
// when all holds, 1 (with the reason on stderr) otherwise.
// tests/test_dashboard.c runs it under ctest. Uses playwright-core with the system's
// /usr/bin/chromium: no browser is ever downloaded.
import { chromium } from "playwright-core";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
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
  if (expect.drawing) await checkSagaDrawing(page, expect);
  if (expect.cluster) await checkClusterView(page, expect.cluster);

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

// ---- The saga drawing ----------------------------------------------------------------
// The selected saga's definition drawn as SVG (drawSagaGraph in index.html): one node per
// step with the phase of this run, filled with that phase's colour, compensations below.
// Takes a screenshot of the drawing alone (expect.drawing_shot) and checks that the
// phases' colours are really painted in it, decoding the PNG in the page.
// (Declared as a function, not a const: the test above runs before this point of the
// module is reached, and only function declarations are hoisted.)
async function checkSagaDrawing(page, expect) {
  const DRAWING_COLOURS = { compensated: "#7a5cc9", failed: "#d43c3c", done: "#1f9d55",
                            timed_out: "#e06c1b", pending: "#c3cad4" };
  const want = expect.drawing;
  await page.waitForFunction((n) => document.querySelectorAll("#saga-graph svg g.sg-step").length === n,
                             Object.keys(want).length, { timeout: TIMEOUT })
    .catch(() => { throw new Error("the saga drawing is not drawn"); });
  const nodes = await page.$$eval("#saga-graph g.sg-step", (gs) => gs.map((g) => ({
    step: g.dataset.step, phase: g.dataset.phase, fill: g.querySelector("rect").getAttribute("fill"),
    text: [...g.querySelectorAll("text")].map((t) => t.textContent).join(" | ") })));
  const phases = Object.fromEntries(nodes.map((n) => [n.step, n.phase]));
  check(JSON.stringify(phases) === JSON.stringify(want),
        `drawing phases ${JSON.stringify(phases)}, expected ${JSON.stringify(want)}`);
  for (const n of nodes) {
    check(n.fill === DRAWING_COLOURS[n.phase], `${n.step} (${n.phase}) is filled ${n.fill}, expected ${DRAWING_COLOURS[n.phase]}`);
    check(n.text.startsWith(n.step + " \u00b7 " + n.phase) && n.text.includes("topic "),
          `${n.step}: labels "${n.text}" name the step, its phase and its topic`);
  }
  // Compensations: drawn for every step that has one, filled only where they ran.
  const comps = await page.$$eval("#saga-graph g.sg-comp", (gs) => gs.map((g) => [g.dataset.step, g.dataset.ran]));
  const ran = Object.fromEntries(comps);
  for (const [step, phase] of Object.entries(want))
    check(ran[step] === String(phase === "compensated"), `compensation of ${step}: ran=${ran[step]}`);
  const arrows = await page.$$eval("#saga-graph path[stroke-dasharray='6 4']", (p) => p.length);
  check(arrows >= 1, "the compensation path is drawn dashed");

  const shot = expect.drawing_shot;
  await page.locator("#saga-graph").screenshot({ path: shot });
  const png = readFileSync(shot).toString("base64");
  const counts = await page.evaluate(async ([b64, colours]) => {
    const img = new Image();
    img.src = "data:image/png;base64," + b64;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.width; c.height = img.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    const rgb = Object.fromEntries(Object.entries(colours).map(([k, h]) =>
      [k, [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16))]));
    const n = Object.fromEntries(Object.keys(rgb).map((k) => [k, 0]));
    for (let i = 0; i < d.length; i += 4)
      for (const [k, [r, g, b]] of Object.entries(rgb))
        if (Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 12) n[k]++;
    return n;
  }, [png, DRAWING_COLOURS]);
  for (const phase of new Set(Object.values(want)))
    check(counts[phase] > 500, `the drawing's screenshot shows ${counts[phase]} pixels of ${phase}'s colour`);
  console.log(`saga drawing ok: ${JSON.stringify(phases)}, colours ${JSON.stringify(counts)}, screenshot ${shot}`);
}
// ---- end of the saga drawing ---------------------------------------------------------

// ---- The cluster view ------------------------------------------------------------------
// The panel "Cluster view" (loadCluster in index.html, from /api/cluster): the instance is
// listed, every partition is owned by it and marked live, the stuck count is shown.
async function checkClusterView(page, want) {
  await page.locator(`#cluster-members tr[data-instance="${want.instance}"]`).waitFor({ timeout: TIMEOUT });
  await page.waitForFunction((w) => {
    const rows = [...document.querySelectorAll("#cluster-partitions tr")];
    return rows.length === w.partitions && rows.every((r) => r.dataset.owner === w.instance && r.dataset.live === "true");
  }, want, { timeout: TIMEOUT }).catch(async () => {
    const rows = await page.$$eval("#cluster-partitions tr", (rs) => rs.map((r) => [r.dataset.partition, r.dataset.owner, r.dataset.live]));
    throw new Error(`cluster view partitions ${JSON.stringify(rows)}, expected ${want.partitions} owned by ${want.instance}, live`);
  });
  const stuck = await page.textContent("#cluster-stuck");
  check(stuck === want.stuck + " stuck", `cluster view says "${stuck}", expected ${want.stuck} stuck`);
}
