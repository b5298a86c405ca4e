"""One version for the whole project: the workspace's (the services and the daemon's
``--version``), the Python package's, the Go module's and the changelog's newest entry."""

from __future__ import absolute_import

import io
import os
import re

import datacat

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(*path):
    with io.open(os.path.join(ROOT, *path), encoding="utf-8") as handle:
        return handle.read()


def test_every_part_has_the_workspace_version():
    workspace = re.search(r'^\[workspace\.package\][^\[]*?^version = "([^"]+)"',
                          read("Cargo.toml"), re.M | re.S).group(1)
    go = re.search(r'^const Version = "([^"]+)"', read("go", "version.go"), re.M).group(1)
    changelog = re.search(r"^## (\S+)", read("CHANGELOG.md"), re.M).group(1)
    assert (datacat.__version__, go, changelog) == (workspace, workspace, workspace)
