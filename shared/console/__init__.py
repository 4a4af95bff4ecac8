"""The web console (`/console/`): pages for the staff, supervisors and regulators, served by
every service. A backend for the frontend: each page calls the services' JSON API with the
signed-in user's token and renders its answer; its scripts and styles come from this package
(`static/`), nothing from another host."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from shared.console import admin, appeal, audit, dashboard
from shared.console.pages import PageAnswer, answer_page, router
from shared.console.session import PREFIX

STATIC_URL = PREFIX + "/static"


def install_console(app: FastAPI) -> None:
    """The pages and their static files, none of them in the OpenAPI document; a page a
    dependency answers instead of its route's (`PageAnswer`) answered as it is."""
    app.add_exception_handler(PageAnswer, answer_page)
    app.include_router(router)
    app.include_router(appeal.router)
    app.include_router(audit.router)
    app.include_router(dashboard.router)
    app.include_router(admin.router)
    app.mount(STATIC_URL, StaticFiles(packages=[("shared.console", "static")]), name="console")
