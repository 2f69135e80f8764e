"""The dashboard's pages over HTTP (no browser): sign-in and sessions, team scoping, CSRF,
each job state, the models page and the overview's figures. The browser-level behaviour
(live updates, charts drawn, downloads) is in tests/integration/test_dashboard_browser.py.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest
from apikit import job_id, make_team, safetensors_bytes, upload_id
from dashkit import HTML, csrf_of, fail, post_sign_in, set_job, sign_in, succeed
from sqlalchemy import func, select, update

from app.dashboard import session as dash_session
from app.dashboard.views import TIMES
from app.db import transaction
from app.models import ApiKey, DashboardSession, Job, Upload
from app.services.teams import revoke_key

PAGES = ["/dashboard/jobs", "/dashboard/models", "/dashboard/overview"]


@pytest.mark.parametrize("path", [*PAGES, f"/dashboard/jobs/{uuid.uuid4()}"])
def test_pages_send_a_browser_to_sign_in_and_a_script_a_401(client, path):
    page = client.get(path, headers=HTML, follow_redirects=False)
    assert page.status_code == 303
    assert unquote(page.headers["location"]) == f"/dashboard/login?next={path}"
    script = client.get(path, follow_redirects=False)
    assert script.status_code == 401
    assert script.json()["error"]["code"] == "unauthorized"


def test_the_root_url_leads_to_the_dashboard(client, alice):
    for method in ("GET", "HEAD"):
        response = client.request(method, "/", follow_redirects=False)
        assert response.status_code == 307
        assert response.headers["location"] == "/dashboard/jobs"
    page = client.get("/", headers=HTML)  # followed: a browser not signed in is asked to
    assert page.status_code == 200 and 'name="api_key"' in page.text
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_sign_in_sets_an_opaque_cookie_that_holds_no_key(client, alice, sessions):
    form = client.get("/dashboard/login", headers=HTML)
    assert form.status_code == 200 and 'name="api_key"' in form.text
    response = post_sign_in(client, alice.key, "/dashboard/overview")
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/overview"
    cookie = next(c for c in response.headers.get_list("set-cookie")
                  if c.startswith(f"{dash_session.COOKIE}="))  # fmt: skip
    for flag in ("HttpOnly", "Path=/dashboard", "SameSite=lax", "Max-Age="):
        assert flag in cookie
    token = client.cookies.get(dash_session.COOKIE)
    with transaction(sessions) as s:
        key_id, team_id = s.execute(select(ApiKey.id, ApiKey.team_id)).one()
        stored = s.scalars(select(DashboardSession.token_hash)).all()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 256 random bits and nothing else
    for secret in (alice.key, alice.key[3:20], str(key_id), key_id.hex, str(team_id)):
        assert secret not in cookie
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]  # the database: a digest
    page = client.get("/dashboard/jobs", headers=HTML)
    assert page.status_code == 200
    assert alice.name in page.text


def test_a_wrong_key_is_refused_with_a_reason_and_no_session(client, alice):
    response = post_sign_in(client, alice.key + "x")
    assert response.status_code == 401
    assert "That key was not accepted" in response.text
    assert dash_session.COOKIE not in response.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/v1/jobs", "/dashboard\\@evil"]
)
def test_sign_in_never_redirects_off_the_dashboard(client, alice, target):
    response = post_sign_in(client, alice.key, target)
    assert response.headers["location"] == "/dashboard/jobs"


@pytest.mark.parametrize(
    ("how", "headers", "with_token"),
    [
        ("no form token (another site cannot read it)", {}, False),
        ("Origin of another site", {"Origin": "http://evil.example"}, True),
        ("Origin null (a sandboxed frame)", {"Origin": "null"}, True),
        ("Sec-Fetch-Site: cross-site", {"Sec-Fetch-Site": "cross-site"}, True),
    ],
)
def test_sign_in_from_another_site_is_refused(client, alice, bob, how, headers, with_token):
    """Login CSRF: a page elsewhere auto-submits bob's key; alice's browser stays alice's."""
    sign_in(client, alice)
    form = client.get("/dashboard/login", headers=HTML, follow_redirects=False)
    assert form.status_code == 303  # already signed in: no form, nothing to take
    fresh = client.__class__(client.app)  # the token of a form served to someone else
    token = csrf_of(fresh.get("/dashboard/login", headers=HTML).text)
    data = {"api_key": bob.key, "next": "/dashboard/jobs", "csrf": token if with_token else ""}
    if with_token:  # the attacker's token, with the victim's own sign-in cookie
        client.cookies.set(dash_session.SIGNIN_COOKIE, fresh.cookies[dash_session.SIGNIN_COOKIE],
                           path=dash_session.SIGNIN_PATH)  # fmt: skip
        data["csrf"] = token
    refused = client.post("/dashboard/login", data=data, headers={**HTML, **headers},
                          follow_redirects=False)  # fmt: skip
    assert refused.status_code == 403, how
    assert "That sign-in was refused" in refused.text
    assert dash_session.COOKIE not in refused.headers.get("set-cookie", "")
    page = client.get("/dashboard/jobs", headers=HTML)
    assert alice.name in page.text and bob.name not in page.text


