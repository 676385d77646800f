"""``parley worker`` and ``parley beat`` as real processes, for the tests and benchmarks that
need them (and a worker to kill): each in its own process group, so SIGKILL takes whatever it
forked too, each logging to its own file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class JobProcesses:
    def __init__(self, env: dict[str, str], log_dir: Path | str) -> None:
        self.env = env
        self.log_dir = Path(log_dir)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, command: str, *args: str) -> subprocess.Popen[bytes]:
        """``command`` is ``worker`` or ``beat``; ``args`` its options."""
        path = self.log_dir / f"{command}-{len(self.procs)}.log"
        with path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "parley", command, *args],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL, as the OOM killer or a lost node would: nothing gets to clean up."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def logs(self, tail_chars: int = 3000) -> str:
        out = []
        for path in sorted(self.log_dir.glob("*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-tail_chars:]}")
        return "\n".join(out)
