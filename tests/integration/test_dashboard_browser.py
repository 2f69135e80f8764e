"""The dashboard in a real browser: Debian's Chromium driven by Playwright against the API
served on loopback, with PostgreSQL, SeaweedFS (S3), Redis and a real Celery worker.

One team signs in with its API key, watches a job's progress change on its page while the
worker runs it (without reloading), sees the finished job's chart and per-layer table, downloads
the encoded model through the S3 redirect and decodes it, reads why a job failed, and sees the
jobs list update itself. Another team's job page is a 404. Every page is checked for console
errors and for overflow at phone width; screenshots go to ``.cache/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from integrationkit import ApiTeam, Service
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from servicekit import ROOT

from app.dashboard.views import TIMES
from weightless_core import fileformat

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / ".cache" / "screenshots"
SCRIPTS = ROOT / "scripts"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Long enough to watch (a few seconds on two CPUs), short enough for `make test`.
WATCHED = {
    "preset": "fast",
    "sparsity": 0.8,
    "t": 9,
    "retrain_epochs": 3,
    "cluster_epochs": 2,
    "batch_size": 8,
}
QUICK = {"preset": "fast", "sparsity": 0.8, "t": 9}
JOB_TIMEOUT_MS = 150_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail("Debian's chromium is missing: `make setup` installs it")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        yield browser
        browser.close()


class Console:
    """Errors a page reported: console errors, uncaught exceptions and failed requests."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def expected(self, status: int, url: str) -> None:
        """Drop the one error Chromium logs for a document served with an error status on
        purpose (a refused sign-in, a 404 page); it must be there."""
        match = [e for e in self.errors if f"status of {status}" in e and f"'url': '{url}'" in e]
        assert match, f"expected Chromium to log the {status} of {url}: {self.errors}"
        self.errors.remove(match[0])

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text} at {msg.location}")


@pytest.fixture(scope="module")
def alice(service: Service) -> ApiTeam:
    return service.team("alice")


@pytest.fixture(scope="module")
def model_id(service: Service, alice: ApiTeam, digits_lenet: Path) -> str:
    with service.client(alice) as http, open(digits_lenet, "rb") as f:
        response = http.post("/v1/models", files={"file": ("lenet-digits.pt", f)})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def submit(service: Service, team: ApiTeam, body: dict[str, Any]) -> str:
    with service.client(team) as http:
        response = http.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


@pytest.fixture(scope="module")
def shared() -> dict[str, str]:
    """What the module's tests hand on to the next (they run in file order)."""
    return {}


@pytest.fixture(scope="module")
def console() -> Console:
    return Console()


@pytest.fixture(scope="module")
def page(browser: Browser, service: Service, alice: ApiTeam, console: Console) -> Iterator[Page]:
    """One signed-in tab for the module's tests, which run in order and share it."""
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    console.watch(page)
    yield page
    context.close()


@pytest.fixture(autouse=True)
def no_console_errors(console: Console) -> Iterator[None]:
    yield
    errors, console.errors[:] = list(console.errors), []
    assert not errors, "\n".join(errors)