def test_sign_in_behind_a_proxy_that_rewrites_host(client, alice):
    """The browser's own Sec-Fetch-Site decides where it says so: a proxy that sends the app
    another Host than the public one the page came from does not lock people out."""
    headers = {"Origin": "https://weightless.example.com", "Sec-Fetch-Site": "same-origin"}
    assert post_sign_in(client, alice.key, **headers).status_code == 303


def test_a_tampered_expired_or_unknown_cookie_is_signed_out(client, alice, sessions):
    sign_in(client, alice)
    good = client.cookies.get(dash_session.COOKIE)
    tampered = ("B" if good[0] == "A" else "A") + good[1:]
    for bad in (tampered, dash_session.new_token(), "garbage", "x" * 5000, ""):
        client.cookies.set(dash_session.COOKIE, bad, path="/dashboard")
        response = client.get("/dashboard/jobs", headers=HTML, follow_redirects=False)
        assert response.status_code == 303, bad
    client.cookies.set(dash_session.COOKIE, good, path="/dashboard")
    assert client.get("/dashboard/jobs", headers=HTML).status_code == 200
    with transaction(sessions) as s:
        s.execute(update(DashboardSession).values(expires_at=datetime.now(UTC)))
    response = client.get("/dashboard/jobs", headers=HTML, follow_redirects=False)
    assert response.status_code == 303


def test_sign_out_ends_the_session_on_the_server(client, alice, sessions):
    """A copy of the cookie taken before signing out opens nothing afterwards."""
    sign_in(client, alice)
    captured = client.cookies.get(dash_session.COOKIE)
    token = csrf_of(client.get("/dashboard/jobs", headers=HTML).text)
    out = client.post("/dashboard/logout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303
    client.cookies.set(dash_session.COOKIE, captured, path="/dashboard")
    replay = client.get("/dashboard/jobs", headers=HTML, follow_redirects=False)
    assert replay.status_code == 303 and "/dashboard/login" in replay.headers["location"]
    assert client.get("/dashboard/jobs/rows").status_code == 401
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).select_from(DashboardSession)) == 0


def test_revoking_the_key_ends_every_session_made_from_it(client, alice, sessions):
    browsers = [client.__class__(client.app) for _ in range(3)]
    for browser in [client, *browsers]:
        sign_in(browser, alice)
    assert client.get("/dashboard/jobs", headers=HTML).status_code == 200
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).select_from(DashboardSession)) == 4
        revoke_key(s, alice.key[:11])
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).select_from(DashboardSession)) == 0
    for browser in [client, *browsers]:
        response = browser.get("/dashboard/jobs", headers=HTML, follow_redirects=False)
        assert response.status_code == 303


def test_a_refused_form_post_returns_to_its_page_after_sign_in(client, alice, sessions):
    """A post without a session (another site's, whose cookie SameSite kept back) is sent to
    sign in; afterwards the browser lands on the page the form belongs to, with a GET that
    works, not on the POST-only URL (a 405)."""
    jid = job_id(client, alice)
    for path, back in ((f"/dashboard/jobs/{jid}/cancel", f"/dashboard/jobs/{jid}"),
                       ("/dashboard/logout", "/dashboard/jobs")):  # fmt: skip
        refused = client.post(path, data={"csrf": "x"}, headers=HTML, follow_redirects=False)
        assert refused.status_code == 303
        assert unquote(refused.headers["location"]) == f"/dashboard/login?next={back}"
        form = client.get(refused.headers["location"], headers=HTML)
        assert f'name="next" value="{back}"' in form.text
    browser = client.__class__(client.app)
    landed = post_sign_in(browser, alice.key, f"/dashboard/jobs/{jid}")
    assert browser.get(landed.headers["location"], headers=HTML).status_code == 200
    assert client.get(f"/v1/jobs/{jid}", headers=alice.auth).json()["status"] == "queued"


