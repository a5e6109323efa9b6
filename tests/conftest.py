"""Fixtures shared by the test files: the protocol's vectors and the real `smolmesh` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# The protocol lives beside the repo (shared/protocol), not in it: see PROTOCOL.md.
PROTOCOL_DIR = REPO.parent / "shared" / "protocol"


def smolmesh_command() -> list[str]:
    """The installed `smolmesh` console script beside this Python, else `python -m smolmesh`."""
    script = Path(sys.executable).with_name("smolmesh")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "smolmesh"]


@pytest.fixture(scope="session")
def protocol_dir() -> Path:
    return PROTOCOL_DIR


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    """The parsed vectors.json (byte strings still hex)."""
    with open(PROTOCOL_DIR / "vectors.json", encoding="utf-8") as file:
        result: dict[str, Any] = json.load(file)
    return result


RunSmolmesh = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def run_smolmesh() -> RunSmolmesh:
    """Run the real command: run_smolmesh("name-to-ipv6", "x") -> CompletedProcess (text).

    Bounded by a 60 s timeout; never raises for a non-zero exit, the test checks it.
    """
    command = smolmesh_command()

    def run(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    return run
