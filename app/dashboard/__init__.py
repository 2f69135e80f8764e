"""The internal dashboard: server-rendered pages under ``/dashboard`` for a team's jobs.

``mount(app)`` adds the routes, the local static assets and the HTML error pages; the API's
routes and their JSON errors are unchanged. ``/`` leads to the dashboard: it is the URL that
``make run`` prints and the first one a person opens.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from app.dashboard.pages import HERE, PREFIX, html_error
from app.dashboard.routes import router


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")
    app.state.html_error = html_error

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/jobs", status_code=307)
