"""A pytest plugin: under CI=true, a skip for want of something installable fails."""

from __future__ import annotations

import os

import pytest

# Under CI=true a test that skips for want of something installable (kernel
# material, a compiler) fails instead: a green run must have run every check.
# Only skips that depend on the host CPU itself, which no install can change,
# say so with a reason starting "host:" and stay skips.
HOST_SKIP = "host:"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") != "true" or not report.skipped:
        return
    reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
    if reason.removeprefix("Skipped: ").startswith(HOST_SKIP):
        return
    report.outcome = "failed"
    report.longrepr = f"CI=true: this test would have skipped, which CI does not allow: {reason}"