def shoot(page: Page, name: str, *, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def test_sign_in_with_an_api_key(page: Page, service: Service, alice: ApiTeam, console: Console):
    page.goto(f"{service.url}/dashboard/jobs")
    expect(page).to_have_url(f"{service.url}/dashboard/login?next=%2Fdashboard%2Fjobs")
    page.get_by_label("API key").fill(alice.key + "-wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("That key was not accepted")
    console.expected(401, f"{service.url}/dashboard/login")
    shoot(page, "sign-in-refused", full_page=False)
    page.get_by_label("API key").fill(alice.key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{service.url}/dashboard/jobs")
    expect(page.locator("header.top")).to_contain_text(alice.name)
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()


def test_a_running_jobs_progress_updates_in_place(
    page: Page, service: Service, alice: ApiTeam, model_id: str, shared: dict[str, str]
):
    job = submit(service, alice, {"model_id": model_id, "dataset": {"builtin": "digits"},
                                  "settings": WATCHED})  # fmt: skip
    shared["watched"] = job
    page.goto(f"{service.url}/dashboard/jobs/{job}")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    seen: list[tuple[str, str, str]] = []
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        service.worker.check_alive()
        try:
            if not page.evaluate("window.__sameDocument === true"):
                break  # the script reloaded the page: the job has finished
            state = (
                page.locator('[data-live="stage"]').inner_text(timeout=1000),
                page.locator('[data-live="percent"]').inner_text(timeout=1000),
                page.locator('[data-live="layer"]').inner_text(timeout=1000),
            )
        except Exception:  # navigation in progress
            continue
        if not seen or seen[-1] != state:
            seen.append(state)
            if len(seen) == 3:
                shoot(page, "job-running")
        time.sleep(0.1)
    assert len(seen) >= 3, f"the progress did not change in place: {seen}"
    stages = {stage for stage, _, _ in seen}
    assert len(stages) >= 2, seen
    expect(page.locator(".job-head .badge")).to_have_attribute(
        "data-status", "succeeded", timeout=JOB_TIMEOUT_MS
    )


def test_a_finished_job_shows_its_chart_and_table(
    page: Page, service: Service, shared: dict[str, str]
):
    job = shared["watched"]
    page.goto(f"{service.url}/dashboard/jobs/{job}")
    encoded = page.locator("table.layers tbody tr.enc")
    expect(encoded).to_have_count(3)  # LeNet-300-100: three weight tensors (biases stay plain)
    expect(encoded.first.locator("th")).to_have_text("fc1.weight")
    charts = page.locator(".report figure.chart svg")
    expect(charts).to_have_count(2)
    for i in range(2):
        box = charts.nth(i).bounding_box()
        assert box is not None and box["width"] > 400 and box["height"] > 100
    bars = page.locator(".report svg rect.bar")
    assert bars.count() >= 6, "bytes per layer: original, DC and Weightless bars"
    expect(page.get_by_role("link", name="Encoded model")).to_be_visible()
    shoot(page, "job-succeeded")


def test_the_readme_screenshot_script_shoots_a_finished_job(
    service: Service, alice: ApiTeam, shared: dict[str, str], tmp_path: Path
):
    """``scripts/shoot_dashboard.py`` (the README's picture), run as a user runs it, signs in
    as a user would and saves the job's whole page; without a key it says which one to set."""
    script = [sys.executable, str(SCRIPTS / "shoot_dashboard.py"), "--url", service.url]
    env = {k: v for k, v in os.environ.items() if k != "WEIGHTLESS_API_KEY"}
    refused = subprocess.run(script, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "WEIGHTLESS_API_KEY" in refused.stderr
    out = tmp_path / "job.png"
    shot = subprocess.run(
        [*script, "--job", shared["watched"], "--out", str(out)],
        env=env | {"WEIGHTLESS_API_KEY": alice.key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0, shot.stderr
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width == 1280 and height > 1_500, (width, height)  # the whole page, not the viewport


def test_download_the_encoded_model(
    page: Page, service: Service, shared: dict[str, str], tmp_path: Path
):
    job = shared["watched"]
    page.goto(f"{service.url}/dashboard/jobs/{job}")
    with page.expect_download() as info:
        page.get_by_role("link", name="Encoded model").click()
    download = info.value
    assert download.suggested_filename == f"{job}.wlss"
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    state = fileformat.load(path)
    assert {"fc1.weight", "fc2.weight", "fc3.weight"} <= set(state)


def digits_shaped_wrong() -> bytes:
    """A data set whose samples have 5 features, for a model that takes 64."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, x_train=rng.random((40, 5), dtype=np.float32),
             y_train=rng.integers(0, 10, 40), x_val=rng.random((10, 5), dtype=np.float32),
             y_val=rng.integers(0, 10, 10))  # fmt: skip
    return buf.getvalue()


def test_a_failed_job_shows_why_and_what_to_do(
    page: Page, service: Service, alice: ApiTeam, model_id: str
):
    with service.client(alice) as http:
        response = http.post("/v1/datasets", files={"file": ("wrong.npz", digits_shaped_wrong())})
    assert response.status_code == 201, response.text
    job = submit(service, alice, {"model_id": model_id, "dataset": {"id": response.json()["id"]},
                                  "settings": QUICK})  # fmt: skip
    page.goto(f"{service.url}/dashboard/jobs/{job}")
    expect(page.locator(".job-head .badge")).to_have_attribute(
        "data-status", "failed", timeout=JOB_TIMEOUT_MS
    )
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Why it failed")
    expect(alert.locator(".error-message")).to_contain_text("bad_data")
    expect(alert.locator(".advice")).to_contain_text("Make the data set match")
    shoot(page, "job-failed")


def test_the_jobs_list_updates_itself(page: Page, service: Service, alice: ApiTeam, model_id: str):
    page.goto(f"{service.url}/dashboard/jobs")
    page.evaluate("window.__sameDocument = true")
    job = submit(service, alice, {"model_id": model_id, "dataset": {"builtin": "digits"},
                                  "settings": QUICK})  # fmt: skip
    row = page.locator(f'tr[data-job="{job}"]')
    expect(row).to_be_visible(timeout=20_000)  # appears without a reload
    expect(row).to_have_attribute("data-status", "succeeded", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("window.__sameDocument === true")
    expect(row).to_contain_text(TIMES)  # its ratio
    page.get_by_label("Status").select_option("failed")  # filters submit themselves
    expect(page).to_have_url(f"{service.url}/dashboard/jobs?status=failed&model=&dataset=&preset=")
    expect(page.locator("tbody tr")).to_have_count(1)
    page.goto(f"{service.url}/dashboard/jobs")
    shoot(page, "jobs")


def test_another_teams_job_page_is_a_404(
    page: Page, service: Service, digits_lenet: Path, console: Console
):
    bob = service.team("bob")
    with service.client(bob) as http, open(digits_lenet, "rb") as f:
        model = http.post("/v1/models", files={"file": ("bobs.pt", f)}).json()["id"]
    job = submit(service, bob, {"model_id": model, "settings": QUICK})
    response = page.goto(f"{service.url}/dashboard/jobs/{job}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    assert "bobs.pt" not in page.content()
    console.expected(404, f"{service.url}/dashboard/jobs/{job}")


def test_models_and_overview_pages(page: Page, service: Service):
    page.goto(f"{service.url}/dashboard/models")
    expect(page.locator("table.models tbody tr")).to_have_count(1)
    expect(page.locator("table.models")).to_contain_text("lenet-digits.pt")
    shoot(page, "models")
    page.goto(f"{service.url}/dashboard/overview")
    expect(page.locator('[data-figure="jobs"]')).to_have_text("3")
    expect(page.locator('[data-figure="success"]')).to_have_text("67 %")  # 2 of 3
    expect(page.locator("svg.jobs-per-day")).to_be_visible()
    shoot(page, "overview")


@pytest.mark.parametrize("path", ["jobs", "models", "overview", "job"])
def test_pages_fit_a_phone(
    browser: Browser, page: Page, service: Service, console: Console, path: str,
    shared: dict[str, str],
):  # fmt: skip
    """At 390 px nothing but the tables' own scroll boxes is wider than the screen."""
    name = f"phone-{path}"
    if path == "job":
        path = f"jobs/{shared['watched']}"
    phone = browser.new_context(viewport=PHONE, storage_state=page.context.storage_state())
    tab = phone.new_page()
    console.watch(tab)
    try:
        tab.goto(f"{service.url}/dashboard/{path}")
        expect(tab.get_by_role("navigation", name="Dashboard")).to_be_visible()
        overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path}: {overflow} px wider than the screen"
        shoot(tab, name)
    finally:
        phone.close()


# -- issue 13: what a hostile page or file name could do in a real browser --------------------

EVIL = "http://localhost:1"  # another site (not 127.0.0.1); Playwright answers, nothing listens


def attacker_page(page: Page, html: str) -> None:
    """Open a page of another origin whose ``html`` Playwright serves (no network)."""
    page.route(f"{EVIL}/**", lambda route: route.fulfill(body=html, content_type="text/html"))
    page.goto(f"{EVIL}/page")


def signed_in_tab(page: Page, service: Service, team: ApiTeam) -> Page:
    """A new tab of ``page``'s browser, signed in as ``team`` (through the form if need be)."""
    tab = page.context.new_page()
    tab.goto(f"{service.url}/dashboard/jobs")
    if "/dashboard/login" in tab.url:
        tab.get_by_label("API key").fill(team.key)
        tab.get_by_role("button", name="Sign in").click()
        expect(tab).to_have_url(f"{service.url}/dashboard/jobs")
    return tab


def auto_submit(action: str, fields: dict[str, str]) -> str:
    inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
    return (f'<!DOCTYPE html><form id="f" method="post" action="{action}">{inputs}</form>'
            '<script>document.getElementById("f").submit()</script>')  # fmt: skip


def test_another_site_cannot_sign_the_browser_in_as_another_team(
    page: Page, service: Service, alice: ApiTeam, console: Console
):
    """The probe: a page elsewhere auto-submitted mallory's key to the sign-in form and the
    victim's dashboard switched team. Now the post is refused and alice stays alice."""
    mallory = service.team("mallory")
    victim = signed_in_tab(page, service, alice)
    console.watch(victim)
    try:
        fields = {"api_key": mallory.key, "next": "/dashboard/jobs"}
        attacker_page(victim, auto_submit(f"{service.url}/dashboard/login", fields))
        expect(victim).to_have_url(f"{service.url}/dashboard/login")
        expect(victim.get_by_role("alert")).to_contain_text("That sign-in was refused")
        console.expected(403, f"{service.url}/dashboard/login")
        victim.goto(f"{service.url}/dashboard/jobs")
        expect(victim.locator("header.top")).to_contain_text(alice.name)
        assert mallory.name not in victim.content()
    finally:
        victim.close()


def test_a_refused_cross_site_post_lands_on_a_page_not_a_405(
    page: Page, service: Service, alice: ApiTeam, model_id: str
):
    """A cross-site cancel arrives without the session (SameSite) and is sent to sign in;
    the browser then lands on the job's page, not with a GET on the POST-only URL."""
    job = submit(service, alice, {"model_id": model_id, "settings": QUICK})
    victim = signed_in_tab(page, service, alice)
    try:
        action = f"{service.url}/dashboard/jobs/{job}/cancel"
        attacker_page(victim, auto_submit(action, {"csrf": "guessed"}))
        expect(victim).to_have_url(f"{service.url}/dashboard/jobs/{job}")
        expect(victim.locator(".job-head")).to_be_visible()
    finally:
        victim.close()
    with service.client(alice) as http:
        assert http.get(f"/v1/jobs/{job}").json()["cancel_requested"] is False


def test_file_names_are_shown_isolated_without_invisible_characters(
    browser: Browser, service: Service, console: Console
):
    """``evil\\u202egnp.pt`` showed as "...tp.png" and flipped the id beside it; a name in a
    right-to-left script must not move the id either."""
    carol = service.team("carol")
    names = ["evil\u202egnp.pt\u200b", "\u05de\u05d5\u05d3\u05dc-\u05e9\u05dc\u05d9.pt"]
    with service.client(carol) as http:
        for i, name in enumerate(names):
            data = _safetensors(i + 1)
            assert http.post("/v1/models", files={"file": (name, data)}).status_code == 201
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    console.watch(tab)
    try:
        tab.goto(f"{service.url}/dashboard/login")
        tab.get_by_label("API key").fill(carol.key)
        tab.get_by_role("button", name="Sign in").click()
        tab.goto(f"{service.url}/dashboard/models")
        rows = tab.locator("table.models tbody tr")
        expect(rows).to_have_count(2)
        shown = sorted(rows.locator("th.name bdi").all_inner_texts())
        assert shown == sorted(["evilgnp.pt", names[1]]), shown
        for i in range(2):
            name, ident = rows.nth(i).locator("th.name bdi"), rows.nth(i).locator("th.name small")
            assert name.evaluate("e => getComputedStyle(e).unicodeBidi") == "isolate"
            box, id_box = name.bounding_box(), ident.bounding_box()
            assert box and id_box and box["x"] + box["width"] <= id_box["x"] + 1, (box, id_box)
        shoot(tab, "models-bidi-names", full_page=False)
    finally:
        context.close()


def _safetensors(n: int) -> bytes:
    header = f'{{"w":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{4 * n}]}}}}'.encode()
    return len(header).to_bytes(8, "little") + header + b"\0" * (4 * n)


@pytest.mark.parametrize(
    ("path", "ready"), [("/docs", ".opblock"), ("/redoc", "[data-section-id]")]
)
def test_api_docs_render_from_this_origin_only(
    browser: Browser, service: Service, console: Console, path: str, ready: str
):
    """Swagger UI and Redoc come from the pinned package, served here: the page renders,
    asks nothing of any other host, and the CSP refuses nothing."""
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    console.watch(tab)
    requested: list[str] = []
    tab.on("request", lambda request: requested.append(request.url))
    try:
        tab.goto(f"{service.url}{path}")
        expect(tab.locator(ready).first).to_be_visible(timeout=30_000)
        expect(tab.locator("body")).to_contain_text("/v1/jobs")
        shoot(tab, f"api{path.replace('/', '-')}", full_page=False)
    finally:
        context.close()
    elsewhere = [u for u in requested if not u.startswith((service.url, "blob:", "data:"))]
    assert not elsewhere, elsewhere
