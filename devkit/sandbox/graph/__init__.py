"""A local Microsoft Graph for tests, the demo and benchmarks (mail, contacts, calendar, To Do,
subscriptions, throttling, auth).  Imports nothing from the client (`sync.graph`)."""

from devkit.sandbox.graph.config import SandboxConfig
from devkit.sandbox.graph.runner import SandboxHandle, running_sandbox
from devkit.sandbox.graph.server import create_app

__all__ = ["SandboxConfig", "SandboxHandle", "create_app", "running_sandbox"]
