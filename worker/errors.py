"""How a run stops early: each exception maps to one final state of the job row."""

from __future__ import annotations


class JobFailed(Exception):
    """The job cannot run as asked; ``code`` and ``message`` go to the job row as they are."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class JobCancelled(Exception):
    """A cancel was requested: stop now, store nothing."""


class JobLost(Exception):
    """The row is no longer ours (our lease expired and another run took the job)."""


class JobTimeLimit(Exception):
    """The run went past ``job_soft_time_limit`` (checked here too: the solo pool cannot)."""
