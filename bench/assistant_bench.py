"""How fast the offline ``codex assistant`` answers: index build, one answer, and the whole command.

    .venv/bin/python bench/assistant_bench.py [--runs 7]

Prints the median (and min) of: building the knowledge base over the shipped docs, help
topics and skill references (in-process, cold cache each run); composing one answer for each
question of the evaluation set (warm index); and a cold ``tunnel-client codex assistant
--offline QUESTION`` process, start to exit.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.assistant_eval import load_cases  # noqa: E402
from tunnel_core.codex import knowledge  # noqa: E402
from tunnel_core.codex.answer import compose  # noqa: E402


def _ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:.1f} ms (min {min(samples) * 1000:.1f} ms, n={len(samples)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    builds = []
    for _ in range(args.runs):
        knowledge.default_knowledge.cache_clear()
        start = time.perf_counter()
        kb = knowledge.default_knowledge()
        builds.append(time.perf_counter() - start)
    print(f"sections: {len(kb.sections)}")
    print(f"knowledge base build: {_ms(builds)}")

    answers = []
    for case in load_cases():
        start = time.perf_counter()
        compose(case.question, kb)
        answers.append(time.perf_counter() - start)
    print(f"one composed answer: {_ms(answers)}")

    binary = Path(sys.executable).with_name("tunnel-client")
    question = load_cases()[0].question
    cold = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run([str(binary), "codex", "assistant", "--offline", question], check=True,
                       stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        cold.append(time.perf_counter() - start)
    print(f"tunnel-client codex assistant --offline (cold process): {_ms(cold)}")


if __name__ == "__main__":
    main()
