"""Progress that suits where it goes: a live tqdm bar on a terminal, a periodic one-line summary in a log.

Every progress display in robot_rl goes through `progress_bar()`. When stderr is a terminal it is a tqdm
bar; when it is a file or a pipe, carriage-return redraws would fill the log with thousands of partial
lines, so the bar becomes a `LogProgress` that prints one plain line every `every_s` seconds or every
`every_fraction` of the total, whichever comes first, and a last line when it closes.

`progress=false` on any `robot-rl` command (or ROBOT_RL_PROGRESS=0 in the environment, which child
processes inherit) turns every bar off; messages passed to `write()` still print.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import IO, Callable, Iterable, Iterator

ENV = "ROBOT_RL_PROGRESS"   # "0": no bars in this process and its children
EVERY_S = 30.0
EVERY_FRACTION = 0.1


def progress_enabled() -> bool:
    """False when progress was turned off for this process (`progress=false` or ROBOT_RL_PROGRESS=0)."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@contextmanager
def progress_setting(enabled: bool | None) -> Iterator[None]:
    """Within the block, bars are on or off as `enabled` says (None: unchanged); restored afterwards, so
    a command run inside another (the pipeline's stages) does not change the caller's setting."""
    if enabled is None:
        yield
        return
    before = os.environ.get(ENV)
    os.environ[ENV] = "1" if enabled else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


def _is_terminal(stream: IO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # a closed or file-less stream
        return False


def progress_bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", initial: float = 0, leave: bool = True, enabled: bool = True,
                 stream: IO | None = None, every_s: float = EVERY_S, every_fraction: float = EVERY_FRACTION):
    """A progress display over `iterable` (or updated by hand with `update(n)` up to `total`).

    enabled=False (or progress turned off for the process) gives a silent bar. Both kinds offer
    iteration, update, set_postfix, set_postfix_str, write, close, `n` and use as a context manager."""
    stream = sys.stderr if stream is None else stream
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    on = enabled and progress_enabled()
    if on and _is_terminal(stream):
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=stream,
                    dynamic_ncols=True)
    return LogProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, enabled=on, stream=stream,
                       every_s=every_s, every_fraction=every_fraction)


class LogProgress:
    """tqdm's small interface for logs: one `desc: n/total unit (pct) elapsed, rate, postfix` line per
    `every_s` seconds or `every_fraction` of the total, and one when closed; never a carriage return."""

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", initial: float = 0, enabled: bool = True, stream: IO | None = None,
                 every_s: float = EVERY_S, every_fraction: float = EVERY_FRACTION,
                 clock: Callable[[], float] = time.monotonic):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.enabled, self.stream = enabled, sys.stderr if stream is None else stream
        self.every_s, self.every_fraction, self.clock = every_s, every_fraction, clock
        self.n = self._start_n = initial
        self._postfix = ""
        self._t0 = self._last_t = clock()
        self._last_n = initial
        self._closed = False

    # --- tqdm's interface -------------------------------------------------------------------------
    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        self._maybe_report()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = str(s)

    def refresh(self) -> None:
        self._maybe_report()

    def write(self, s: str) -> None:
        """A message of its own line (printed even when the bar is off, as tqdm.write does)."""
        print(s, file=sys.stdout, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.enabled and self.n != self._last_n:
            self._report()

    # --- the periodic line ------------------------------------------------------------------------
    def _maybe_report(self) -> None:
        if not self.enabled or self._closed:
            return
        now = self.clock()
        due = now - self._last_t >= self.every_s
        if self.total and self.every_fraction > 0:
            step = self.every_fraction * self.total
            due = due or int(self.n // step) > int(self._last_n // step)
        if due:
            self._report(now)

    def _report(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self._last_t, self._last_n = now, self.n
        elapsed = now - self._t0
        done = f"{_count(self.n)}/{_count(self.total)}" if self.total else _count(self.n)
        pct = f" ({100.0 * self.n / self.total:.0f} %)" if self.total else ""
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        line = f"{self.desc + ': ' if self.desc else ''}{done} {self.unit}{pct}, {_duration(elapsed)}, " \
               f"{rate:.3g} {self.unit}/s"
        if self._postfix:
            line += f", {self._postfix}"
        print(line, file=self.stream, flush=True)


def _count(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.2f}"


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
