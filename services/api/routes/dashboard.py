"""The dashboard: HTML pages over what the service did (overview, items, users, jobs).

Thin like every route: :mod:`services.dashboard` gathers each page's content, a Jinja2
template lays it out. Read-only pages follow the reads' rules (open, or behind the API key
where ``LLMINS_PROTECT_READS`` says so); the one write button (a refresh or a training)
sends the key the operator types with the request, to the JSON API. Plotly's script is
served from the installed ``plotly`` package: no CDN, nothing to build.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from services import dashboard
from services.api.dependencies import PathId, RuntimeDep

router = APIRouter(prefix="/dashboard", tags=["dashboard"])
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")
templates.env.globals.update(job_seconds=dashboard.job_seconds, job_brief=dashboard.job_brief)
#: The route whose latency the overview charts (the template of the recommendations route).
RECOMMENDATIONS = "/v1/users/{user_id}/recommendations"
PLOTLY_JS = files("plotly") / "package_data" / "plotly.min.js"
STATIC = Path(__file__).resolve().parent.parent / "static"
#: PostgreSQL's text cannot hold NUL: a search for one is refused (422), not a 500.
NO_NUL = r"^[^\x00]*$"
#: A day: the scripts change only with the installed package.
CACHED = {"Cache-Control": "public, max-age=86400"}


def page(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


@router.get("", response_class=HTMLResponse)
def overview(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    served = request.app.state.metrics.recent.since(RECOMMENDATIONS)
    return page(request, "overview.html", **dashboard.overview(runtime, served))


@router.get("/items", response_class=HTMLResponse)
def items(
    request: Request,
    runtime: RuntimeDep,
    q: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
) -> HTMLResponse:
    return page(request, "items.html", query=q or "", items=dashboard.search(runtime, q))


@router.get("/items/{item_id}", response_class=HTMLResponse)
def item(request: Request, item_id: PathId, runtime: RuntimeDep) -> HTMLResponse:
    view = dashboard.item_view(runtime, item_id)
    if view is None:
        return page(request, "missing.html", 404, what=f"item {item_id!r}")
    return page(request, "item.html", **view)


@router.get("/users/{user_id}", response_class=HTMLResponse)
def user(request: Request, user_id: PathId, runtime: RuntimeDep) -> HTMLResponse:
    view = dashboard.user_view(runtime, user_id)
    if view is None:
        return page(request, "missing.html", 404, what=f"user {user_id!r}")
    return page(request, "user.html", **view)


@router.get("/jobs", response_class=HTMLResponse)
def jobs(
    request: Request,
    runtime: RuntimeDep,
    kind: Literal["", "warm_up", "refresh", "train"] = "",
    status: Literal["", "queued", "running", "succeeded", "failed"] = "",
) -> HTMLResponse:
    """Newest jobs, of one kind and status where chosen (the form's "any" sends "")."""
    view = dashboard.jobs_view(runtime, kind or None, status or None)
    return page(request, "jobs.html", **view)


@router.get("/static/plotly.min.js")
def plotly_script() -> FileResponse:
    return FileResponse(str(PLOTLY_JS), media_type="text/javascript", headers=CACHED)


@router.get("/static/{name}")
def static(name: Literal["dashboard.css", "dashboard.js"]) -> FileResponse:
    return FileResponse(STATIC / name, headers=CACHED)
