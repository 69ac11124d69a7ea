"""Imports every processor module so each registers itself with ``sync.engine.registry``.

The queue worker imports this once; the webhook never does (it must stay free of the Graph SDK).
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

PROCESSOR_MODULES = (
    "sync.engine.subscriptions",  # subscription upkeep and lifecycle events
    "sync.engine.emails",  # sent items -> Workbooks emails
    "sync.engine.people",  # Workbooks people/leads/contact details changes -> retroactive links
    "sync.engine.contacts",  # people <-> contacts
    "sync.engine.activities",  # activities <-> To Do tasks and events
)


def load() -> list[str]:
    """Import the processor modules present in this build; returns those loaded."""
    loaded = []
    for name in PROCESSOR_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise  # a real missing dependency inside the module: fail loudly
            log.debug("processor module %s is not part of this build", name)
            continue
        loaded.append(name)
    return loaded
