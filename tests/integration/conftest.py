"""Fixtures shared by the admin-API and runtime tests: keys and a `dev tunnel-service` subprocess."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.admin_helpers import Keys, Service, assert_no_secrets, tunnel_service


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
