// Headless-browser test of the built book (run by tests/test_book.py, or by hand:
//   BOOK_TEST_CONFIG='{"baseUrl":"http://127.0.0.1:8000/","pages":["book/intro.html"],
//     "explorers":[{"page":"book/_executed/metrics.html","selector":".fa-explorer"}]}' \
//   node tests/browser/book.test.mjs
//
// For every page in `pages` (and every explorer page): load it in Debian chromium through npm
// playwright-core, abort and count every request that leaves 127.0.0.1, and record console errors,
// uncaught exceptions and failed local requests; fail a page whose text shows a matplotlib figure's text
// repr, NaN in a table cell or a raw Python dict, and screenshot the `screenshotPages` (whole page) into
// `screenshotDir`. For every explorer {page, selector, min?}: wait for the
// kernel-free widget (fa_lib.widgets) to render, check it shows a slider and an image, then move each of
// its sliders (keyboard first, mouse drag if the keyboard did nothing) and check that the image shown
// changes (its src differs). An explorer with a Play button is also played for a moment.
// Prints one JSON report on stdout; exit status 0 only if every check passed.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const config = JSON.parse(process.env.BOOK_TEST_CONFIG || '{}');
const baseUrl = config.baseUrl;
if (!baseUrl) {
  console.error('BOOK_TEST_CONFIG must give baseUrl (and pages / explorers)');
  process.exit(2);
}
const executablePath = config.executablePath || '/usr/bin/chromium';
const explorers = config.explorers || [];
const pages = [...new Set([...(config.pages || []), ...explorers.map((e) => e.page)])];
const timeoutMs = config.timeoutMs || 30000;
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

// Browser noise that is not the book's doing (the browser asks for /favicon.ico by itself).
const IGNORED_FAILED_PATHS = [/\/favicon\.ico$/];

function isLocal(url) {
  if (url.startsWith('data:') || url.startsWith('blob:') || url.startsWith('about:')) return true;
  try {
    return LOCAL_HOSTS.has(new URL(url).hostname);
  } catch {
    return false;
  }
}

const report = { baseUrl, pages: {}, explorers: [], externalRequests: [], failures: [] };
const fail = (msg) => report.failures.push(msg);

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fa-book-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 1000 },
  });
  // Every request of every page goes through here: anything not on 127.0.0.1 is aborted and counted.
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (isLocal(url)) return route.continue();
    report.externalRequests.push(url);
    return route.abort('blockedbyclient');
  });

  for (const pagePath of pages) {
    const page = await context.newPage();
    const info = { consoleErrors: [], pageErrors: [], failedLocal: [] };
    report.pages[pagePath] = info;
    page.on('console', (msg) => {
      if (msg.type() === 'error') info.consoleErrors.push(msg.text());
    });
    page.on('pageerror', (err) => info.pageErrors.push(String(err && err.stack ? err.stack : err)));
    page.on('response', (resp) => {
      if (resp.status() >= 400 && isLocal(resp.url())
          && !IGNORED_FAILED_PATHS.some((re) => re.test(new URL(resp.url()).pathname))) {
        info.failedLocal.push(`${resp.status()} ${resp.url()}`);
      }
    });
    page.on('requestfailed', (req) => {
      if (isLocal(req.url())) info.failedLocal.push(`failed ${req.url()}: ${req.failure()?.errorText}`);
    });
    const url = new URL(pagePath, baseUrl).href;
    const resp = await page.goto(url, { waitUntil: 'load', timeout: timeoutMs });
    if (!resp || resp.status() !== 200) fail(`${pagePath}: HTTP ${resp ? resp.status() : 'no response'}`);
    await page.waitForLoadState('networkidle', { timeout: timeoutMs }).catch(() => {});

    for (const explorer of explorers.filter((e) => e.page === pagePath)) {
      report.explorers.push(await checkExplorers(page, explorer));
    }
    await page.waitForTimeout(300);
    // what a reader must never see: a figure's text repr, NaN in a table, a raw Python dict
    const seen = await page.evaluate(() => ({
      text: document.body.innerText,
      nanCells: [...document.querySelectorAll('table td')].filter((td) => /(^|\W)NaN(\W|$)/.test(td.textContent)).length,
    }));
    if (seen.text.includes('<Figure size')) fail(`${pagePath}: a figure shown as "<Figure size ...>" text`);
    if (seen.nanCells) fail(`${pagePath}: ${seen.nanCells} table cell(s) show NaN`);
    const rawDict = seen.text.match(/\{'[A-Za-z_]+': [^}]{0,60}/);
    if (rawDict) fail(`${pagePath}: a raw Python dict on the page: ${rawDict[0]}`);
    if (config.screenshotDir && (config.screenshotPages || []).includes(pagePath)) {
      fs.mkdirSync(config.screenshotDir, { recursive: true });
      await page.screenshot({ path: path.join(config.screenshotDir, `${pagePath.replaceAll('/', '_')}.png`),
                              fullPage: true });
    }
    // console messages that are resource-load errors are reported through failedLocal / externalRequests
    info.consoleErrors = info.consoleErrors.filter((t) => !/^Failed to load resource/.test(t));
    if (info.pageErrors.length) fail(`${pagePath}: uncaught exceptions: ${info.pageErrors.join(' | ')}`);
    if (info.consoleErrors.length) fail(`${pagePath}: console errors: ${info.consoleErrors.join(' | ')}`);
    if (info.failedLocal.length) fail(`${pagePath}: failed local requests: ${info.failedLocal.join(' | ')}`);
    await page.close();
  }
  if (report.externalRequests.length) {
    fail(`${report.externalRequests.length} request(s) tried to leave 127.0.0.1: ${report.externalRequests.join(' ')}`);
  }
} catch (err) {
  fail(`browser test crashed: ${err && err.stack ? err.stack : err}`);
} finally {
  if (context) await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}

