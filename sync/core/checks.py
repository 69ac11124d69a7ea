"""One named finding of a check (``doctor``, the Workbooks schema, the Graph probes): ``ok``,
``warn`` (works, degraded or unverified) or ``fail`` (a feature cannot work), a one-line
message and the one-line fix.  Pure data, shared by every edge that checks something."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

CheckStatus = Literal["ok", "warn", "fail"]
STATUSES: tuple[CheckStatus, ...] = ("ok", "warn", "fail")


@dataclass(frozen=True)
class Check:
    """One named finding: ``ok``, ``warn`` (works, degraded or unverified) or ``fail`` (a
    feature cannot work), a message, and the one-line fix."""

    name: str
    status: CheckStatus
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "message": self.message, "fix": self.fix}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Check:
        """A check as ``as_dict`` wrote it; an unknown status reads as ``warn``."""
        found = [s for s in STATUSES if s == data.get("status")]
        status: CheckStatus = found[0] if found else "warn"
        return cls(
            str(data.get("name", "")),
            status,
            str(data.get("message", "")),
            str(data.get("fix", "")),
        )