def test_another_teams_job_is_the_same_404_page_as_a_missing_one(client, alice, bob):
    theirs = job_id(client, bob)
    sign_in(client, alice)
    other = client.get(f"/dashboard/jobs/{theirs}", headers=HTML)
    missing = client.get(f"/dashboard/jobs/{uuid.uuid4()}", headers=HTML)
    assert other.status_code == missing.status_code == 404
    assert other.text == missing.text
    assert "Not found" in other.text
    for path in (f"/dashboard/jobs/{theirs}/live", f"/dashboard/jobs/{theirs}/download/artifact"):
        assert client.get(path).status_code == 404


def test_jobs_list_shows_only_the_teams_jobs_and_filters_them(
    client, alice, bob, sessions, storage
):
    mine_ok = job_id(client, alice, settings={"preset": "fast"})
    mine_failed = job_id(client, alice)
    theirs = job_id(client, bob)
    succeed(sessions, storage, mine_ok)
    fail(sessions, mine_failed, "bad_data", "labels out of range")
    sign_in(client, alice)
    page = client.get("/dashboard/jobs", headers=HTML).text
    assert mine_ok in page and mine_failed in page and theirs not in page
    assert "20.3" + TIMES in page  # 953,000 / 47,000, the row's ratio
    assert "95.50 % → 95.10 %" in page
    only_failed = client.get("/dashboard/jobs?status=failed", headers=HTML).text
    assert mine_failed in only_failed and mine_ok not in only_failed
    fast = client.get("/dashboard/jobs?preset=fast", headers=HTML).text
    assert mine_ok in fast and mine_failed not in fast
    junk = client.get("/dashboard/jobs?status=nope&model=xyz&preset=zzz", headers=HTML)
    assert junk.status_code == 200 and mine_ok in junk.text
    rows = client.get("/dashboard/jobs/rows?status=failed")
    assert rows.headers["X-Active-Jobs"] == "0"
    assert mine_failed in rows.text and "<html" not in rows.text


def test_user_strings_are_escaped(client, alice, sessions, storage):
    hostile = "<script>alert(1)</script>"
    model = upload_id(client, alice, filename="<img src=x onerror=alert(1)>.pt")
    response = client.post("/v1/jobs", json={"model_id": model}, headers=alice.auth)
    jid = response.json()["id"]
    succeed(sessions, storage, jid, hostile=hostile)
    sign_in(client, alice)
    for path in (f"/dashboard/jobs/{jid}", "/dashboard/jobs", "/dashboard/models"):
        text = client.get(path, headers=HTML).text
        assert hostile not in text and "<img src=x" not in text, path


def test_a_job_without_labels_names_its_metric(client, alice, sessions, storage):
    jid = job_id(client, alice)
    succeed(sessions, storage, jid)
    with transaction(sessions) as s:
        job = s.get(Job, uuid.UUID(jid))
        job.result = {**job.result, "metric": "agreement", "accuracy_before": 100.0}
    sign_in(client, alice)
    row = client.get("/dashboard/jobs", headers=HTML).text
    assert re.search(r"100\.00\s*%?\s*→\s*95\.10\s*%?\s*<small[^>]*>agreement</small>", row), row
    assert client.get(f"/v1/jobs/{jid}", headers=alice.auth).json()["result"]["metric"] == (
        "agreement"
    )


