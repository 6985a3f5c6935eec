#!/usr/bin/env python
"""Screenshots of the web UI's main screens into docs/ui/ (referenced by docs/ui.md).

Runs the browser tier's UI tests (tests/serve/test_ui_browser.py: a real `tagsmith serve` on the
small test shop, driven by headless Chromium) with TAGSMITH_UI_SCREENSHOTS pointing at the
output directory. Needs Debian's chromium (scripts/install-browser.sh).

    .venv/bin/python scripts/ui_screenshots.py [--out docs/ui]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "ui")
    args = parser.parse_args()
    env = {**os.environ, "TAGSMITH_UI_SCREENSHOTS": str(args.out.resolve()), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "browser", "tests/serve/test_ui_browser.py"]
    done = subprocess.run(cmd, cwd=REPO, env=env, check=False)
    if done.returncode == 0:
        print(f"screenshots in {args.out}: {', '.join(sorted(p.name for p in args.out.glob('*.png')))}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
