"""Only the C extension lives here; everything else is in pyproject.toml.

bastion.sandbox._spawn is the sandbox's vfork launcher (see its source). It is optional:
without a C compiler the build goes on, and the sandbox starts through the slower exec
chain of bastion/sandbox/_launch.py instead (`bastion sandbox probe` says which is used).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "bastion.sandbox._spawn",
    sources=["src/bastion/sandbox/_spawn.c"],
    extra_compile_args=["-O2", "-Wall"],
    optional=True,
)])
