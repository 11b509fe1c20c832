"""Fixtures shared by the admin-API and runtime tests: keys and a `dev tunnel-service` subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.admin_helpers import (
    Keys,
    Service,
    assert_no_secrets,
    base_env,
    kill_runtimes,
    tunnel_service,
)


@pytest.fixture(scope="module")
def keys() -> Keys:
    """Random admin and runtime keys for one test module."""
    return Keys()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Service]:
    """A `dev tunnel-service` subprocess with admin keys; checked afterwards for leaked secrets."""
    with tunnel_service(tmp_path_factory.mktemp("admin-svc"), keys) as svc:
        yield svc
    assert_no_secrets(keys, texts=[svc.output()])


@pytest.fixture
def tools_env(tmp_path: Path, service: Service, keys: Keys) -> Iterator[dict[str, str]]:
    """What the agent tools see: state and profiles under tmp_path, the service, both keys; runtimes killed after."""
    values = base_env(tmp_path, TUNNEL_CLIENT_STATE_DIR=str(tmp_path / "state"),
                      TUNNEL_CLIENT_PROFILE_DIR=str(tmp_path / "profiles"), CONTROL_PLANE_BASE_URL=service.base_url,
                      OPENAI_ADMIN_KEY=keys.admin, CONTROL_PLANE_API_KEY=keys.runtime)
    try:
        yield values
    finally:
        kill_runtimes(str(tmp_path))
