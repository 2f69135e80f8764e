"""The dashboard's pages: sign-in, jobs (list and detail, live), models and the team overview.

Every page depends on ``signed_in`` (a session cookie from an API key) and reads through the
same team-scoped lookups as the API, so another team's job is the same 404 here as there.
Live parts are small JSON or HTML fragments the page's script polls; nothing else is dynamic.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from app.dashboard import charts, queries, reports, session, views
from app.dashboard.deps import CheckedForm, User, cross_site, secret_of, signed_in
from app.dashboard.pages import PREFIX, render, safe_next, secured
from app.dashboard.views import advice, duration, seconds
from app.deps import SessionDep, SettingsDep, StorageDep, read_connection
from app.errors import UnauthorizedError
from app.limits import MAX_CURSOR
from app.models import FINISHED, JOB_STATUSES, Job
from app.routes.jobs import download_response
from app.schemas import BuiltinName
from app.services import jobs as job_service
from app.services import teams
from app.services.teams import TeamRef
from weightless_core.config.presets import NAMES as PRESETS
from weightless_core.reports import html_report

router = APIRouter(prefix=PREFIX, include_in_schema=False)
BUILTINS: tuple[str, ...] = BuiltinName.__args__  # type: ignore[attr-defined]
DOWNLOADS = {"artifact": "artifact", "report": "report", "report.html": "report_html"}


def _ctx(request: Request, user: session.DashboardUser, active: str | None, **rest: Any) -> dict:
    return {"user": user, "active": active, "csrf": request.state.csrf, **rest}


def _cookie_secure(request: Request) -> bool:
    return request.app.state.settings.environment == "production"


@router.get("")
@router.get("/")
def home() -> Response:
    return secured(RedirectResponse(f"{PREFIX}/jobs", 303))


def _signin_page(
    request: Request, next: str | None, *, failed: bool = False, refused: bool = False,
    status_code: int = 200,
) -> Response:  # fmt: skip
    """The sign-in form, with a fresh sign-in cookie and the CSRF token bound to it."""
    token = session.new_token()
    csrf = session.signin_token(secret_of(request), token)
    context = {"user": None, "active": None, "next": safe_next(next), "failed": failed,
               "refused": refused, "csrf": csrf}  # fmt: skip
    response = render(request, "login.html", context, status_code=status_code)
    response.set_cookie(
        session.SIGNIN_COOKIE, token, max_age=session.SIGNIN_SECONDS, path=session.SIGNIN_PATH,
        httponly=True, samesite="strict", secure=_cookie_secure(request),
    )  # fmt: skip
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    try:
        signed_in(request)
        return secured(RedirectResponse(safe_next(next), 303))
    except UnauthorizedError:
        pass
    return _signin_page(request, next)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    s: SessionDep,
    api_key: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Exchange an API key for a session cookie (the key itself is never stored in it).

    Only the form this site served may sign in (login CSRF): a post from another site, or
    without the token of the sign-in cookie, gets the form again (403) and changes nothing.
    """
    signin_cookie = request.cookies.get(session.SIGNIN_COOKIE)
    if cross_site(request) or not session.signin_ok(secret_of(request), signin_cookie, csrf):
        return _signin_page(request, next, refused=True, status_code=403)
    with read_connection(request) as conn:
        found = teams.find_active_key(conn, api_key.strip())
    if found is None:
        return _signin_page(request, next, failed=True, status_code=401)
    token = session.open_session(s, found[0])
    response = secured(RedirectResponse(safe_next(next), 303))
    response.set_cookie(
        session.COOKIE, token, max_age=session.LIFETIME_SECONDS,
        path=session.COOKIE_PATH, httponly=True, samesite="lax", secure=_cookie_secure(request),
    )  # fmt: skip
    response.delete_cookie(session.SIGNIN_COOKIE, path=session.SIGNIN_PATH, httponly=True,
                           samesite="strict", secure=_cookie_secure(request))  # fmt: skip
    return response


@router.post("/logout", dependencies=[CheckedForm])
def logout(request: Request, s: SessionDep, user: User) -> Response:
    """Sign out: the session ends on the server, not only in this browser."""
    session.close_session(s, user.cookie)
    response = secured(RedirectResponse(f"{PREFIX}/login", 303))
    response.delete_cookie(
        session.COOKIE, path=session.COOKIE_PATH, httponly=True, samesite="lax",
        secure=_cookie_secure(request),
    )  # fmt: skip
    return response


def _filters(
    status: str | None, model: str | None, dataset: str | None, preset: str | None
) -> queries.JobFilters:
    """Unknown filter values are ignored (a stale bookmark still opens the page)."""
    model_id = None
    if model:
        try:
            model_id = uuid.UUID(model)
        except ValueError:
            model_id = None
    return queries.JobFilters(
        status=status if status in JOB_STATUSES else None,
        model=model_id,
        dataset=dataset or None,
        preset=preset if preset in PRESETS else None,
    )


def _job_rows(s: SessionDep, user: User, filters: queries.JobFilters, cursor: str | None):
    page, next_cursor = queries.list_jobs(s, user.team_id, filters, cursor=cursor)
    ids = {i for j in page for i in (j.model_id, j.dataset_id) if i is not None}
    return page, next_cursor, queries.filenames(s, user.team_id, ids)


