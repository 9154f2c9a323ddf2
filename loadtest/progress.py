"""One refreshed status line on stderr while a run goes (a plain line every 5 s if not a TTY)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Callable


class Progress:
    """Call ``status`` twice a second and show what it returns; ``run()`` is the refresh task."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.status: Callable[[], str] = lambda: ""
        self.prefix = ""
        self.tty = sys.stderr.isatty()
        self.quiet = quiet
        self._last_plain = 0.0

    def show(self) -> None:
        if self.quiet:
            return
        line = f"[{self.prefix}] {self.status()}"
        if self.tty:
            width = shutil.get_terminal_size((120, 20)).columns - 1
            sys.stderr.write("\r" + line[:width].ljust(width))
            sys.stderr.flush()
        elif time.monotonic() - self._last_plain >= 5.0:
            self._last_plain = time.monotonic()
            print(line, file=sys.stderr, flush=True)

    def log(self, text: str) -> None:
        """A permanent line (clears the status line first)."""
        if self.tty and not self.quiet:
            sys.stderr.write("\r" + " " * (shutil.get_terminal_size((120, 20)).columns - 1) + "\r")
        print(text, file=sys.stderr, flush=True)

    async def run(self) -> None:
        while True:
            self.show()
            await asyncio.sleep(0.5)
