"""Headless Chromium: print the report to PDF, and (for the tests) dump the DOM and take a
screenshot of exactly what a reader sees. Debian's ``chromium`` package; nothing is fetched.

Every run gets a fresh, throw-away profile and no network features (``--disable-background-
networking`` and friends); the page itself forbids every external resource by its CSP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from mlgate.errors import InputError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "apt-get update && apt-get install -y chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
         "--mute-audio", "--hide-scrollbars", "--no-pdf-header-footer")


def find_chromium() -> str | None:
    """The browser binary: ``MLGATE_CHROMIUM`` if set, else the first on PATH."""
    env = os.environ.get("MLGATE_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return next((p for p in (shutil.which(c) for c in CANDIDATES) if p), None)


def run_chromium(html_file: Path, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess:
    binary = find_chromium()
    if binary is None:
        raise InputError(f"Chromium is not installed (install it: {INSTALL_HINT}, or set MLGATE_CHROMIUM)", field="--pdf")
    url = Path(html_file).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="mlgate-chromium-") as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *args, url]
        try:
            return subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise InputError(f"Chromium did not finish within {timeout:g} s", file=str(html_file)) from None
        except OSError as exc:
            raise InputError(f"cannot run Chromium ({binary}): {exc.strerror or exc}", file=str(html_file)) from None


def print_pdf(html_file: Path, pdf_file: Path) -> None:
    pdf_file = Path(pdf_file).resolve()
    tmp = pdf_file.with_name(f".{pdf_file.name}.{os.getpid()}.tmp")
    proc = run_chromium(html_file, f"--print-to-pdf={tmp}")
    try:
        if not tmp.is_file() or tmp.stat().st_size == 0 or not tmp.read_bytes().startswith(b"%PDF-"):
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            raise InputError(f"Chromium did not write the PDF: {tail[0]}", file=str(pdf_file))
        os.replace(tmp, pdf_file)
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass


def dump_dom(html_file: Path) -> str:
    proc = run_chromium(html_file, "--dump-dom", "--virtual-time-budget=2000")
    if proc.returncode != 0:
        raise InputError(f"Chromium --dump-dom failed with exit {proc.returncode}", file=str(html_file))
    return proc.stdout.decode("utf-8", "replace")


def screenshot(html_file: Path, png_file: Path, *, width: int = 1280, height: int = 2400) -> None:
    proc = run_chromium(html_file, f"--screenshot={Path(png_file).resolve()}", f"--window-size={width},{height}")
    if not Path(png_file).is_file():
        raise InputError(f"Chromium did not write the screenshot (exit {proc.returncode})", file=str(png_file))
