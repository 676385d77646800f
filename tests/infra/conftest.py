"""Fixtures for the infrastructure tests: each stack is evaluated once per session under mocks."""

from __future__ import annotations

import warnings

import pytest

with warnings.catch_warnings():  # pulumi_aws flags its own deprecated modules when imported
    warnings.simplefilter("ignore", DeprecationWarning)
    import pulumi_aws  # noqa: F401

from .stack_harness import Evaluation, evaluate


@pytest.fixture(scope="session")
def dev() -> Evaluation:
    return evaluate("dev")


@pytest.fixture(scope="session")
def prod() -> Evaluation:
    return evaluate("prod")


@pytest.fixture(params=["dev", "prod"])
def stack(request: pytest.FixtureRequest) -> Evaluation:
    """Each test using this runs against both stacks."""
    return request.getfixturevalue(request.param)