Filter = Annotated[str | None, Query(max_length=64)]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR)]


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request, s: SessionDep, user: User, status: Filter = None, model: Filter = None,
    dataset: Filter = None, preset: Filter = None, cursor: Cursor = None,
) -> Response:  # fmt: skip
    filters = _filters(status, model, dataset, preset)
    page, next_cursor, names = _job_rows(s, user, filters, cursor)
    models = queries.uploads(s, user.team_id, "model")
    datasets = queries.uploads(s, user.team_id, "dataset")
    context = _ctx(
        request, user, "jobs", jobs=page, names=names, filters=filters, next_cursor=next_cursor,
        cursor=cursor, statuses=JOB_STATUSES, models=models, datasets=datasets,
        builtins=BUILTINS, presets=PRESETS, duration=duration,
    )  # fmt: skip
    return render(request, "jobs.html", context)


@router.get("/jobs/rows", response_class=HTMLResponse)
def jobs_rows(
    request: Request, s: SessionDep, user: User, status: Filter = None, model: Filter = None,
    dataset: Filter = None, preset: Filter = None, cursor: Cursor = None,
) -> Response:  # fmt: skip
    """The jobs table's rows alone, polled by the list page while it is open."""
    filters = _filters(status, model, dataset, preset)
    page, _, names = _job_rows(s, user, filters, cursor)
    response = render(request, "job_rows.html", {"jobs": page, "names": names,
                                                 "duration": duration})  # fmt: skip
    response.headers["X-Active-Jobs"] = str(sum(j.status not in FINISHED for j in page))
    return response


def _job(s: SessionDep, user: User, job_id: str) -> Job:
    return job_service.get_job(s, TeamRef(user.team_id), job_id)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    request: Request, job_id: str, s: SessionDep, user: User, storage: StorageDep
) -> Response:
    job = _job(s, user, job_id)
    names = queries.filenames(s, user.team_id, {i for i in (job.model_id, job.dataset_id) if i})
    report, complete, sections = None, False, Markup("")
    if job.status == "succeeded":
        report, complete = reports.job_report(storage, job)
        sections = Markup(html_report.render_sections(report))
    context = _ctx(
        request, user, "jobs", job=job, names=names, report=report, complete=complete,
        sections=sections, live=_live(job), advice=advice(job.error_code),
    )  # fmt: skip
    return render(request, "job.html", context)


def _live(job: Job) -> dict[str, Any]:
    """What the job page's script refreshes while the job runs."""
    p = job.progress or {}
    percent = p.get("percent")
    return {
        "status": job.status,
        "icon": views.STATUS_ICONS[job.status],
        "stage": p.get("stage") or ("waiting for a worker" if job.status == "queued" else "-"),
        "layer": p.get("layer") or "-",
        "epoch": "-" if p.get("epoch") is None else str(p["epoch"]),
        "percent": None if percent is None else round(float(percent), 1),
        "eta": seconds(p.get("eta_seconds")) if job.status == "running" else "-",
        "message": p.get("message") or "",
        "elapsed": duration(job.started_at, job.finished_at),
        "started": views.when(job.started_at),
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
    }


@router.get("/jobs/{job_id}/live")
def job_live(job_id: str, s: SessionDep, user: User) -> dict[str, Any]:
    return _live(_job(s, user, job_id))


@router.post("/jobs/{job_id}/cancel", dependencies=[CheckedForm])
def job_cancel(job_id: str, s: SessionDep, user: User) -> Response:
    job_service.cancel_job(s, _job(s, user, job_id))
    return secured(RedirectResponse(f"{PREFIX}/jobs/{job_id}", 303))


@router.get("/jobs/{job_id}/download/{what}")
def job_download(
    job_id: str,
    what: Literal["artifact", "report", "report.html"],
    s: SessionDep,
    user: User,
    storage: StorageDep,
    settings: SettingsDep,
) -> Response:
    job = _job(s, user, job_id)
    return secured(download_response(job, storage, settings, DOWNLOADS[what]))  # type: ignore[arg-type]


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, s: SessionDep, user: User) -> Response:
    context = _ctx(
        request, user, "models", models=queries.uploads(s, user.team_id, "model"),
        datasets=queries.uploads(s, user.team_id, "dataset"),
        stats=queries.model_stats(s, user.team_id),
    )  # fmt: skip
    return render(request, "models.html", context)


@router.get("/overview", response_class=HTMLResponse)
def overview_page(request: Request, s: SessionDep, user: User) -> Response:
    figures = queries.overview(s, user.team_id)
    context = _ctx(
        request, user, "overview", o=figures, chart=charts.jobs_per_day(figures.per_day),
        days=queries.OVERVIEW_DAYS,
    )  # fmt: skip
    return render(request, "overview.html", context)


@router.get("/static/report.css")
def report_css() -> Response:
    """The HTML report's stylesheet, shared so the job page and the report look alike."""
    response = Response(html_report.CSS, media_type="text/css")
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
