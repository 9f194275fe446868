"""Jobs launched one at a time on the sweep's launcher and collected as each ends: what keeps a search's workers
busy (sweeplab.sweeps.optuna_search asks for the next trial the moment one ends).

Hydra's `Launcher.launch` takes a batch and returns when all of it has ended; a pool goes under it, to what each
launcher runs jobs with: loky's reusable executor for joblib (one job a call, FIRST_COMPLETED), submitit's
executor (one job a submission, polled), Ray's tasks (`ray.wait(num_returns=1)`). Every job still runs as the
launcher runs it (its process, Hydra's job set-up, the launcher's options); jobs never share a process's
threads, since Hydra's job state (the config, the working dir, logging) is per process. The basic launcher runs
one job at a time in this process; a launcher none of these fit runs a batch at a time (`Batches`).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from omegaconf import OmegaConf, open_dict

from sweeplab.core.atomic import write_text_atomically
from sweeplab.core.errors import UserError
from sweeplab.core.hydra_job import BASIC_LAUNCHER, usable_cores
from sweeplab.core.vocabulary import MULTIRUN_RECORD

log = logging.getLogger(__name__)
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT = ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
            "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher")
RAY = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
POLL_SECONDS = 0.5  # how often a submitit job's end is looked for


class Pool:
    """Jobs in flight by number; `next_done()` waits for whichever ends first."""

    def __init__(self, launcher: Any, slots: int) -> None:
        self.launcher, self.slots = launcher, slots
        self.running: dict[Any, int] = {}  # the launcher's handle -> job number
        self.prepared = False

    def __len__(self) -> int:
        return len(self.running)

    def submit(self, number: int, overrides: list[str]) -> None:
        if not self.prepared:  # on the first job: a search refused before it leaves no sweep dir
            self.prepare()
            keep_command(self.launcher.config)
            self.prepared = True
        log.info(f"\t#{number} : {' '.join(overrides)}")
        self.running[self.start(number, overrides)] = number

    def start(self, number: int, overrides: list[str]) -> Any:
        raise NotImplementedError

    def next_done(self) -> tuple[int, JobReturn]:
        raise NotImplementedError

    def prepare(self) -> None:
        """What Hydra's launchers do before their jobs (its globals, its log, the sweep dir), and what runs them."""
        config = self.launcher.config
        setup_globals()
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)


def keep_command(config: Any) -> None:
    """The sweep's config in its sweep dir, as Hydra's basic sweeper keeps it: what `sweeplab confirm` runs again."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomically(sweep_dir / MULTIRUN_RECORD, OmegaConf.to_yaml(config))


class InProcess(Pool):
    """The basic launcher: each job in this process, run when it is waited for (the launcher prepares it)."""

    def prepare(self) -> None:
        pass

    def start(self, number: int, overrides: list[str]) -> Any:
        return number, tuple(overrides)

    def next_done(self) -> tuple[int, JobReturn]:
        (number, overrides), _ = self.running.popitem()
        (job,) = self.launcher.launch([list(overrides)], initial_job_idx=number)
        return number, job


class Batches(InProcess):
    """A launcher that takes batches only (one that builds a cluster per call): the jobs submitted since the last
    batch are launched together when one is waited for, and handed back one by one."""

    def __init__(self, launcher: Any, slots: int) -> None:
        super().__init__(launcher, slots)
        self.ended: list[tuple[int, JobReturn]] = []

    def next_done(self) -> tuple[int, JobReturn]:
        if not self.ended:
            batch = sorted(self.running)  # (number, overrides), in job order
            self.running.clear()
            numbers = [number for number, _ in batch]
            consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # Hydra numbers a batch so
            for group in [batch] if consecutive else [[handle] for handle in batch]:
                jobs = self.launcher.launch([list(overrides) for _, overrides in group], initial_job_idx=group[0][0])
                self.ended += [(number, job) for (number, _), job in zip(group, jobs, strict=True)]
        return self.ended.pop(0)


class Loky(Pool):
    """hydra/launcher=joblib: each job submitted to loky's reusable executor (the workers joblib itself uses)."""

    def prepare(self) -> None:
        from joblib.externals.loky import get_reusable_executor

        super().prepare()
        self.executor = get_reusable_executor(max_workers=self.slots)
        self.singletons = Singleton.get_state()

    def start(self, number: int, overrides: list[str]) -> Future:
        from hydra_plugins.hydra_joblib_launcher._core import execute_job

        launcher = self.launcher
        return self.executor.submit(execute_job, number, overrides, launcher.hydra_context, launcher.config,
                                    launcher.task_function, self.singletons)

    def next_done(self) -> tuple[int, JobReturn]:
        done, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
        future = min(done, key=self.running.get)
        number = self.running.pop(future)
        try:
            return number, future.result()
        except Exception as error:  # the worker died (out of memory, killed): the job failed, the search goes on
            return number, failed_job(error)


