"""Open every lesson as a reader would, in headless Chromium, and check what they see.

Quarto cannot be installed offline, so each committed notebook is rendered to HTML with nbconvert and opened in
Debian's Chromium (or `$CHROMIUM`) through Playwright. For each page the check takes a full-page screenshot (into `screenshots/`, which
git ignores) and asserts that:

- every image on the page loaded and is not blank (its pixels are not all one colour);
- no cell output holds a Python traceback;
- every lesson has its exercises' answers in folded `<details>` blocks, closed, with a visible summary line;
- every formula rendered: the pages load a local MathJax (Debian's `libjs-mathjax`, or `$MATHJAX_JS`) instead of the
  CDN's, and a TeX error (an unknown control sequence, a missing brace) or any `$...$` left as raw text in the prose
  fails the page.

Usage: `python tools/browser_check.py [NOTEBOOK ...]` (default: every notebook in nbs/). Exits 1 on any failure.
"""
import argparse, json, os, shutil, sys, time
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get('CHROMIUM') or next(
    (p for p in map(shutil.which, ('chromium', 'chromium-browser', 'google-chrome')) if p), '/usr/bin/chromium')
MATHJAX = Path(os.environ.get('MATHJAX_JS') or '/usr/share/javascript/mathjax/MathJax.js')
ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync']

# Runs in the page: one record per <img>, with its size and the spread of its pixel values.
IMAGE_STATS_JS = """() => Array.from(document.images).map(img => {
  const r = {src: img.src.slice(0, 80), complete: img.complete, w: img.naturalWidth, h: img.naturalHeight, spread: 0};
  if (!img.complete || !img.naturalWidth) return r;
  const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let lo = 255, hi = 0;
  for (let i = 0; i < d.length; i += 4) { const v = (d[i] + d[i+1] + d[i+2]) / 3; if (v < lo) lo = v; if (v > hi) hi = v; }
  r.spread = hi - lo; return r;
})"""

# Set before the page's scripts run: MathJax 2 calls AuthorInit when it loads, and the hooks collect every TeX error
# (noUndefined and noErrors are off, so that an unknown control sequence is an error too, not red text).
MATHJAX_HOOKS_JS = """window.__mjErrors = []; window.MathJax = {TeX: {noUndefined: {disabled: true}, noErrors: {disabled: true}}, AuthorInit: function () {
  MathJax.Hub.Register.MessageHook('TeX Jax - parse error', function (m) { window.__mjErrors.push(String(m[1])); });
  MathJax.Hub.Register.MessageHook('Math Processing Error', function (m) { window.__mjErrors.push('processing error: ' + String(m[2] || m[1])); });
  MathJax.Hub.Register.StartupHook('End', function () { MathJax.Hub.Queue(function () { window.__mjDone = true; }); });
}};"""

# After MathJax is done: the number of rendered formulas, and the prose (code left out) that still holds TeX delimiters.
MATH_STATS_JS = """() => {
  const rendered = document.querySelectorAll('.MathJax_CHTML, .MathJax_Display, .MathJax').length;
  const raw = [];
  document.querySelectorAll('.jp-RenderedMarkdown').forEach(md => {
    const c = md.cloneNode(true);
    c.querySelectorAll('code, pre, script, .MathJax_CHTML, .MathJax_Display, .MathJax, .MathJax_Preview').forEach(e => e.remove());
    const m = c.textContent.match(/\\$\\$[^$]+\\$\\$|\\$[^$\\s][^$]*?\\$|\\\\(frac|sqrt|mathrm|hat|lambda|eta|theta|beta)\\b/);
    if (m) raw.push(m[0].slice(0, 60));
  });
  return {rendered, raw, errors: window.__mjErrors || []};
}"""

# The exercises' answers: each in a <details> block that starts folded, with a visible summary line.
DETAILS_JS = """() => Array.from(document.querySelectorAll('details')).map(d => {
  const s = d.querySelector('summary'); const r = s ? s.getBoundingClientRect() : null;
  return {open: d.open, summary: s ? s.innerText.trim() : '', visible: !!r && r.height > 0 && r.width > 0};
})"""

OUTPUT_TEXT_JS = """() => Array.from(document.querySelectorAll('.jp-OutputArea-output')).map(e => e.innerText)"""


API_ENTRIES_JS = """() => Array.from(document.querySelectorAll('.jp-OutputArea-output')).filter(
    e => e.querySelector('h3') && e.querySelector('pre')).length"""


