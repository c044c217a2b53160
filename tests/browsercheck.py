"""Render an HTML report in headless Chromium and check that every figure is drawn and that the page has no errors.

How the check works (``check_report`` returns the problems it found; an empty list means the page is fine):

1. The figures the report must show are given by name (``<img alt=...>``). Each ``data:image/png;base64`` image in the
   HTML source is decoded with Pillow and must not be blank: at least ``MIN_INK`` of its pixels (composited on white)
   must differ from its most common colour. This catches a figure whose *data* is empty, white or transparent.
2. A copy of the page with a tiny probe ``<script>`` at the start of ``<head>`` is loaded with ``--dump-dom``. The
   probe records every ``error`` event (capture phase: script errors *and* resources that fail to load, such as a
   broken image) and, once the page has loaded, writes a JSON summary into a hidden ``<output id="probe">``: for each
   ``<img>`` whether it decoded (``complete`` with ``naturalWidth > 0``) and where it was laid out. Chromium's
   console (``--enable-logging=stderr --v=0``) must stay silent too: the report has no scripts of its own. A probe that
   never reports is itself a problem, so the check cannot pass by not running.
3. The same page is screenshotted at ``--window-size=1280,<page height>`` (scrollbars hidden, device scale 1, so the
   layout is the one the probe measured), and the screenshot area of each image must not be blank either (same
   ``MIN_INK`` rule): the figure is not only decoded but actually painted.

D-Bus, VA-API and the Debian launcher's complaints on stderr are harmless and ignored; only ``CONSOLE`` lines count.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest
from PIL import Image

WIDTH = 1280
MIN_INK = 0.01  # a matplotlib figure has a few percent of non-background pixels; blank or uniform has none
PROBE = """<script>
window.__errors = [];
addEventListener("error", e => __errors.push(e.message || "failed to load <" + e.target.tagName.toLowerCase() + "> "
  + (e.target.alt || "")), true);
addEventListener("load", () => {
  const o = document.createElement("output"); o.id = "probe"; o.hidden = true;
  o.textContent = JSON.stringify({errors: __errors, width: document.documentElement.clientWidth,
    height: document.documentElement.scrollHeight, images: [...document.images].map(i => {
      const r = i.getBoundingClientRect();
      return {alt: i.alt, ok: i.complete && i.naturalWidth > 0, rect: [r.left + scrollX, r.top + scrollY, r.width,
        r.height]};
    })});
  document.body.append(o);
});
</script>"""


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_or_skip() -> str:
    """The Chromium binary; outside CI a skip when there is none, in CI (``CI`` set) a failure: CI installs it."""
    exe = find_chromium()
    if exe is None:
        msg = "headless Chromium not installed (`apt-get install chromium`; .ci/run installs it)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"CI is set but {msg}", pytrace=False)
        pytest.skip(msg)
    return exe


def ink(img: Image.Image) -> float:
    """Fraction of pixels that differ from the most common colour (after compositing any alpha onto white)."""
    rgba = img.convert("RGBA")
    rgb = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    colours = rgb.getcolors(maxcolors=rgb.width * rgb.height) or []
    return 1.0 - max(n for n, _ in colours) / (rgb.width * rgb.height) if colours else 0.0


def _chromium(exe: str, work: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
           f"--user-data-dir={work / 'profile'}", *args, url]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc


def check_report(report: Path, exe: str, work: Path, expected: Iterable[str]) -> list[str]:
    """Problems with ``report`` (an HTML file) as headless Chromium draws it; ``expected``: the figures' names."""
    page = report.read_text(encoding="utf-8")
    problems = []
    embedded = dict(re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]*)"', page))
    for name in sorted(set(expected) - set(embedded)):
        problems.append(f"{name}: no <img> in the report")
    for name, data in embedded.items():
        try:
            img = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
            img.load()
        except Exception as e:
            problems.append(f"{name}: embedded PNG does not decode ({e})")
            continue
        if ink(img) < MIN_INK:
            problems.append(f"{name}: embedded PNG is blank")
    work.mkdir(parents=True, exist_ok=True)
    probed = work / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    url = probed.as_uri()
    dom = _chromium(exe, work, url, f"--window-size={WIDTH},800", "--enable-logging=stderr", "--v=0", "--dump-dom")
    problems += [f"console: {line}" for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    (work / "dom.html").write_text(dom.stdout, encoding="utf-8")
    found = re.search(r'<output id="probe"[^>]*>(.*?)</output>', dom.stdout, re.S)
    if found is None:
        return [*problems, "the probe did not report: the page did not load or its script did not run"]
    probe = json.loads(html.unescape(found.group(1)))
    problems += [f"page error: {e}" for e in probe["errors"]]
    if probe["width"] != WIDTH:
        problems.append(f"layout width {probe['width']} != {WIDTH}: image positions would not match the screenshot")
    shot_path = work / "screenshot.png"
    _chromium(exe, work, url, f"--window-size={WIDTH},{probe['height']}", f"--screenshot={shot_path}")
    with Image.open(shot_path) as shot:
        shot.load()
    for i in probe["images"]:
        x, y, w, h = i["rect"]
        box = (math.ceil(x) + 1, math.ceil(y) + 1, math.floor(x + w) - 1, math.floor(y + h) - 1)
        if not i["ok"]:
            problems.append(f"{i['alt']}: broken image (not decoded by Chromium)")
        elif w < 20 or h < 20 or y + h > shot.height:
            problems.append(f"{i['alt']}: not displayed ({w:.0f}x{h:.0f} at y={y:.0f})")
        elif ink(shot.crop(box)) < MIN_INK:
            problems.append(f"{i['alt']}: blank in the screenshot")
    return problems
