"""`tunnel-client help troubleshooting` and docs/troubleshooting.md list the same 502/504 causes."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.cli_helpers import cli
from tunnel_core.wire.messages import FailureSource

DOCS = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"


def doc_causes() -> set[tuple[int, str]]:
    text = DOCS.read_text(encoding="utf-8")
    table = text.split("### 502 and 504 causes at a glance", 1)[1].split("\n### ", 1)[0]
    return {(int(m.group(1)), m.group(2)) for m in re.finditer(r"^\| (50[24]) \| `([a-z_]+)` \|", table, re.M)}


def help_causes() -> set[tuple[int, str]]:
    r = cli(["help", "troubleshooting"], {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    assert r.code == 0, r.err
    text = r.out
    return {(int(m.group(1)), m.group(2)) for m in re.finditer(r"^  (50[24]) ([a-z_]+) ", text, re.M)}


def test_help_topic_and_docs_list_the_same_502_and_504_causes() -> None:
    docs, topic = doc_causes(), help_causes()
    assert docs, "the causes table is gone from docs/troubleshooting.md"
    assert topic == docs, f"only in the docs: {sorted(docs - topic)}; only in the help topic: {sorted(topic - docs)}"


def test_every_failure_source_is_explained() -> None:
    from typing import get_args

    assert {cause for status, cause in doc_causes() if status == 502} == set(get_args(FailureSource))


def test_every_504_reason_of_the_service_is_explained() -> None:
    from tunnel_core.devservice import frontdoor

    source = Path(frontdoor.__file__).read_text(encoding="utf-8")
    reasons = set(re.findall(r'_NoAnswer\("([a-z_]+)"', source))
    assert reasons and reasons == {cause for status, cause in doc_causes() if status == 504}
