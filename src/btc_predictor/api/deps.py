"""Request dependencies, declared once as ``Annotated`` aliases.

They are ``async def`` on purpose: they do no I/O, and a sync dependency costs a threadpool
round trip per request (the largest overhead measured on the /predict hot path).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import Engine

from btc_predictor.api.auth import key_matches
from btc_predictor.api.state import ServingState
from btc_predictor.config import Settings
from btc_predictor.jobs import queue


async def get_settings(request: Request) -> Settings:
    """The app's injected settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> Engine:
    """The app's database engine."""
    engine: Engine = request.app.state.engine
    return engine


async def get_serving(request: Request) -> ServingState:
    """The process's model and forecast cache."""
    serving: ServingState = request.app.state.serving
    return serving


async def utc_now(request: Request) -> datetime:
    """The app's clock (``create_app(clock=...)``; tests pass a fixed one)."""
    now: datetime = request.app.state.clock()
    return now


_bearer = HTTPBearer(
    auto_error=False, description="BTCP_API_KEY (generated into the data dir if unset)"
)


async def require_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Mutating endpoints: ``Authorization: Bearer <API key>``, compared in constant time."""
    given = credentials.credentials if credentials else None
    if not key_matches(given, request.app.state.api_key):
        raise HTTPException(
            401,
            "missing or wrong API key (send Authorization: Bearer <BTCP_API_KEY>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


@dataclass(frozen=True, slots=True)
class JobSubmitter:
    """Queues a job for a route and points ``Location`` at where it can be followed."""

    engine: Engine
    settings: Settings
    now: datetime
    response: Response

    def __call__(self, kind: str, params: BaseModel, *, location: str) -> dict[str, Any]:
        """The queued job; ``location`` is a path with ``{id}`` for the job's id."""
        job = queue.submit(self.engine, self.settings, kind=kind, params=params, now=self.now)
        self.response.headers["Location"] = location.format(id=job["id"])
        return job


async def get_submitter(request: Request, response: Response) -> JobSubmitter:
    """A submitter bound to this request's app and response."""
    state = request.app.state
    return JobSubmitter(state.engine, state.settings, state.clock(), response)


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
ServingDep = Annotated[ServingState, Depends(get_serving)]
NowDep = Annotated[datetime, Depends(utc_now)]
SubmitDep = Annotated[JobSubmitter, Depends(get_submitter)]
Authorized = Depends(require_key)
