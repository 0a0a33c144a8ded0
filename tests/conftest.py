"""Shared pytest configuration."""

from __future__ import annotations


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 5:  # pytest.ExitCode.NO_TESTS_COLLECTED
        print("\nNO TESTS RAN: pytest collected no tests")