class Submitit(Pool):
    """hydra/launcher=submitit_local or slurm: each job its own submission (a Slurm job, not an array), polled."""

    def prepare(self) -> None:
        super().prepare()
        self.executor = submitit_executor(self.launcher)

    def start(self, number: int, overrides: list[str]) -> Any:
        return self.executor.submit(self.launcher, overrides, "hydra.sweep.dir", number, f"job_id_for_{number}",
                                    Singleton.get_state())

    def next_done(self) -> tuple[int, JobReturn]:
        while True:
            for job, number in sorted(self.running.items(), key=lambda item: item[1]):
                if job.done():
                    del self.running[job]
                    try:
                        return number, job.results()[0]  # a job of several tasks: rank 0's
                    except Exception as error:  # submitit's word for a job that died (cancelled, out of time)
                        return number, failed_job(error)
            time.sleep(POLL_SECONDS)


def submitit_executor(launcher: Any) -> Any:
    """The executor Hydra's submitit launcher builds for a batch (its folder, its queue parameters), built once."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = dict(launcher.params)
    folder = params.pop("submitit_folder")
    timeouts = {f"{launcher._EXECUTOR}_max_num_timeout": params.pop("max_num_timeout")} if "max_num_timeout" in \
        params else {}
    executor = submitit.AutoExecutor(cluster=launcher._EXECUTOR, folder=folder, **timeouts)
    common = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{key if key in common else f"{launcher._EXECUTOR}_{key}": value
                                  for key, value in params.items()})
    return executor


class Ray(Pool):
    """hydra/launcher=ray: each job a Ray task, waited for with `ray.wait(num_returns=1)`."""

    def prepare(self) -> None:
        from hydra_plugins.hydra_ray_launcher._launcher_util import start_ray

        super().prepare()
        self.launcher.ray_cfg.init.setdefault("object_store_memory", 78643200)  # as Hydra's Ray launcher does
        start_ray(self.launcher.ray_cfg.init)

    def start(self, number: int, overrides: list[str]) -> Any:
        from hydra_plugins.hydra_ray_launcher._launcher_util import launch_job_on_ray

        launcher = self.launcher
        config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id, config.hydra.job.num = f"job_id_for_{number}", number
        return launch_job_on_ray(launcher.hydra_context, launcher.ray_cfg.remote, config, launcher.task_function,
                                 Singleton.get_state())

    def next_done(self) -> tuple[int, JobReturn]:
        import ray

        (ready,), _ = ray.wait(list(self.running), num_returns=1)
        number = self.running.pop(ready)
        try:
            return number, ray.get(ready)
        except Exception as error:  # the task's worker died
            return number, failed_job(error)


def failed_job(error: BaseException) -> JobReturn:
    job = JobReturn()
    job.status, job._return_value = JobStatus.FAILED, error
    return job


def pool_for(launcher: Any, config: Any) -> Pool:
    """The pool for the sweep's launcher, with as many slots as hydra.sweeper.n_jobs or the launcher says."""
    name = f"{type(launcher).__module__}.{type(launcher).__qualname__}"
    slots = trials_in_flight(name, config)
    if name == BASIC_LAUNCHER:
        return InProcess(launcher, 1)
    kinds = {JOBLIB: Loky, RAY: Ray, **dict.fromkeys(SUBMITIT, Submitit)}
    if name not in kinds:
        log.info(f"{name} launches batches only: the search asks {slots} trials at a time and waits for all of them")
        return Batches(launcher, slots)
    return kinds[name](launcher, slots)


def trials_in_flight(launcher: str, config: Any) -> int:
    """hydra.sweeper.n_jobs, else what the launcher runs side by side: joblib's workers, submitit's
    array_parallelism; refused where both are set and disagree. The basic launcher runs one at a time."""
    asked = config.hydra.sweeper.get("n_jobs")
    own = launcher_parallelism(launcher, config.hydra.launcher)
    if asked is not None and asked < 1:
        raise UserError(f"hydra.sweeper.n_jobs={asked} is invalid: run at least 1 trial at a time (or leave it unset "
                        "to run as many as the launcher runs side by side)")
    if launcher == BASIC_LAUNCHER:
        if asked not in (None, 1):
            raise UserError(f"hydra.sweeper.n_jobs={asked} needs a launcher that runs jobs side by side: add "
                            f"hydra/launcher=joblib (hydra.launcher.n_jobs={asked}), or leave n_jobs unset")
        return 1
    if asked is not None and own is not None and asked != own:
        raise UserError(f"hydra.sweeper.n_jobs={asked} but the launcher runs {own} jobs side by side: set one of them "
                        "(the search keeps as many trials running as the launcher runs)")
    return asked or own or 1


def launcher_parallelism(launcher: str, options: Any) -> int | None:
    if launcher == JOBLIB:
        n_jobs = options.get("n_jobs") or -1
        return n_jobs if n_jobs > 0 else max(1, usable_cores() + 1 + n_jobs)
    if launcher in SUBMITIT:
        return options.get("array_parallelism")
    return None

