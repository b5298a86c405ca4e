#!/usr/bin/env python
"""A short "space game" run for the local-stack demo.

Creates three sessions of product "space-game" (two versions), drives nested
state, events of several levels and metrics through the per-process
datacat-daemon, ends the sessions and prints their ids, one per line:

    session 1/3 space-game 1.4.0 <session id>

Environment: DATACAT_NATS_URL (where the daemon publishes; default
nats://127.0.0.1:4222), DATACAT_DAEMON_BIN (the daemon binary, else the
usual lookup), DATACAT_QUERY_URL (the query service, informational). Exits with status 1 if any call was lost.
Runs on Python 2.7 and 3.x in a few seconds.
"""

from __future__ import print_function

import logging
import os
import random
import sys
import time

try:
    import datacat
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import datacat

PLAYS = [
    # (version, pilot, levels reached, crashes into the sun?)
    ("1.4.0", "ada", 3, False),
    ("1.5.0", "grace", 5, True),
    ("1.5.0", "linus", 2, False),
]


def play(number, version, pilot, levels, sun_crash, nats_url, rng):
    session = datacat.create_session(os.environ.get("DATACAT_QUERY_URL"), product="space-game",
                                     version=version, nats_url=nats_url)
    if session.session_id is None:
        print("session %d: could not be created: %s" % (number, session.client.last_error),
              file=sys.stderr)
        return session

    session.update_state({
        "pilot": pilot,
        "window_state": {"open": ["main menu"], "active": "main menu"},
        "player": {"level": 1, "health": 100},
        "settings": {"graphics": "high", "sound": True},
    })
    session.log_event("game_started", level="info", category="lifecycle",
                      labels=["demo"], data={"pilot": pilot, "seed": number})
    session.update_state({"window_state": {"open": ["main menu", "star map", "space probe"],
                                           "active": "space probe"}})

    health = 100
    memory = 180.0 + 20 * number
    for level in range(1, levels + 1):
        health = max(5, health - rng.randint(5, 30))
        memory += rng.uniform(4.0, 16.0)
        session.update_state({"player": {"level": level, "health": health}})
        session.log_metric("fps", round(rng.uniform(52.0, 61.0), 1), unit="fps",
                           tags=["scene:level-%d" % level])
        session.log_metric("memory_usage", round(memory, 1), unit="MB")
        session.log_metric("asteroids_destroyed", rng.randint(2, 9), metric_type="counter")
        session.heartbeat()
        if health < 40:
            session.log_event("low_health", level="warning", category="gameplay",
                              message="health dropped to %d" % health, data={"health": health})
        time.sleep(0.05)

    session.update_state({"window_state": {"open": ["main menu", "space probe"], "active": "main menu"},
                          "settings": {"sound": None}})  # None deletes the key
    if sun_crash:
        session.log_event("ship_destroyed", level="error", category="gameplay",
                          labels=["crash", "sun"], message="flew into the sun",
                          data={"level": levels, "health": 0, "cause": "sun"})
    else:
        session.log_event("level_complete", level="info", data={"level": levels})
    session.log_metric("memory_usage", round(memory + 3.5, 1), unit="MB")
    session.end(reason="player_quit")
    return session


def main():
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    nats_url = os.environ.get("DATACAT_NATS_URL")
    rng = random.Random(42)
    failed = 0
    for number, (version, pilot, levels, sun_crash) in enumerate(PLAYS, 1):
        session = play(number, version, pilot, levels, sun_crash, nats_url, rng)
        failed += session.get_stats()["failed"]
        if session.session_id is not None:
            print("session %d/%d space-game %s %s" % (number, len(PLAYS), version, session.session_id))
            sys.stdout.flush()
    if failed:
        print("%d call(s) were lost; see the log above" % failed, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
