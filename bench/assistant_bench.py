"""How fast the offline ``codex assistant`` answers: index build, one answer, and the whole command.

    .venv/bin/python bench/assistant_bench.py [--runs 7]

Prints the median (and min) of: building the knowledge base over the shipped docs, help
topics and skill references (in-process, cold caches each run); composing one answer for each
question of the evaluation set (warm index); and a cold ``tunnel-client codex assistant
--offline QUESTION`` process, start to exit. Wall time and CPU time: on a shared machine the
CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.assistant_eval import load_cases  # noqa: E402
from tunnel_core.codex import knowledge, vocabulary  # noqa: E402
from tunnel_core.codex.answer import compose  # noqa: E402


def _ms(wall: list[float], cpu: list[float]) -> str:
    return (f"wall median {statistics.median(wall) * 1000:.1f} ms (min {min(wall) * 1000:.1f}), "
            f"CPU median {statistics.median(cpu) * 1000:.1f} ms (min {min(cpu) * 1000:.1f}), n={len(wall)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    wall, cpu = [], []
    for _ in range(args.runs):
        knowledge.default_knowledge.cache_clear()
        vocabulary.clear_caches()  # every build from cold, as in a new process
        start, start_cpu = time.perf_counter(), time.process_time()
        kb = knowledge.default_knowledge()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    print(f"sections: {len(kb.sections)}")
    print(f"knowledge base build: {_ms(wall, cpu)}")

    wall, cpu = [], []
    for case in load_cases():
        start, start_cpu = time.perf_counter(), time.process_time()
        compose(case.question, kb)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    print(f"one composed answer: {_ms(wall, cpu)}")

    binary = Path(sys.executable).with_name("tunnel-client")
    question = load_cases()[0].question
    wall, cpu = [], []
    for _ in range(args.runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([str(binary), "codex", "assistant", "--offline", question], check=True,
                       stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    print(f"tunnel-client codex assistant --offline (cold process): {_ms(wall, cpu)}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
