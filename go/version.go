package datacat

// Version is this client's version: the same as the daemon's (`datacat-daemon --version`)
// and the Python package's (python/tests/test_versions.py keeps them equal).
const Version = "0.1.0"
