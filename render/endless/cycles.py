"""The window's side of endless generation: the sampler process behind it, and which cycle plays next.

:class:`CycleFeed` starts :mod:`diffusion.rolling_record` (a child that dies with the
window, SIGKILL included), restarts it when it dies (after 1, 2, 4 ... 60 s while it keeps
dying young), and answers from the rolling store's files which complete cycle comes after the
one playing. It never blocks the window: every call reads a few small files.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Callable

from diffusion.common.children import dies_with_parent
from diffusion.common.errors import EntropicError
from diffusion.common.locks import lock_folder
from diffusion.store import rolling as rs
from diffusion.store.rolling_keep import cycles_ahead
from render.endless.plan import EndlessPlan

BACKOFF_MAX = 60.0
STABLE_AFTER = 60.0  # a sampler that ran this long before dying restarts at once


class CycleFeed:
    """Cycles for a live window: ``first()``, then ``next_after(cycle)`` each lap; ``poll()`` often."""

    def __init__(self, plan: EndlessPlan, log: Callable[[str], None], threads: int | None = None) -> None:
        self.plan = plan
        self.log = log
        self.threads = threads
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self._started = 0.0
        self._backoff = 1.0
        self._restart_at: float | None = None
        self._closed = False
        self.last_message = ""  # the sampler's last line
        self._lock = threading.Lock()  # poll() (the side thread) against close()
        rs.open_rolling(plan.root, plan.recipe)
        self._folder_lock = lock_folder(plan.root, "another endless window plays this rolling store")

    # -- the sampler process -------------------------------------------------------------------
    def start(self) -> None:
        """Start the sampler process (from the thread that will outlive it: see dies_with_parent)."""
        plan = self.plan
        line = rs.recorder_command(plan.root, plan.run, plan.settings, plan.keep,
                                   cycles_ahead(plan.keep, plan.cycle_bytes), plan.recipe, self.threads)
        self.process = subprocess.Popen(line, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True, errors="replace", **dies_with_parent())
        self._started = time.monotonic()
        threading.Thread(target=self._forward, args=(self.process.stderr,), name="entropic-sampler-log",
                         daemon=True).start()

    def _forward(self, stream) -> None:
        """The sampler's messages, line by line, into the window's log."""
        for line in stream:
            if line.startswith("entropic:"):  # its own lines; library warnings stay out of the log
                self.last_message = line.strip()
                self.log(line.rstrip())

    def poll(self) -> None:
        """Restart a sampler process that has died (logged once, with its exit status)."""
        with self._lock:
            if self._closed or self.process is None:
                return
            self._poll()

    def _poll(self) -> None:
        code = self.process.poll()
        now = time.monotonic()
        if code is None:
            return
        if self._restart_at is None:
            ran = now - self._started
            self._backoff = 1.0 if ran >= STABLE_AFTER else min(BACKOFF_MAX, self._backoff * 2 if self.restarts else 1.0)
            self._restart_at = now + self._backoff
            self.log(f"entropic: the endless sampler stopped (exit status {code}) after {ran:.0f} s; "
                     f"restarting it in {self._backoff:.0f} s, the window keeps playing")
        if now >= self._restart_at:
            self._restart_at = None
            self.restarts += 1
            self.start()

    def close(self) -> None:
        """Stop the sampler process (what it had committed stays; a cycle half-sampled resumes next time)."""
        with self._lock:
            self._closed = True
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        if self._folder_lock is not None:
            os.close(self._folder_lock)
            self._folder_lock = None

    # -- cycles ----------------------------------------------------------------------------------
    def first(self, wait: bool = True, progress: bool = True) -> int:
        """The cycle to play first (an unshown one; else the newest, shown again). With none
        complete yet (the first run), waits while the sampler records one."""
        said = False
        while True:
            cycle, again = rs.first_to_play(self.plan.root)
            if cycle is not None:
                if again:
                    self.log(f"entropic: no new cycle is ready; cycle {cycle} plays again while the next is sampled")
                return cycle
            if not wait:
                raise EntropicError(f"{self.plan.root}: no complete cycle to play")
            if progress and not said:
                self.log(f"entropic: sampling the first cycle ({self.plan.settings.count} drawings) into "
                         f"{self.plan.root}; the window opens when it is complete")
                said = True
            code = None if self.process is None else self.process.poll()
            if code is not None and rs.first_to_play(self.plan.root)[0] is None:
                time.sleep(0.2)  # its last words may still be in the pipe
                said_last = self.last_message.removeprefix("entropic: endless sampler: ")
                raise EntropicError(f"{self.plan.root}: the endless sampler stopped (exit status {code}) before the "
                                    f"first cycle was complete" + (f": {said_last}" if said_last else ""))
            time.sleep(0.2)

    def next_after(self, cycle: int, skip: set[int] = frozenset()) -> int | None:
        """The complete cycle after ``cycle`` (the lowest number above it, none of ``skip``), or None."""
        later = [n for n in rs.cycle_numbers(self.plan.root) if n > cycle and n not in skip]
        return next((n for n in later if rs.is_complete(self.plan.root, n)), None)

    def cycles(self) -> list[int]:
        """The cycles on disk (complete or being sampled)."""
        return rs.cycle_numbers(self.plan.root)

    def discard(self, cycle: int) -> None:
        """Remove a cycle that cannot be played (the sampler records it again)."""
        rs.remove_cycle(self.plan.root, cycle)

    def began(self, cycle: int) -> None:
        """Record that ``cycle`` began to play (what the sampler works ahead of)."""
        try:
            rs.record_shown(self.plan.root, cycle)
        except OSError as err:  # a full disk must not stop the window
            self.log(f"entropic: cannot note cycle {cycle} in {self.plan.root} ({err.strerror or err})")

    def store(self, cycle: int):
        """The folder of cycle ``cycle``'s store."""
        return rs.cycle_path(self.plan.root, cycle)
