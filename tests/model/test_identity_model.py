"""The model-based test of identity (docs/two-way-sync.md, rule 8): a Hypothesis rule-based
state machine over both sandboxes and Azurite (``tests.model.machine``).  ``make test`` runs
the ``ci`` profile (bounded); ``make soak`` many more examples and steps."""

from __future__ import annotations

import pytest

from tests.model.machine import IdentityMachine

pytestmark = pytest.mark.slow

TestIdentityModel = IdentityMachine.TestCase
