"""What the README shows a user to copy works: its config example loads, and its systemd unit
passes `systemd-analyze verify` (where systemd's tools are installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from smolmesh.config import parse_config

README = Path(__file__).resolve().parents[1] / "README.md"


def code_block(language: str) -> str:
    """The README's one code block in `language`."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", README.read_text(), re.M | re.S)
    assert len(blocks) == 1, f"expected one {language} block in the README, found {len(blocks)}"
    return blocks[0]


def test_the_config_example_loads() -> None:
    config = parse_config(code_block("json").encode(), "README.md")
    assert config.node_name == "example_node"
    assert [type(t).__name__ for t in config.transports] == [
        "SecureTcpConnect",
        "SecureTcpListen",
        "LegacyTcpConnect",
        "LegacyTcpListen",
    ]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.skipif(shutil.which("smolmesh") is None, reason="needs the installed command")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = code_block("ini")
    command = shutil.which("smolmesh")
    assert "ExecStart=/usr/local/bin/smolmesh meshnode " in unit
    # The unit names where pip puts the command on most machines; verify it with where it is here.
    path = tmp_path / "smolmesh.service"
    path.write_text(unit.replace("/usr/local/bin/smolmesh", str(command)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
