"""A task whose module sets a variable when it is imported (as modules that configure a library do), for
tests/test_executor.py. Not imported by the tests' own process: the variable would be set there too."""

from __future__ import annotations

import os

from plait import task

os.environ["PLAIT_TEST_SET_ON_IMPORT"] = "yes"


@task
def set_on_import() -> str:
    return os.environ.get("PLAIT_TEST_SET_ON_IMPORT", "")
