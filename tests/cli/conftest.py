"""Helpers for the CLI tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from labctl.cli import main

RunCli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    """Run `labctl ARGS...` in-process; return (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_:
            main(list(args))
            raise SystemExit(0)
        out, err = capsys.readouterr()
        return int(exit_.value.code or 0), out, err

    return run
