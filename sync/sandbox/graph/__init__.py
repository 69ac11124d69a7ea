"""A local Microsoft Graph for tests, the demo and benchmarks (mail, contacts, calendar, To Do,
subscriptions, throttling, auth).  Imports nothing from the client (`sync.graph`)."""

from sync.sandbox.graph.config import SandboxConfig
from sync.sandbox.graph.runner import SandboxHandle, running_sandbox
from sync.sandbox.graph.server import create_app

__all__ = ["SandboxConfig", "SandboxHandle", "create_app", "running_sandbox"]