def _name(nb_path: Path) -> str: return ('api_' if nb_path.parent.name == 'api' else '') + nb_path.stem


def render(nb_path: Path, out_dir: Path) -> Path:
    "Render the notebook at `nb_path` to HTML in `out_dir`; relative links resolve against the notebook's folder"
    exporter = HTMLExporter(mathjax_url=MATHJAX.as_uri() + '?config=TeX-AMS_CHTML')
    body, _ = exporter.from_notebook_node(nbformat.read(nb_path, as_version=4))
    body = body.replace('<head>', f'<head><base href="{nb_path.parent.resolve().as_uri()}/">', 1)
    dest = out_dir / (_name(nb_path) + '.html')
    dest.write_text(body, encoding='utf-8')
    return dest


def check_page(page, html: Path, shot: Path) -> tuple[list[str], int]:
    "Open `html` in `page`, save a screenshot to `shot`, and return (problems, number of images checked)"
    page.goto(html.as_uri(), wait_until='load')
    problems = []
    try: page.wait_for_function('window.__mjDone === true', timeout=60_000)
    except Exception: problems.append("MathJax did not finish typesetting within 60 s")
    math = page.evaluate(MATH_STATS_JS)
    problems += [f"MathJax error: {e[:120]}" for e in math['errors']]
    problems += [f"formula left unrendered: {r!r}" for r in math['raw']]
    if html.stem[:2].isdigit():                       # a lesson: exercises with folded answers
        details = page.evaluate(DETAILS_JS)
        if not details: problems.append("no folded answers (<details>) on the page")
        problems += [f"answers block {i} is open" for i, d in enumerate(details) if d['open']]
        problems += [f"answers block {i} has no visible summary" for i, d in enumerate(details) if not (d['visible'] and d['summary'])]
    page.screenshot(path=str(shot), full_page=True)
    # Remote images (the Colab badge) cannot load offline; the plots are embedded and nbs/images/ files are local.
    imgs = [r for r in page.evaluate(IMAGE_STATS_JS) if not r['src'].startswith('http')]
    for i, r in enumerate(imgs):
        if not r['complete'] or not r['w']: problems.append(f"image {i} did not load ({r['src']})")
        elif r['spread'] < 8: problems.append(f"image {i} is blank ({r['w']}x{r['h']}, {r['src']})")
    for t in page.evaluate(OUTPUT_TEXT_JS):
        if 'Traceback (most recent call last)' in t or 'Error Traceback' in t: problems.append(f"an output holds a traceback: {t[:120]!r}")
    return problems, len(imgs), math['rendered']


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('notebooks', nargs='*', type=Path)
    p.add_argument('--out', type=Path, default=ROOT / 'screenshots')
    a = p.parse_args(argv)
    nbs = a.notebooks or sorted((ROOT / 'nbs').glob('*.ipynb')) + sorted((ROOT / 'nbs').glob('api/*.ipynb'))
    a.out.mkdir(exist_ok=True)
    if not MATHJAX.is_file(): sys.exit(f"No local MathJax at {MATHJAX}: install Debian's libjs-mathjax, or set MATHJAX_JS to a MathJax 2 MathJax.js.")
    start, failed, n_imgs, n_formulas = time.time(), {}, 0, 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={'width': 1200, 'height': 900})
        page.add_init_script(MATHJAX_HOOKS_JS)
        # MathJax comes from a local file; other remote assets (the badge, fonts) are refused at once, as offline.
        page.route('**/*', lambda route: route.abort() if route.request.url.startswith('http') else route.continue_())
        for nb in nbs:
            problems, n, n_math = check_page(page, render(nb, a.out), a.out / (_name(nb) + '.png'))
            if nb.parent.name == 'api':      # an API page: every show_doc entry rendered as a heading with its signature
                want = sum(''.join(c['source']).startswith('show_doc(') for c in json.loads(nb.read_text())['cells'])
                got = page.evaluate(API_ENTRIES_JS)
                if got != want: problems.append(f"{got} of {want} show_doc entries rendered with a heading and a signature")
            n_imgs += n
            n_formulas += n_math
            print(f"{_name(nb)}: {n} images, {n_math} formulas, {'OK' if not problems else '; '.join(problems)}")
            if problems: failed[_name(nb)] = problems
        browser.close()
    print(f"browser check: {len(nbs)} pages, {n_imgs} images (remote badges not fetched), {n_formulas} formulas, {len(failed)} failing, {time.time() - start:.1f} s; screenshots in {a.out}")
    return 1 if failed else 0


if __name__ == '__main__': sys.exit(main())
