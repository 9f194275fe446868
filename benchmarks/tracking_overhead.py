"""MLflow tracking overhead on the default run (digits + MLP, 10 epochs), measured side by side.

    python benchmarks/tracking_overhead.py [--pairs 3] [hydra overrides...]

Runs the same training with tracking off and on, alternating, in one process (these machines
are noisy: alternation spreads the noise over both), into a throwaway sqlite store. Reports the
fit loop's time (what the < 2% target is about: per-step and per-epoch logging) and, apart, the
time spent after the loop on figures, checkpoint and model upload. Because side-by-side timings
on a shared 2-core machine still wander by several percent, it also reports the time spent inside
the tracking callback's calls (queueing metrics on MLflow's async logger), which noise cannot inflate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from sweeplab.cli.train import config_dir
from sweeplab.config import register_configs
from sweeplab.engine import Callback, Trainer
from sweeplab.tracking.metrics import MetricLogger


class CallCost:
    """Total seconds spent in MetricLogger.log, the only tracking work inside the loop."""

    seconds = 0.0
    original = MetricLogger.log

    @classmethod
    def install(cls) -> None:
        def timed_log(logger: MetricLogger, values: dict[str, float], step: int) -> None:
            started = time.perf_counter()
            cls.original(logger, values, step)
            cls.seconds += time.perf_counter() - started

        MetricLogger.log = timed_log


class LoopTimer(Callback):
    """Wall and CPU time (all threads of this process: MLflow's logging threads included) of the loop."""

    def on_fit_start(self, trainer: Trainer) -> None:
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()

    def on_fit_end(self, trainer: Trainer) -> None:
        self.seconds = time.perf_counter() - self.started
        self.cpu_seconds = time.process_time() - self.cpu_started


def timed_run(overrides: list[str], tracking: bool, folder: Path) -> tuple[float, float, float, float]:
    """(loop seconds, whole-run seconds, seconds inside tracking calls, loop CPU seconds) of one run."""
    from sweeplab.run import train

    run_dir = tempfile.mkdtemp(dir=folder)
    with initialize_config_dir(config_dir()):
        cfg = compose("train", overrides=[
            "trainer.progress=false", "export.onnx=false", f"tracking.enabled={tracking}",
            f"tracking.uri=sqlite:///{folder / 'mlflow.db'}", f"paths.output_dir={run_dir}", *overrides,
        ])
    timer = LoopTimer()
    CallCost.seconds = 0.0
    started = time.perf_counter()
    train(cfg, extra_callbacks=[timer])
    return timer.seconds, time.perf_counter() - started, CallCost.seconds, timer.cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="off/on pairs to run")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both runs")
    args = parser.parse_args()
    register_configs()
    CallCost.install()
    results: dict[bool, list[tuple[float, float, float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as folder:
        timed_run(args.overrides + ["trainer.epochs=1"], True, Path(folder))  # warm-up: imports, store creation
        for pair in range(args.pairs):
            for tracking in (False, True) if pair % 2 == 0 else (True, False):  # ABBA: order effects cancel
                results[tracking].append(timed_run(args.overrides, tracking, Path(folder)))
    loop = {key: statistics.median(run[0] for run in runs) for key, runs in results.items()}
    cpu = {key: statistics.median(run[3] for run in runs) for key, runs in results.items()}
    after = {key: statistics.median(run[1] - run[0] for run in runs) for key, runs in results.items()}
    in_calls = statistics.median(run[2] / run[0] for run in results[True])
    print(f"fit loop, median of {args.pairs}: tracking off {loop[False]:.2f} s, on {loop[True]:.2f} s, "
          f"ratio {loop[True] / loop[False]:.3f} (overhead {100 * (loop[True] / loop[False] - 1):+.1f}%)")
    print(f"fit loop CPU time (all threads), median: off {cpu[False]:.2f} s, on {cpu[True]:.2f} s, "
          f"ratio {cpu[True] / cpu[False]:.3f} (overhead {100 * (cpu[True] / cpu[False] - 1):+.1f}%)")
    print(f"time inside tracking calls during the loop: {100 * in_calls:.2f}% of the loop (median)")
    print(f"after the loop (figures, checkpoint, pt2 model upload): off {after[False]:.2f} s, on {after[True]:.2f} s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
