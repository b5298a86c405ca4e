"""setup.py for old pip / setuptools (Python 2.7).

Modern setuptools (61+) reads everything from pyproject.toml and this file
only calls setup(). Older setuptools ignore the [project] table, so the same
metadata is passed here.
"""

import io
import os
import re

import setuptools

HERE = os.path.dirname(os.path.abspath(__file__))


def _version():
    with io.open(os.path.join(HERE, "datacat", "__init__.py"), encoding="utf-8") as handle:
        return re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M).group(1)


def _setuptools_major():
    try:
        return int(setuptools.__version__.split(".")[0])
    except ValueError:
        return 0


if _setuptools_major() >= 61:
    setuptools.setup()
else:
    try:
        with io.open(os.path.join(HERE, "README.md"), encoding="utf-8") as handle:
            long_description = handle.read()
    except IOError:
        long_description = ""
    setuptools.setup(
        name="datacat",
        version=_version(),
        description="DataCat client: session-based application monitoring through a local datacat-daemon",
        long_description=long_description,
        long_description_content_type="text/markdown",
        license="MIT",
        packages=["datacat"],
        python_requires=">=2.7.4, !=3.0.*, !=3.1.*, !=3.2.*, !=3.3.*, !=3.4.*, !=3.5.*, !=3.6.*, !=3.7.*",
        extras_require={"test": ["pytest"]},
        classifiers=[
            "Programming Language :: Python :: 2",
            "Programming Language :: Python :: 2.7",
            "Programming Language :: Python :: 3",
            "License :: OSI Approved :: MIT License",
            "Topic :: System :: Monitoring",
        ],
    )
