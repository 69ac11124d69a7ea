"""Hypothesis profiles for the model-based test of identity.

``ci`` (the default, ``make test``): a bounded number of examples within a few minutes.
``soak`` (``make soak``): many more examples and steps; ``SOAK_EXAMPLES`` / ``SOAK_STEPS``
change them.  Either prints how many examples and steps ran."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings

SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("MODEL_EXAMPLES", "25")),
    stateful_step_count=int(os.environ.get("MODEL_STEPS", "40")),
    deadline=None,
    database=None,  # the same examples on every machine: CI reproduces what a developer saw
    derandomize=True,
    suppress_health_check=SLOW_OK,
    print_blob=True,
)
settings.register_profile(
    "soak",
    max_examples=int(os.environ.get("SOAK_EXAMPLES", "200")),
    stateful_step_count=int(os.environ.get("SOAK_STEPS", "60")),
    deadline=None,
    suppress_health_check=SLOW_OK,
    print_blob=True,
)
settings.register_profile(
    "explore",  # find a failure fast, without shrinking it (while changing the model)
    parent=settings.get_profile("soak"),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def _report_size() -> Iterator[None]:
    from tests.model.machine import TOTALS

    yield
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    print(
        f"\nmodel-based test ({profile}): {TOTALS['examples']} examples x "
        f"{TOTALS['steps']} steps in all ({TOTALS['sync_runs']} sync runs, "
        f"{TOTALS['crashes']} crashes asked, {TOTALS['deaths']} reached their point, "
        f"{TOTALS['crashes_dropped']} made way for later ones unreached, "
        f"{TOTALS['checks']} invariant checks, "
        f"{TOTALS['pairs_compared']} linked pairs compared, {TOTALS['links_expected']} email "
        f"links expected, {TOTALS['removals_watched']} removals watched)"
    )
    died = {k[len("died at ") :]: n for k, n in TOTALS.items() if k.startswith("died at ")}
    print("deaths by point: " + (", ".join(f"{k} {n}" for k, n in sorted(died.items())) or "none"))
