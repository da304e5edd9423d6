"""The one thing pyproject.toml cannot declare stably: the optional C extension.

runner/_speedups.c and runner/_lane.c are the gateway's per-statement hot path. ``optional=True``:
where it cannot be built (no compiler), the install still succeeds and the
pure-Python twins run, with the same results (tests/test_speedups.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "runner._speedups",
            sources=["runner/_speedups.c", "runner/_lane.c"],
            depends=["runner/_speedups_core.h"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
