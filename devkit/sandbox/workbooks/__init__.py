"""A local Workbooks CRM that speaks the documented wire protocol (workbooks-api.md §7)."""

from .config import SandboxConfig, SimUser
from .harness import RunningSandbox, running_sandbox
from .server import create_app
from .store import SandboxState

__all__ = [
    "RunningSandbox",
    "SandboxConfig",
    "SandboxState",
    "SimUser",
    "create_app",
    "running_sandbox",
]
