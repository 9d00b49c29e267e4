"""The terminal and the log file of a pipeline run.

`third_party_to_file` sends Python warnings and the log records of third-party libraries (TensorFlow, hls4ml,
torch, ...) into the run's log file instead of the terminal, for the duration of the run only (everything it
changes is restored on exit). `steps` is a progress bar for a stage made of a few long steps: it names the
running step and its elapsed time refreshes while the step works.
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

#: loggers of the libraries that talk on their own; their records go to the log file only
THIRD_PARTY_LOGGERS = ("tensorflow", "absl", "h5py", "hls4ml", "torch", "brevitas", "qonnx", "onnx", "numba",
                       "distributed", "bokeh", "matplotlib", "fsspec", "cocotb", "py.warnings")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def third_party_to_file(log_file: Path) -> Iterator[logging.Handler]:
    """While inside: warnings.warn(...) and third-party log records are appended to `log_file`, not shown on
    the terminal. Yields the file handler (our own messages can be written to it too)."""
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    saved = []
    for name in THIRD_PARTY_LOGGERS:
        lg = logging.getLogger(name)
        saved.append((lg, list(lg.handlers), lg.propagate, lg.level))
        lg.handlers = [handler]
        lg.propagate = False
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # each distinct warning once per location, into the file
        logging.captureWarnings(True)
        try:
            yield handler
        finally:
            logging.captureWarnings(False)
            for lg, handlers, propagate, level in saved:
                lg.handlers, lg.propagate = handlers, propagate
                lg.setLevel(level)
            handler.close()


@contextmanager
def steps(stage: str, total: int, *, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A progress bar of `total` steps for one stage; call the yielded function with each step's description
    as the step starts (the bar advances past the previous one). Spinner and elapsed time refresh on their own."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn(f"[bold]{stage}[/bold]: {{task.description}}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True), disable=not enabled,
                        transient=True)
    task = progress.add_task("starting", total=total)
    started = [0]

    def step(description: str) -> None:
        if started[0]:
            progress.advance(task)
        started[0] += 1
        progress.update(task, description=description)

    with progress:
        yield step
        progress.update(task, completed=total, description="done")


def tee(terminal: Callable[[str], None], handler: logging.Handler) -> Callable[[str], None]:
    """A log function that shows a message on the terminal and appends it to the run's log file."""

    def log(message: str) -> None:
        terminal(message)
        handler.handle(logging.makeLogRecord({"name": "l1ad", "levelname": "INFO", "levelno": logging.INFO,
                                              "msg": message}))

    return log
