"""config/reference.ini loads, and documents every option of every entry point."""
import importlib
import importlib.metadata
import re

import pytest

from stack.cli import main
from support import ROOT

REFERENCE = ROOT / "config" / "reference.ini"
GROUPS = ("paste.app_factory", "paste.filter_factory", "paste.composite_factory",
          "paste.server_factory", "paste.server_runner")


def entry_points():
    dist = importlib.metadata.distribution("stack")
    return sorted({(ep.name, ep.value.split(":")[0]) for ep in dist.entry_points if ep.group in GROUPS})


def test_reference_loads(capsys):
    assert main(["check", str(REFERENCE)]) == 0
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize("name, module", entry_points(), ids=[n for n, _ in entry_points()])
def test_every_option_is_documented(name, module):
    text = REFERENCE.read_text()
    assert re.search(rf"use = egg:stack#{name}\b", text) or name in ("mount",), \
        f"no section uses egg:stack#{name}"
    options = getattr(importlib.import_module(module), "OPTIONS", {})
    missing = [option for option in options
               if not re.search(rf"^(# )?(get |set )?{option} =", text, re.M)]
    assert not missing, f"egg:stack#{name}: undocumented options {missing}"
