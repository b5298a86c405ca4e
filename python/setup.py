"""setup.py: the wheel carries the release ``datacat-daemon``; old setuptools get the metadata.

``python -m pip wheel ./python`` (Python 3, with setuptools-rust from the build requirements)
builds the daemon from the workspace (``cargo``, ``../daemon``) and packs it beside the
package as a script, in one platform wheel that Python 2.7 and 3 both install
(``py2.py3-none-manylinux_2_<glibc>_<arch>``). setuptools-rust's ``RustBin`` rather than
maturin: maturin's binary wheels are tagged for Python 3 only, and this package's own build
stays setuptools, which Python 2.7 still reads.

Without setuptools-rust (a Python 2.7 source install) the package is pure Python, and the
client finds the daemon through ``$DATACAT_DAEMON_BIN`` or ``PATH``.

Modern setuptools (61+) reads the metadata from pyproject.toml; older ones get it here.
"""

import io
import os
import re
import sys

import setuptools

HERE = os.path.dirname(os.path.abspath(__file__))
DAEMON_MANIFEST = os.path.join(HERE, os.pardir, "daemon", "Cargo.toml")
DAEMON = "datacat-daemon"

try:
    from setuptools_rust import RustBin, Strip
except ImportError:
    RustBin = None


def _version():
    with io.open(os.path.join(HERE, "datacat", "__init__.py"), encoding="utf-8") as handle:
        return re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M).group(1)


def _setuptools_major():
    try:
        return int(setuptools.__version__.split(".")[0])
    except ValueError:
        return 0


def _glibc_minor(binary):
    """The newest glibc symbol version ``binary`` needs (its ``GLIBC_2.<n>`` references)."""
    with open(binary, "rb") as handle:
        needed = re.findall(br"GLIBC_2\.(\d+)", handle.read())
    return max((int(minor) for minor in needed), default=17)


def _find(root, name):
    for directory, _, files in os.walk(root):
        if name in files:
            return os.path.join(directory, name)
    return None


def _wheel_command():
    """bdist_wheel, tagged for every Python this package supports and for the glibc the
    daemon needs (manylinux, PEP 600): the wheel holds no Python extension, only the daemon.
    The daemon links only glibc, libm and libgcc_s, which manylinux allows."""
    try:
        from setuptools.command.bdist_wheel import bdist_wheel
    except ImportError:
        from wheel.bdist_wheel import bdist_wheel

    class bdist_wheel_with_daemon(bdist_wheel):
        def finalize_options(self):
            bdist_wheel.finalize_options(self)
            self.root_is_pure = False

        def get_tag(self):
            _, _, plat = bdist_wheel.get_tag(self)
            daemon = _find(self.bdist_dir, DAEMON)
            if daemon and sys.platform.startswith("linux") and plat.startswith("linux_"):
                plat = "manylinux_2_%d_%s" % (_glibc_minor(daemon), plat[len("linux_"):])
            return "py2.py3", "none", plat

    return bdist_wheel_with_daemon


def _rust_options():
    if RustBin is None or not os.path.exists(DAEMON_MANIFEST):
        return {}
    return {
        "rust_extensions": [
            RustBin(DAEMON, path=DAEMON_MANIFEST, args=["--locked"], strip=Strip.Debug)
        ],
        "cmdclass": {"bdist_wheel": _wheel_command()},
        "zip_safe": False,
    }


if _setuptools_major() >= 61:
    setuptools.setup(**_rust_options())
else:
    try:
        with io.open(os.path.join(HERE, "README.md"), encoding="utf-8") as handle:
            long_description = handle.read()
    except IOError:
        long_description = ""
    setuptools.setup(
        name="datacat-sessions",
        version=_version(),
        description="DataCat client: session-based application monitoring through a local datacat-daemon",
        long_description=long_description,
        long_description_content_type="text/markdown",
        license="MIT",
        packages=["datacat"],
        package_data={"datacat": ["py.typed", "*.pyi"]},
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
