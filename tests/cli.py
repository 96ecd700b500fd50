"""What the tests that run the installed `selftrain` command share: where the repository is, the command, a way
to run it, and a free loopback port. Imported as `tests.cli` (pytest's importlib mode names the test modules from
the rootdir, so `tests` is a namespace package); asserts here are rewritten by pytest (tests/conftest.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SELFTRAIN = str(Path(sys.executable).parent / "selftrain")


def run_cli(
    args: Sequence[str], env: Mapping[str, str], *, cwd: Path = REPO, timeout: float = 900, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`selftrain *args` run to its end in `cwd`, its output captured as text; with `check`, asserted to exit 0
    (the message: the last 3000 characters of its stdout and of its stderr)."""
    proc = subprocess.run([SELFTRAIN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
