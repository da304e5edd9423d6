"""The one thing pyproject.toml cannot declare stably: the optional C extension.

runner/_native/ holds the gateway's per-statement hot path in C. ``optional=True``:
where it cannot be built (no compiler), the install still succeeds and the
pure-Python twins run, with the same results (tests/native/test_speedups.py,
tests/native/test_native_properties.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "runner._native._speedups",
            sources=[
                "runner/_native/_speedups.c",
                "runner/_native/_lane.c",
                "runner/_native/_audit_queue.c",
                "runner/_native/_lane_upstream.c",
                "runner/_native/_contract.c",
            ],
            depends=[
                "runner/_native/_speedups_core.h",
                "runner/_native/_contract.h",
                "runner/_native/_audit_queue.h",
                "runner/_native/_lane.h",
            ],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        # PHI masking's row rewriter (runner.gateway.masking.rewrite's RowMask in C).
        Extension(
            "runner._native._mask",
            sources=["runner/_native/_mask.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
    ]
)