def test_a_succeeded_job_shows_downloads_table_and_charts(client, alice, sessions, storage):
    jid = job_id(client, alice)
    succeed(sessions, storage, jid)
    sign_in(client, alice)
    page = client.get(f"/dashboard/jobs/{jid}", headers=HTML)
    assert page.status_code == 200
    text = page.text
    assert 'class="layers"' in text and '<th scope="row">fc1</th>' in text
    assert text.count("<svg") >= 2  # bytes per layer, accuracy through the stages
    assert "Deep Compression" in text
    for what in ("artifact", "report", "report.html"):
        assert f"/dashboard/jobs/{jid}/download/{what}" in text
    artifact = client.get(f"/dashboard/jobs/{jid}/download/artifact")
    assert artifact.status_code == 200 and artifact.content.startswith(b"WLSS")
    assert f'filename="{jid}.wlss"' in artifact.headers["content-disposition"]
    for name, value in (("X-Frame-Options", "DENY"), ("Cache-Control", "no-store")):
        assert page.headers[name] == value
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "<script>" not in text  # no inline script: the CSP would refuse it


def test_a_succeeded_job_whose_report_is_gone_still_shows_its_summary(
    client, alice, sessions, storage, tmp_path
):
    jid = job_id(client, alice)
    succeed(sessions, storage, jid)
    set_job(sessions, jid, report_key=f"jobs/{jid}/missing.json")
    sign_in(client, alice)
    text = client.get(f"/dashboard/jobs/{jid}", headers=HTML).text
    assert "could not be read from storage" in text
    assert '<th scope="row">fc1</th>' in text


def test_a_failed_job_shows_its_reason_and_what_to_do(client, alice, sessions):
    jid = job_id(client, alice)
    fail(sessions, jid, "arch_required", "the model is plain weights without an architecture")
    sign_in(client, alice)
    text = client.get(f"/dashboard/jobs/{jid}", headers=HTML).text
    assert "Why it failed" in text and "arch_required" in text
    assert "plain weights without an architecture" in text
    assert "torch.jit.save" in text  # the advice for this code
    assert "/download/" not in text


def test_a_running_jobs_progress_is_served_live(client, alice, sessions):
    jid = job_id(client, alice)
    set_job(sessions, jid, status="running", started_at=datetime.now(UTC), attempts=1,
            progress={"stage": "retrain", "layer": "fc2", "epoch": 3, "percent": 41.26,
                      "eta_seconds": 125.0, "message": "retraining"})  # fmt: skip
    sign_in(client, alice)
    page = client.get(f"/dashboard/jobs/{jid}", headers=HTML).text
    assert 'data-live="stage">retrain<' in page and "2 min 05 s" in page
    live = client.get(f"/dashboard/jobs/{jid}/live").json()
    assert live["status"] == "running" and live["layer"] == "fc2" and live["percent"] == 41.3
    set_job(sessions, jid, progress={"stage": "encode", "layer": "fc3", "percent": 70.0})
    live = client.get(f"/dashboard/jobs/{jid}/live").json()
    assert (live["stage"], live["layer"], live["percent"]) == ("encode", "fc3", 70.0)
    rows = client.get("/dashboard/jobs/rows")
    assert rows.headers["X-Active-Jobs"] == "1"