report.ok = report.failures.length === 0;
console.log(JSON.stringify(report, null, 2));
process.exit(report.ok ? 0 : 1);

// ---------------------------------------------------------------------------------------------------

/** The src of the image currently shown inside `root` (the visible one of the Stack's children). */
async function shownImage(root) {
  return root.evaluate((el) => {
    const frames = el.querySelector('.fa-explorer-frames') || el;
    const visible = [...frames.querySelectorAll('img')].filter((img) => img.offsetParent !== null
      && img.getBoundingClientRect().width > 0);
    return visible.length ? visible[0].getAttribute('src') : null;
  });
}

async function sliderValue(slider) {
  return slider.evaluate((el) => {
    const readout = el.querySelector('.widget-readout');
    const handle = el.querySelector('[role="slider"], .noUi-handle');
    return (handle && handle.getAttribute('aria-valuenow')) || (readout && readout.textContent.trim()) || null;
  });
}

async function waitForChange(root, before, ms) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const now = await shownImage(root);
    if (now && now !== before) return now;
    await new Promise((r) => setTimeout(r, 100));
  }
  return await shownImage(root);
}

async function moveSlider(page, root, slider) {
  const handle = slider.locator('.noUi-handle, [role="slider"]').first();
  const before = await shownImage(root);
  const valueBefore = await sliderValue(slider);
  // 1. keyboard: focus the handle and press the right arrow
  await handle.focus();
  await page.keyboard.press('ArrowRight');
  let after = await waitForChange(root, before, 1500);
  if (after && after !== before) {
    return { method: 'keyboard', changed: true, valueBefore, valueAfter: await sliderValue(slider) };
  }
  // 2. mouse: drag the handle to the right end of its track
  const track = slider.locator('.noUi-target, .slider-container').first();
  const hb = await handle.boundingBox();
  const tb = await track.boundingBox();
  if (hb && tb) {
    await page.mouse.move(hb.x + hb.width / 2, hb.y + hb.height / 2);
    await page.mouse.down();
    await page.mouse.move(tb.x + tb.width - 2, hb.y + hb.height / 2, { steps: 8 });
    await page.mouse.up();
  }
  after = await waitForChange(root, before, 1500);
  return { method: 'drag', changed: Boolean(after && after !== before), valueBefore,
    valueAfter: await sliderValue(slider) };
}

async function checkExplorers(page, { page: pagePath, selector = '.fa-explorer', min = 1 }) {
  const result = { page: pagePath, selector, found: 0, checked: [] };
  const roots = page.locator(selector);
  try {
    await roots.first().waitFor({ state: 'visible', timeout: timeoutMs });
  } catch {
    fail(`${pagePath}: no rendered widget matches ${selector} (widget manager did not render?)`);
    return result;
  }
  result.found = await roots.count();
  if (result.found < min) fail(`${pagePath}: ${result.found} widget(s) match ${selector}, expected at least ${min}`);
  for (let i = 0; i < result.found; i += 1) {
    const root = roots.nth(i);
    await root.scrollIntoViewIfNeeded();
    const sliders = root.locator('.fa-explorer-slider');
    const nSliders = await sliders.count();
    const first = await shownImage(root);
    const entry = { index: i, sliders: nSliders, hasImage: Boolean(first), moves: [] };
    result.checked.push(entry);
    if (!nSliders) fail(`${pagePath} ${selector}[${i}]: no slider rendered`);
    if (!first) fail(`${pagePath} ${selector}[${i}]: no image shown`);
    if (!nSliders || !first) continue;
    for (let s = 0; s < nSliders; s += 1) {
      const move = await moveSlider(page, root, sliders.nth(s));
      entry.moves.push(move);
      if (!move.changed) fail(`${pagePath} ${selector}[${i}] slider ${s}: moving it did not change the image`);
    }
    const play = root.locator('.widget-play button, .jupyter-widgets.widget-play button').first();
    if (await play.count()) {
      const before = await shownImage(root);
      await play.click();
      const after = await waitForChange(root, before, 4000);
      entry.play = { changed: Boolean(after && after !== before) };
      if (!entry.play.changed) fail(`${pagePath} ${selector}[${i}]: pressing Play did not change the image`);
      await play.click().catch(() => {}); // pause again (the first button toggles play/pause)
    }
    // Font Awesome's DOM watcher (theme script) must not have swapped the widget's <i> icons for <svg>:
    // the Play control then stops updating its own icons (see book/_static/fontawesome_config.js).
    entry.faSvgIcons = await root.locator('svg.svg-inline--fa').count();
    if (entry.faSvgIcons) fail(`${pagePath} ${selector}[${i}]: Font Awesome replaced ${entry.faSvgIcons} widget icon(s) with <svg>`);
  }
  return result;
}
