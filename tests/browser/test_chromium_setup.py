"""The browser tests' setup installs the distribution's Chromium when it is missing (what CI's
fresh machine needs), without questions, through sudo when not root; or stops with one message."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest

from tests.browser import harness


class FakeApt:
    """apt-get as seen by the setup: the commands run, and answers given in turn."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, uid: int, answers: list[int]) -> None:
        self.commands: list[list[str]] = []
        self.envs: list[dict[str, str]] = []
        self.answers = answers
        self.installed = False
        monkeypatch.setattr(os, "geteuid", lambda: uid)
        monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
        monkeypatch.setattr(harness, "has_cjk_font", lambda: True)
        monkeypatch.setattr(harness, "find_chromium", self.find)
        monkeypatch.setattr(subprocess, "run", self.run)

    def find(self) -> str | None:
        return "/usr/bin/chromium" if self.installed else None

    def run(self, command: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        self.commands.append(command)
        self.envs.append(options["env"])
        code = self.answers.pop(0)
        if code == 0 and "install" in command:
            self.installed = True
        return subprocess.CompletedProcess(command, code, stdout="", stderr=f"E: code {code}")


INSTALL = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]


def test_as_root_it_installs_chromium_updating_the_lists_when_the_first_try_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    apt = FakeApt(monkeypatch, uid=0, answers=[100, 0, 0])
    assert harness.ensure_chromium() == "/usr/bin/chromium"
    assert apt.commands == [INSTALL, ["apt-get", "update", "-q"], INSTALL]
    assert all(env["DEBIAN_FRONTEND"] == "noninteractive" for env in apt.envs)


def test_otherwise_through_sudo(monkeypatch: pytest.MonkeyPatch) -> None:
    apt = FakeApt(monkeypatch, uid=1000, answers=[0])
    assert harness.ensure_chromium() == "/usr/bin/chromium"
    assert apt.commands == [["sudo", "DEBIAN_FRONTEND=noninteractive", *INSTALL]]


def test_it_stops_the_run_with_one_message_when_it_cannot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeApt(monkeypatch, uid=0, answers=[100, 100, 100])
    with pytest.raises(pytest.exit.Exception) as stopped:
        harness.ensure_chromium()
    assert "sudo apt-get install chromium" in str(stopped.value)
    assert "E: code 100" in str(stopped.value)
    assert stopped.value.returncode == 3


def test_nothing_is_installed_when_it_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    apt = FakeApt(monkeypatch, uid=0, answers=[])
    apt.installed = True
    assert harness.ensure_chromium() == "/usr/bin/chromium"
    assert apt.commands == []
