"""The compose check's workload: applications on this host, each with a real datacat-daemon
(started by the Python client), record sessions into a compose deployment's published NATS
port; then every session is checked through its published query API.

    python3 deploy/compose_workload.py run   --product P --sessions N --processes P --spread S
                                             --expected FILE
    python3 deploy/compose_workload.py check --product P --expected FILE --query-url URL
                                             --timeout S
    python3 deploy/compose_workload.py unsettled < jsz.json

`run` reads DATACAT_NATS_URL (the daemon user's URL) and DATACAT_DAEMON_BIN; `check` reads
DATACAT_READ_TOKEN. `check` prints one line and exits 1 if a session is missing, incomplete
or has a record twice, or the product has sessions beyond them. `unsettled` reads NATS's
`/jsz?accounts=true&consumers=true` and prints how many session batches ingest has yet to
acknowledge (pending, or delivered and not acknowledged).
"""

import argparse
import json
import multiprocessing
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

STREAM = "DATACAT"


def expected_events(index):
    return 5 + index % 7


def record(work):
    """Records the sessions `indices` one after another, spread over `spread` seconds; their
    ids and what each holds."""
    import datacat

    product, indices, spread = work
    pause = spread / max(len(indices), 1)
    done = {}
    for index in indices:
        time.sleep(pause)
        session = datacat.create_session(product=product, version="1.%d" % (index % 3))
        if session.session_id is None:
            raise SystemExit("session %d was not created: is the deployment up?" % index)
        session.update_state({"index": index, "scene": "menu"})
        for n in range(expected_events(index)):
            session.log_event("step", level="info", data={"n": n})
            session.log_metric("fps", 50 + n)
        session.update_state({"scene": "done"})
        session.end(reason="finished")
        done[session.session_id] = {"index": index, "events": expected_events(index)}
    return done


def run(args):
    chunks = [(args.product, list(range(p, args.sessions, args.processes)), args.spread)
              for p in range(args.processes)]
    pool = multiprocessing.Pool(args.processes)
    expected = {}
    for done in pool.map(record, chunks):
        expected.update(done)
    pool.close()
    with open(args.expected, "w") as f:
        json.dump(expected, f)
    print("recorded %d sessions" % len(expected))


def get(url):
    request = urllib.request.Request(url, headers={
        "Authorization": "Bearer " + os.environ["DATACAT_READ_TOKEN"]})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read().decode())


def problems(base, expected):
    """What is wrong with each expected session (empty when all are whole and single)."""
    wrong = {}
    for session_id, want in expected.items():
        try:
            session = get("%s/api/sessions/%s" % (base, session_id))
        except Exception as error:  # 404 while it is on its way
            wrong[session_id] = str(error)
            continue
        steps = [e for e in session["events"] if e["name"] == "step"]
        numbers = sorted(e["data"]["n"] for e in steps)
        state = {"index": want["index"], "scene": "done"}
        if session["status"] != "ended":
            wrong[session_id] = "status %s (%s), %d steps, last seq %s" % (
                session["status"], session["end_reason"], len(steps), session.get("last_seq"))
        elif numbers != list(range(want["events"])):
            wrong[session_id] = "events %s, want 0..%d once each" % (numbers, want["events"] - 1)
        elif session["state"] != state:
            wrong[session_id] = "state %s" % session["state"]
        elif len(session["metrics"]) != want["events"]:
            wrong[session_id] = "%d metric points" % len(session["metrics"])
    return wrong


def check(args):
    with open(args.expected) as f:
        expected = json.load(f)
    deadline = time.time() + args.timeout
    wrong = problems(args.query_url, expected)
    while wrong and time.time() < deadline:
        time.sleep(2)
        wrong = problems(args.query_url, {k: expected[k] for k in wrong})
    listed = get("%s/api/sessions?product=%s&limit=1000" % (args.query_url, args.product))["sessions"]
    extra = len(listed) - len(expected)
    if wrong or extra:
        for session_id, what in sorted(wrong.items())[:10]:
            print("  %s: %s" % (session_id, what))
        print("%d of %d sessions wrong, %d listed beyond them" % (len(wrong), len(expected), extra))
        return 1
    events = sum(want["events"] for want in expected.values())
    print("%d sessions, %d events and %d metric points, each once" % (len(expected), events, events))
    return 0


def unsettled(_args):
    jsz = json.load(sys.stdin)
    total = 0
    for account in jsz.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            if stream.get("name") != STREAM:
                continue
            for consumer in stream.get("consumer_detail") or []:
                total += consumer.get("num_pending", 0) + consumer.get("num_ack_pending", 0)
    print(total)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run")
    run_parser.add_argument("--product", required=True)
    run_parser.add_argument("--sessions", type=int, default=400)
    run_parser.add_argument("--processes", type=int, default=4)
    run_parser.add_argument("--expected", required=True)
    run_parser.add_argument("--spread", type=float, default=20,
                            help="seconds the sessions are spread over")
    check_parser = sub.add_parser("check")
    check_parser.add_argument("--product", required=True)
    check_parser.add_argument("--expected", required=True)
    check_parser.add_argument("--query-url", required=True)
    check_parser.add_argument("--timeout", type=float, default=120)
    sub.add_parser("unsettled")
    args = parser.parse_args()
    return {"run": run, "check": check, "unsettled": unsettled}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