def test_forms_that_write_need_the_sessions_csrf_token(client, alice, bob):
    jid = job_id(client, alice)
    sign_in(client, alice)
    page = client.get(f"/dashboard/jobs/{jid}", headers=HTML).text
    token = csrf_of(page)
    refused = client.post(f"/dashboard/jobs/{jid}/cancel", data={"csrf": "x"}, headers=HTML)
    assert refused.status_code == 403
    assert client.get(f"/v1/jobs/{jid}", headers=alice.auth).json()["status"] == "queued"
    done = client.post(
        f"/dashboard/jobs/{jid}/cancel", data={"csrf": token}, headers=HTML,
        follow_redirects=False,
    )  # fmt: skip
    assert done.status_code == 303
    assert client.get(f"/v1/jobs/{jid}", headers=alice.auth).json()["status"] == "cancelled"
    assert client.post("/dashboard/logout", data={}, headers=HTML).status_code == 403
    out = client.post("/dashboard/logout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303 and 'wl_session=""' in out.headers["set-cookie"]


def test_models_page_counts_jobs_per_model(client, alice, bob, sessions, storage):
    model = upload_id(client, alice, filename="resnet-tiny.pt")
    first = client.post("/v1/jobs", json={"model_id": model}, headers=alice.auth).json()["id"]
    second = client.post("/v1/jobs", json={"model_id": model}, headers=alice.auth).json()["id"]
    succeed(sessions, storage, first, encoded=10_000, original=1_000_000)
    succeed(sessions, storage, second, encoded=20_000, original=1_000_000)
    upload_id(client, bob, filename="bobs-model.pt")
    sign_in(client, alice)
    text = client.get("/dashboard/models", headers=HTML).text
    assert "resnet-tiny.pt" in text and "bobs-model.pt" not in text
    assert "100" + TIMES in text  # the better of the two jobs
    assert f"/dashboard/jobs?model={model}" in text


def test_overview_figures(client, alice, bob, sessions, storage):
    ok = [job_id(client, alice) for _ in range(3)]
    bad = job_id(client, alice)
    job_id(client, alice)  # still queued
    for jid in ok:
        succeed(sessions, storage, jid, encoded=1 << 20, original=5 << 20)
    fail(sessions, bad, "time_limit", "too long")
    old = job_id(client, alice)
    set_job(sessions, old, created_at=datetime.now(UTC) - timedelta(days=40))
    job_id(client, bob)
    sign_in(client, alice)
    text = client.get("/dashboard/overview", headers=HTML).text
    assert 'data-figure="jobs">6<' in text
    assert 'data-figure="success">75 %<' in text  # 3 of 4 finished; queued ones not counted
    assert 'data-figure="saved">12 MiB<' in text  # 3 x (5 - 1) MiB
    assert "2 min 00 s" in text  # median run time
    today = datetime.now(UTC).date().isoformat()
    assert f'<th scope="row">{today}</th><td>5</td><td>3</td><td>1</td>' in text
    assert text.count('class="bar ok"') == 1


def test_new_teams_see_empty_pages_not_errors(client, sessions):
    team = make_team(sessions, "newcomers")
    sign_in(client, team)
    for path in PAGES:
        response = client.get(path, headers=HTML)
        assert response.status_code == 200, path
    assert "No jobs match" in client.get("/dashboard/jobs", headers=HTML).text


def test_a_budget_searched_job_shows_the_search(client, alice, sessions, storage):
    jid = job_id(client, alice)
    succeed(sessions, storage, jid)
    with transaction(sessions) as s:
        job = s.get(Job, uuid.UUID(jid))
        job.result = {**job.result, "search": {"within_budget": False, "budget": 0.5, "runs": 7,
                                               "seconds": 95.0, "stopped_early": True}}  # fmt: skip
    sign_in(client, alice)
    text = client.get(f"/dashboard/jobs/{jid}", headers=HTML).text
    assert "Not within the budget" in text and "7 runs in 1 min 35 s" in text
    assert "stopped at its time budget" in text


def test_file_names_lose_invisible_and_bidi_characters_and_are_isolated(client, alice, sessions):
    """``evil\\u202egnp.pt`` must not show as "evil...tp.png" nor flip the id beside it."""
    hostile = "evil\u202egnp.pt\u200b\u2028\u2066x\u2069"
    model = upload_id(client, alice, filename=hostile)
    stored = client.get(f"/v1/models/{model}", headers=alice.auth).json()["filename"]
    assert stored == "evilgnp.ptx"  # stripped on upload
    older = upload_id(client, alice, data=safetensors_bytes(9), filename="plain.pt")
    with transaction(sessions) as s:  # a name stored before uploads were cleaned
        s.get(Upload, uuid.UUID(older)).filename = "old\u202egnp.pt"
    client.post("/v1/jobs", json={"model_id": older}, headers=alice.auth)
    sign_in(client, alice)
    for path in ("/dashboard/models", "/dashboard/jobs"):
        page = client.get(path, headers=HTML).text
        for char in "\u202e\u200b\u2028\u2066":
            assert char not in page, (path, hex(ord(char)))
    models = client.get("/dashboard/models", headers=HTML).text
    assert "<bdi>evilgnp.ptx</bdi>" in models and "<bdi>oldgnp.pt</bdi>" in models
    jobs = client.get("/dashboard/jobs", headers=HTML).text
    assert '<td class="name"><bdi>oldgnp.pt</bdi></td>' in jobs
    assert "\u2068oldgnp.pt\u2069" in jobs  # the filter's <option>: isolated by FSI ... PDI
