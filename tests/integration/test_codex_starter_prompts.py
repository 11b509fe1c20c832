"""Every starter prompt of the plugin (``tunnel-client help plugin``, the plugin's defaultPrompt and MCP
prompts) runs to the end in real ``codex exec`` from a fresh CODEX_HOME, with a strict scripted model:
it fails when a tool it wants is not in that request's tool list, and answers only from what the
tools' results told it (see ``tests/support/starter_prompts.py``). The runs x quiet/busy matrix is
``bench/codex_starter_prompts.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.admin_helpers import Keys, Service, assert_no_secrets
from tests.support.codex_env import codex_path
from tests.support.fake_model import FakeModel, Say, start_fake_model
from tests.support.servers import BackgroundLoop
from tests.support.starter_prompts import SCENARIOS, Context, run_prompt

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fake(bg: BackgroundLoop) -> Iterator[FakeModel]:
    codex_path()
    model = start_fake_model(bg, lambda body: [Say("nothing scripted")])
    yield model
    assert model.server is not None
    model.server.stop()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_starter_prompt_runs_to_the_end_in_codex_exec(name: str, tmp_path: Path, service: Service, keys: Keys,
                                                     fake: FakeModel) -> None:
    run = run_prompt(Context(tmp_path, service, keys, fake), name, tmp_path / "run")
    assert run.tools_in_first_request, "the tunnel-client tools were not in Codex's first model request"
    assert run.ok, "\n".join(run.problems) + f"\nanswer: {run.answer}\ntools: {run.tools}"
    assert_no_secrets(keys, texts=[run.answer, *(s.output for s in run.steps)],
                      roots=[tmp_path / "run" / "state", tmp_path / "run" / "profiles"])
