"""A cap on uploads in progress, per team and in all: more get 429 with ``Retry-After``.

Each upload holds a worker thread (``app.routes.uploads``) and, on S3, a multipart upload
for as long as its client keeps sending; without a cap, enough slow or stalled clients hold
every thread and nothing else is served (issue 13). The cap is below the thread pool's size,
so reads, job submissions and the dashboard always find a thread. Slots are counted in this
process, on the event loop (the dependency is async, so no lock is needed), and freed when
the upload's route returns, whatever its outcome.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from app.deps import CurrentTeam
from app.errors import TooManyRequestsError


@dataclass
class UploadSlots:
    """The uploads under way now; ``refused`` counts 429s and ``peak`` the most uploads at
    once since the process started."""

    total: int
    per_team: int
    retry_after: int
    teams: Counter[uuid.UUID] = field(default_factory=Counter)
    refused: int = 0
    peak: int = 0

    @property
    def in_use(self) -> int:
        return sum(self.teams.values())

    def take(self, team: uuid.UUID) -> None:
        if self.teams[team] >= self.per_team:
            self.refused += 1
            raise TooManyRequestsError(
                f"your team already has {self.per_team} uploads in progress, the most allowed "
                "at once; retry when one has finished",
                retry_after=self.retry_after,
            )
        if self.in_use >= self.total:
            self.refused += 1
            raise TooManyRequestsError(
                f"the service is receiving {self.total} uploads, the most it takes at once; "
                "retry shortly",
                retry_after=self.retry_after,
            )
        self.teams[team] += 1
        self.peak = max(self.peak, self.in_use)

    def give_back(self, team: uuid.UUID) -> None:
        self.teams[team] -= 1
        if self.teams[team] <= 0:
            del self.teams[team]


async def _upload_slot(request: Request, team: CurrentTeam) -> AsyncIterator[None]:
    slots: UploadSlots = request.app.state.upload_slots
    slots.take(team.id)
    try:
        yield
    finally:
        slots.give_back(team.id)


UploadSlot = Annotated[None, Depends(_upload_slot, scope="function")]
