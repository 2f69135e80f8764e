"""Screenshot a finished job's dashboard page, as the README shows it.

    make run                      # in one shell: the service and its demo job
    .venv/bin/python scripts/shoot_dashboard.py --out docs/images/dashboard-job.png

It signs in to the dashboard with ``WEIGHTLESS_API_KEY`` (the key `make run` prints) as a user
would, opens the newest succeeded job (or ``--job``) and saves the whole page. Debian's
Chromium drives it (``/usr/bin/chromium``, never a downloaded browser), so the picture is the
page a user sees, from the demo job a fresh machine runs, not one drawn by hand.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from app.client import DEFAULT_URL, ClientError, WeightlessClient

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 900}


def newest_succeeded(url: str, key: str) -> str:
    """The id of the team's newest succeeded job."""
    with WeightlessClient(url, key) as client:
        items = client.list_jobs(status="succeeded", limit=1)["items"]
    if not items:
        raise SystemExit(f"no succeeded job at {url} for this key: run `make run` first")
    return str(items[0]["id"])


def shoot(url: str, key: str, job: str, out: Path) -> None:
    """Sign in at ``url`` with ``key`` and save job ``job``'s page to ``out``."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{url}/dashboard/login")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{url}/dashboard/jobs")
        page.goto(f"{url}/dashboard/jobs/{job}")
        expect(page.locator(".job-head .badge")).to_have_attribute("data-status", "succeeded")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        browser.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", default=os.environ.get("WEIGHTLESS_URL", DEFAULT_URL))
    ap.add_argument("--job", help="a job id (default: the newest succeeded job)")
    ap.add_argument("--out", type=Path, default=Path("docs/images/dashboard-job.png"))
    args = ap.parse_args(argv)
    key = os.environ.get("WEIGHTLESS_API_KEY")
    if not key:
        raise SystemExit("set WEIGHTLESS_API_KEY to the key `make run` printed")
    try:
        job = args.job or newest_succeeded(args.url, key)
    except ClientError as exc:
        raise SystemExit(f"could not list jobs at {args.url}: {exc}") from None
    shoot(args.url.rstrip("/"), key, job, args.out)
    print(f"job {job} -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
