"""Session ids minted by the client: time-ordered UUIDs (version 7).

The client names a session itself so that creating one never waits for the
daemon or the network: an async session has its id at once and registers it
from its background thread, and a registration retried after a lost answer
names the same session again instead of opening a second one.
"""

from __future__ import absolute_import

import os
import struct
import time
import uuid


def uuid7(now=None):
    """A version-7 UUID string: 48 bits of Unix milliseconds, then 74 random bits."""
    millis = int((time.time() if now is None else now) * 1000) & 0xFFFFFFFFFFFF
    raw = bytearray(struct.pack(">Q", millis)[2:] + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(raw)))
