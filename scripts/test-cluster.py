#!/usr/bin/env python3
"""`make test-cluster`: faults on the replicated topology under load, and
nothing lost.

Brings up deploy/compose/ (`make up`, the images of `make images`) with the
storefronts' rate limits raised for the load, then for each fault runs
`strata-load shop` (bench/src/shop/shop.rs) through the balancer and
backoffice at a fixed rate, injects the fault while it runs, and reads the
truth back at the end (the load generator checks the invariants: every
acknowledged order exists once with its lines and total, no order that no
key explains, stock never negative nor oversold, reserved units exactly
those of confirmed orders).

Faults (CLUSTER_FAULTS, comma list; default all), each in a run of its own:
  kill      kill -9 (from the host, of the container's process) of one
            data-service replica of each group in turn; Docker restarts each.
  roll      every service to a new image tag (the same image retagged), one
            at a time: data services, storefronts, backoffice.
  db-cut    a data-service replica cut off from PostgreSQL: a black hole
            (iptables DROP in its network namespace, nothing refused), then
            `docker network disconnect` of another.
  edge-cut  the edges black-holed from one data-service replica.
  etcd      etcd stopped (SIGKILL) for 30 s, then started; a data-service
            replica restarts meanwhile. Every registration must be back in
            etcd within the lease TTL of its start.
  postgres  PostgreSQL restarted.
Asserted for every fault: 0 lost, 0 duplicated, every invariant holds, no
request past the deadline (10.5 s). kill, roll and etcd: 0 failed requests.
db-cut and edge-cut: the requests in flight on the cut path may fail, as 503
or 504 problem+json only, at most 1 % of those sent. postgres: what is asked
while the database is down may fail, as 503 or 504 only, and nothing fails
outside the outage or later than 10 s after PostgreSQL is back.
A request that could not connect (backoffice, one replica, while it rolls)
is sent again by the load generator and counted apart, not as failed.

Writes target/cluster/report.md and report.json (per fault: requests sent,
acknowledged, failed by status, lost, duplicated; p50/p99 before, during and
after; seconds to detect and to recover, from the storefronts' breakers), and
each run's requests.jsonl, summary.json and timeline.svg under
target/cluster/<fault>/. Exits 1 when an assertion fails.
Leaves the topology up with CLUSTER_KEEP=1 (else `make down` at the end).

Settings: CLUSTER_RATE (requests/s, 40), CLUSTER_SECONDS (per run, 60).
"""

import collections
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "cluster"
COMPOSE = ["docker-compose", "-p", "strata", "-f", str(ROOT / "deploy/compose/docker-compose.yml")]
RATE = float(os.environ.get("CLUSTER_RATE", "40"))
SECONDS = float(os.environ.get("CLUSTER_SECONDS", "60"))
LOAD = ROOT / "target" / "release" / "strata-load"
# docker-compose's environment for the topology: the storefronts' limits
# raised for a load that comes from one address.
TOPOLOGY_ENV = dict(os.environ, STRATA_RATE_LIMIT_PER_SEC="100000", STRATA_RATE_LIMIT_BURST="100000",
                    STRATA_SIGN_IN_PER_MINUTE="100000")


def say(message):
    print(f"test-cluster: {message}", file=sys.stderr, flush=True)


def run(command, **kwargs):
    return subprocess.run(command, check=True, text=True, **kwargs)


def container(service):
    return run([*COMPOSE, "ps", "-q", service], stdout=subprocess.PIPE).stdout.strip()


def inspect(service, template):
    return run(["docker", "inspect", "-f", template, container(service)], stdout=subprocess.PIPE).stdout.strip()


def wait_healthy(service, since, timeout=120):
    """Seconds from `since` until `service` is running again and healthy."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if inspect(service, "{{.State.Running}} {{.State.Health.Status}}") == "true healthy":
                return time.time() - since
        except subprocess.CalledProcessError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{service} did not come back healthy within {timeout} s")


def kill9(service):
    pid = inspect(service, "{{.State.Pid}}")
    say(f"kill -9 {service} (host pid {pid})")
    run(["kill", "-9", pid])


def fault_kill(timeline):
    """kill -9 one replica of each data-service group, one after the other."""
    time.sleep(SECONDS * 0.2)
    for service in ("catalog-inventory-1", "identity-ordering-1"):
        at = time.time()
        kill9(service)
        timeline.append({"t_ms": int(at * 1000), "event": f"kill -9 {service}"})
        back = wait_healthy(service, at)
        timeline.append({"t_ms": int((at + back) * 1000), "event": f"{service} healthy again"})
        say(f"{service} healthy again {back:.1f} s after the kill")
        time.sleep(SECONDS * 0.15)


def address(service, network="strata_back"):
    return inspect(service, "{{(index .NetworkSettings.Networks \"%s\").IPAddress}}" % network)


def black_hole(service, peer, on):
    """Drops every packet between `service` and `peer`, both ways, inside
    `service`'s network namespace: nothing is refused, nothing answers."""
    pid, ip = inspect(service, "{{.State.Pid}}"), address(peer)
    flag = "-I" if on else "-D"
    for chain, direction in (("OUTPUT", "-d"), ("INPUT", "-s")):
        run(["nsenter", "-t", pid, "-n", "iptables", flag, chain, direction, ip, "-j", "DROP"])


def cut(timeline, service, peer, how, hold):
    at = time.time()
    if how == "disconnect":
        run(["docker", "network", "disconnect", "strata_back", container(service)])
        what = f"{service} disconnected from the back network (PostgreSQL, etcd, callers)"
    else:
        black_hole(service, peer, True)
        what = f"{service} black-holed from {peer}"
    timeline.append({"t_ms": int(at * 1000), "event": what})
    say(what)
    time.sleep(hold)
    if how == "disconnect":
        run(["docker", "network", "connect", "--alias", service, "strata_back", container(service)])
    else:
        black_hole(service, peer, False)
    timeline.append({"t_ms": int(time.time() * 1000), "event": f"{service} path back"})
    back = wait_healthy(service, time.time())
    say(f"{service}: the path is back; healthy {back:.1f} s later")


def fault_db_cut(timeline):
    """A data-service replica cut off from PostgreSQL: once as a black hole
    (iptables in its network namespace), once disconnected from the network."""
    time.sleep(SECONDS * 0.15)
    cut(timeline, "catalog-inventory-1", "postgres", "black-hole", SECONDS * 0.25)
    time.sleep(SECONDS * 0.1)
    cut(timeline, "identity-ordering-1", "postgres", "disconnect", SECONDS * 0.25)


def fault_edge_cut(timeline):
    """Both storefronts cut off from one data-service replica (a black hole):
    their breakers open and calls go to the other replica."""
    time.sleep(SECONDS * 0.2)
    at = time.time()
    for storefront in ("storefront-1", "storefront-2", "backoffice"):
        black_hole(storefront, "catalog-inventory-1", True)
    timeline.append({"t_ms": int(at * 1000), "event": "the edges black-holed from catalog-inventory-1"})
    say("the edges black-holed from catalog-inventory-1")
    time.sleep(SECONDS * 0.5)
    for storefront in ("storefront-1", "storefront-2", "backoffice"):
        black_hole(storefront, "catalog-inventory-1", False)
    timeline.append({"t_ms": int(time.time() * 1000), "event": "path back"})


# Every replica's registration: 4 contexts, each on 2 replicas.
REGISTRATIONS = 8


def registrations():
    """The keys under the registry's prefix, as etcd has them now."""
    listed = subprocess.run(["docker", "exec", container("etcd"), "etcdctl", "get", "--prefix", "--keys-only",
                             "/strata/services/"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return {line for line in listed.stdout.splitlines() if line.strip()}


def fault_etcd(timeline):
    """etcd stopped for 30 s (or half the run, if shorter); meanwhile a
    data-service replica restarts, so it starts with no registry to write
    to. Asserted besides the load's figures: once etcd is back, every
    replica's registration is back within the lease TTL (5 s) and a little,
    the restarted one's included."""
    time.sleep(SECONDS * 0.15)
    at = time.time()
    run([*COMPOSE, "stop", "-t", "0", "etcd"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    timeline.append({"t_ms": int(at * 1000), "event": "etcd stopped"})
    say("etcd stopped")
    # A replica restarts with no registry to write to. Its deregistration
    # reaches no edge either, so the edges keep asking it through its
    # shutdown grace and its start: its NOT_SERVING answers open their
    # breakers, and an edge stays ready while the other replica serves.
    time.sleep(5)
    restarted = time.time()
    run([*COMPOSE, "restart", "catalog-inventory-2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    timeline.append({"t_ms": int(restarted * 1000), "event": "catalog-inventory-2 restarted while etcd is down"})
    say(f"catalog-inventory-2 restarted while etcd is down; healthy {wait_healthy('catalog-inventory-2', restarted):.1f} s later")
    time.sleep(max(0.0, at + min(30, SECONDS * 0.5) - time.time()))
    run([*COMPOSE, "start", "etcd"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    back = time.time()
    timeline.append({"t_ms": int(back * 1000), "event": "etcd started"})
    say(f"etcd started; healthy {wait_healthy('etcd', back):.1f} s later")
    deadline = back + 30
    while len(registrations()) < REGISTRATIONS and time.time() < deadline:
        time.sleep(0.2)
    found = registrations()
    took = time.time() - back
    timeline.append({"t_ms": int(time.time() * 1000),
                     "event": f"{len(found)} of {REGISTRATIONS} registrations in etcd, {took:.1f} s after its start"})
    say(f"{len(found)} of {REGISTRATIONS} registrations back {took:.1f} s after etcd started")
    if len(found) < REGISTRATIONS or took > LEASE_TTL_SECS + 5:
        REGISTRY_PROBLEMS.append(f"{len(found)} of {REGISTRATIONS} registrations {took:.1f} s after etcd started "
                                 f"(the lease TTL is {LEASE_TTL_SECS} s): {sorted(found)}")


# The registrations' lease TTL (services/rpc/src/registry.rs).
LEASE_TTL_SECS = 5
# What the etcd fault found wrong with the registry, beside the load's figures.
REGISTRY_PROBLEMS = []


def fault_postgres(timeline):
    """PostgreSQL restarted under load."""
    time.sleep(SECONDS * 0.2)
    at = time.time()
    run([*COMPOSE, "restart", "-t", "5", "postgres"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    timeline.append({"t_ms": int(at * 1000), "event": "PostgreSQL restart begun"})
    back = wait_healthy("postgres", at)
    timeline.append({"t_ms": int((at + back) * 1000), "event": "PostgreSQL healthy again"})
    say(f"PostgreSQL healthy again {back:.1f} s after the restart began")


def fault_roll(timeline):
    """Every service rolled to a new image tag, one replica at a time: the
    data services, then the storefronts, then backoffice. The new tag is the
    same image retagged (`next`)."""
    for app in ("data-service", "storefront", "backoffice"):
        run(["docker", "tag", f"strata/{app}:latest", f"strata/{app}:next"])
    env = dict(TOPOLOGY_ENV, STRATA_IMAGE_TAG="next")
    time.sleep(SECONDS * 0.1)
    for service in ("catalog-inventory-1", "catalog-inventory-2", "identity-ordering-1", "identity-ordering-2",
                    "storefront-1", "storefront-2", "backoffice"):
        at = time.time()
        run([*COMPOSE, "up", "-d", "--no-deps", service], env=env, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        back = wait_healthy(service, at)
        timeline.append({"t_ms": int(at * 1000), "event": f"{service} rolled to :next"})
        say(f"{service} on :next, healthy {back:.1f} s after its roll began")
    # The later faults run on :next: the same images.


FAULTS = {
    "kill": fault_kill,
    "roll": fault_roll,
    "db-cut": fault_db_cut,
    "edge-cut": fault_edge_cut,
    "etcd": fault_etcd,
    "postgres": fault_postgres,
}


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round((len(values) - 1) * q))]


class Breakers(threading.Thread):
    """Watches the storefronts' breakers while a fault runs: every 0.2 s each
    storefront's /metrics (on the front network, which the host reaches),
    every change of `strata_rpc_client_breaker_state{endpoint}` (0 closed,
    1 open, 2 half-open) noted with its time. This is how the callers
    detect a fault and see it recover: the seconds from the fault to the
    first breaker opening, and from the path's return until none is open."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.changes = []  # {"t_ms", "storefront", "endpoint", "state"}
        self.urls = {s: f"http://{address(s, 'strata_front')}:8080/metrics" for s in ("storefront-1", "storefront-2")}

    def run(self):
        known = {}
        while not self.stop.wait(0.2):
            for storefront, url in self.urls.items():
                try:
                    text = urllib.request.urlopen(url, timeout=1).read().decode()
                except OSError:
                    continue  # restarting (the roll): its breakers start again closed
                now = int(time.time() * 1000)
                for line in text.splitlines():
                    if not line.startswith("strata_rpc_client_breaker_state{"):
                        continue
                    labels, value = line.rsplit(" ", 1)
                    endpoint = labels.split('endpoint="', 1)[1].split('"', 1)[0]
                    state = int(float(value))
                    if known.get((storefront, endpoint), 0) != state:
                        known[(storefront, endpoint)] = state
                        self.changes.append({"t_ms": now, "storefront": storefront, "endpoint": endpoint,
                                             "state": state})

    def finish(self):
        self.stop.set()
        self.join()
        return self.changes


def breaker_seconds(changes, timeline):
    """Seconds from the first fault event to the first breaker opening
    (detect), and from the last fault event to when no breaker was open any
    more (recover); None when no breaker opened, "open at the end" when one
    was still open as the run ended."""
    if not timeline or not any(c["state"] for c in changes):
        return None, None
    first, last = timeline[0]["t_ms"], timeline[-1]["t_ms"]
    opened = [c["t_ms"] for c in changes if c["state"] and c["t_ms"] >= first]
    detect = (opened[0] - first) / 1000 if opened else None
    state, clear = {}, None
    for c in changes:
        state[(c["storefront"], c["endpoint"])] = c["state"]
        if c["t_ms"] >= first:
            clear = None if any(state.values()) else (clear or c["t_ms"])
    # Still open when the run ended (a breaker's pause doubles up to 30 s
    # while its probes fail): at least the time from the fault's last event
    # to the run's end, shown as such.
    recover = "open at the end" if clear is None else max(0.0, (clear - last) / 1000)
    return detect, recover


def chart(records, timeline, changes, title):
    """An SVG timeline of one fault's run: requests answered per second
    (failed ones in red), p99 latency per second (log scale), the fault's
    events as vertical lines and open breakers as shaded spans."""
    if not records:
        return ""
    t0 = min(r["due_ms"] for r in records)
    seconds = int((max(r["due_ms"] for r in records) - t0) / 1000) + 1
    ok, bad, lat = [0] * seconds, [0] * seconds, [[] for _ in range(seconds)]
    for r in records:
        i = int((r["due_ms"] - t0) / 1000)
        failed = r["status"] == 0 or r["status"] >= 500 or r["status"] == 429
        (bad if failed else ok)[i] += 1
        lat[i].append(r["latency_us"] / 1000)
    width, height, left, top, plot_h = 900, 360, 60, 30, 120
    x = lambda t: left + (width - left - 20) * t / max(seconds, 1)
    peak = max(max(a + b for a, b in zip(ok, bad)), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
             f'<text x="{left}" y="16" font-size="13">{title}</text>']
    # Open breakers: a span per (storefront, endpoint) while its state is not 0.
    spans, since = [], {}
    for c in changes:
        key = (c["storefront"], c["endpoint"])
        if c["state"] and key not in since:
            since[key] = c["t_ms"]
        elif not c["state"] and key in since:
            spans.append((since.pop(key), c["t_ms"]))
    end_ms = t0 + seconds * 1000
    spans += [(start, end_ms) for start in since.values()]
    for a, b in spans:
        xa, xb = x(max(0, (a - t0) / 1000)), x(min(seconds, (b - t0) / 1000))
        parts.append(f'<rect x="{xa:.1f}" y="{top}" width="{max(1.0, xb - xa):.1f}" height="{2 * plot_h + 40}" fill="#f4c542" opacity="0.25"/>')
    # Requests per second, stacked: answered, then failed.
    for i in range(seconds):
        h_ok, h_bad = plot_h * ok[i] / peak, plot_h * bad[i] / peak
        parts.append(f'<rect x="{x(i):.1f}" y="{top + plot_h - h_ok:.1f}" width="{max(1.0, x(1) - x(0) - 1):.1f}" height="{h_ok:.1f}" fill="#4a7bd0"/>')
        if bad[i]:
            parts.append(f'<rect x="{x(i):.1f}" y="{top + plot_h - h_ok - h_bad:.1f}" width="{max(1.0, x(1) - x(0) - 1):.1f}" height="{h_bad:.1f}" fill="#d04a4a"/>')
    parts.append(f'<text x="4" y="{top + 10}">{peak}/s</text><text x="4" y="{top + plot_h}">0</text>')
    # p99 per second on a log scale, 1 ms to 10 s.
    import math
    base = top + plot_h + 30
    y = lambda ms: base + plot_h - plot_h * (math.log10(max(ms, 1)) / 4)
    points = [f"{x(i + 0.5):.1f},{y(percentile(v, 0.99)):.1f}" for i, v in enumerate(lat) if v]
    parts.append(f'<polyline fill="none" stroke="#333" stroke-width="1.5" points="{" ".join(points)}"/>')
    for ms, label in ((1, "1 ms"), (10, "10 ms"), (100, "100 ms"), (1000, "1 s"), (10000, "10 s")):
        parts.append(f'<line x1="{left}" x2="{width - 20}" y1="{y(ms):.1f}" y2="{y(ms):.1f}" stroke="#ddd"/>'
                     f'<text x="4" y="{y(ms) + 4:.1f}">{label}</text>')
    for e in timeline:
        ex = x((e["t_ms"] - t0) / 1000)
        parts.append(f'<line x1="{ex:.1f}" x2="{ex:.1f}" y1="{top}" y2="{base + plot_h}" stroke="#2a2" stroke-dasharray="4 3"/>'
                     f'<title>{e["event"]}</title>')
    parts.append(f'<text x="{left}" y="{height - 8}">requests per second (blue answered, red failed); p99 per second (line, log scale); '
                 'green: the fault\'s events; yellow: a storefront\'s breaker open</text></svg>')
    return "\n".join(parts)


def phases(records, timeline):
    """p50/p99 (ms) before the first fault, during (first fault to last
    recovery) and after, and seconds from each fault to the first failed
    request and to the last one."""
    start = timeline[0]["t_ms"] if timeline else None
    end = timeline[-1]["t_ms"] if timeline else None
    buckets = {"before": [], "during": [], "after": []}
    for r in records:
        phase = "before" if start is None or r["due_ms"] < start else "during" if r["due_ms"] <= end else "after"
        buckets[phase].append(r["latency_us"] / 1000)
    out = {name: {"requests": len(v), "p50_ms": percentile(v, 0.5), "p99_ms": percentile(v, 0.99)}
           for name, v in buckets.items()}
    failed = sorted(r["due_ms"] for r in records if r["status"] == 0 or r["status"] >= 500 or r["status"] == 429)
    faults = [e for e in timeline if not e["event"].endswith("healthy again")]
    detect, recover = [], []
    for i, fault in enumerate(faults):
        until = faults[i + 1]["t_ms"] if i + 1 < len(faults) else float("inf")
        mine = [t for t in failed if fault["t_ms"] <= t < until]
        detect.append((mine[0] - fault["t_ms"]) / 1000 if mine else 0.0)
        recover.append((mine[-1] - fault["t_ms"]) / 1000 if mine else 0.0)
    out["seconds_to_first_failure"] = detect
    out["seconds_to_last_failure"] = recover
    return out


def one_fault(name, env):
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    say(f"fault {name}: {RATE:g} requests/s for {SECONDS:g} s")
    load = subprocess.Popen([str(LOAD), "shop", "--storefront", "http://127.0.0.1:8080",
                             "--backoffice", "http://127.0.0.1:8081", "--rate", str(RATE),
                             "--seconds", str(SECONDS), "--out", str(out)],
                            env=env, stdout=subprocess.PIPE, text=True)
    # The load's setup (products, shoppers) takes a moment: the fault's clock
    # starts once the generator says the load has begun.
    timeline = []
    deadline = time.time() + 120
    while not (out / "started").exists() and load.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    breakers = Breakers()
    breakers.start()
    if load.poll() is None:
        FAULTS[name](timeline)
    stdout, _ = load.communicate()
    changes = breakers.finish()
    if not (out / "summary.json").exists():
        raise SystemExit(f"fault {name}: the load generator ended without a summary (exit {load.returncode}): {stdout}")
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    failed_by_status = {}
    for r in records:
        if r["status"] == 0 or r["status"] >= 500 or r["status"] == 429:
            failed_by_status[str(r["status"])] = failed_by_status.get(str(r["status"]), 0) + 1
    result = {
        "fault": name,
        "sent": summary["sent"],
        "acknowledged": summary["acknowledged"],
        "failed": summary["failed"],
        "failed_by_status": failed_by_status,
        "failed_due_ms": sorted(r["due_ms"] for r in records
                                if r["status"] == 0 or r["status"] >= 500 or r["status"] == 429),
        "lost": summary["lost"],
        "duplicated": summary["duplicated"],
        "slowest_ms": max((r["latency_us"] for r in records), default=0) / 1000,
        "failure_details": dict(collections.Counter(
            f"{r['kind']} {r['status']}: {r.get('error') or ''}"[:200]
            for r in records if r["status"] == 0 or r["status"] >= 500 or r["status"] == 429).most_common()),
        "resent_for_want_of_a_connection": summary.get("resent_for_want_of_a_connection", 0),
        "violations": summary["violations"],
        "timeline": timeline,
        **phases(records, timeline),
        "breaker_changes": changes,
        "load_exit": load.returncode,
    }
    result["seconds_to_detect"], result["seconds_to_recover"] = breaker_seconds(changes, timeline)
    (out / "timeline.json").write_text(json.dumps(timeline, indent=2))
    (out / "timeline.svg").write_text(chart(records, timeline, changes, f"{name}: {RATE:g} requests/s"))
    if broken_by(result):
        # What the processes said, for a look at why (breakers, watches, health).
        logs = subprocess.run([*COMPOSE, "logs", "--no-color", "--timestamps"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
        (out / "compose.log").write_text(logs)
        say(f"fault {name}: the topology's logs are in {out / 'compose.log'}")
    return result


# The faults after which some requests may fail, and how they may: a replica
# cut off from its database, or the database itself restarting, fails the
# requests in flight on it until callers move away or it returns; each such
# failure must be a clean 503 (problem+json), answered within the deadline.
MAY_FAIL = {"db-cut": {"503", "504"}, "edge-cut": {"503", "504"}, "postgres": {"503", "504"}}
# ... and how many: at most this share of the requests sent; except where the
# database every replica shares is down (`postgres`): then what is asked
# during the outage fails (503 at once, as the breakers of every replica
# open), and the test is that nothing fails outside it, nor later than
# RECOVER_MS after PostgreSQL is back.
MAY_FAIL_SHARE = 0.01
OUTAGES = {"postgres"}
RECOVER_MS = 10_000
# No request may take longer than the edges' request budget (10 s), and a
# little for the way back.
DEADLINE_MS = 10_500


def broken_by(result):
    """What the run broke, in words (empty: nothing)."""
    problems = []
    allowed = MAY_FAIL.get(result["fault"], set())
    bad = {s: n for s, n in result["failed_by_status"].items() if s not in allowed}
    if bad:
        problems.append(f"failed requests {bad}")
    if result["fault"] in OUTAGES and result["timeline"]:
        down, back = result["timeline"][0]["t_ms"], result["timeline"][-1]["t_ms"]
        outside = [t for t in result["failed_due_ms"] if not down <= t <= back + RECOVER_MS]
        if outside:
            problems.append(f"{len(outside)} requests failed outside the outage and its {RECOVER_MS / 1000:g} s "
                            f"of recovery (the first {(outside[0] - down) / 1000:+.1f} s from its start)")
    elif result["failed"] > MAY_FAIL_SHARE * result["sent"]:
        problems.append(f"{result['failed']} of {result['sent']} requests failed (at most {MAY_FAIL_SHARE:.0%})")
    if result["slowest_ms"] > DEADLINE_MS:
        problems.append(f"a request took {result['slowest_ms']:.0f} ms, past the deadline")
    if result["lost"] or result["duplicated"] or result["violations"]:
        problems.append(f"{result['lost']} lost, {result['duplicated']} duplicated, "
                        f"{len(result['violations'])} invariants broken")
    if result["load_exit"]:
        problems.append(f"the load generator exited with {result['load_exit']}")
    if result["fault"] == "etcd":
        problems += REGISTRY_PROBLEMS
    return problems


def report(results):
    lines = ["# Faults on the replicated topology under load", "",
             f"{RATE:g} requests/s through the balancer and backoffice for {SECONDS:g} s per fault "
             "(`make test-cluster`; scripts/test-cluster.py).", "",
             "Detect: seconds from the fault to the first storefront breaker opening; recover: from the fault's "
             "last event (the path back, the process healthy again) until no breaker is open (— when none "
             "opened). First/last failure: seconds from the fault to the first and the last failed request. "
             "Each fault's timeline is drawn in `target/cluster/<fault>/timeline.svg`.", "",
             "| fault | sent | acknowledged | failed (by status) | lost | duplicated | resent (no connection) | slowest | p50/p99 before | during | after | detect s | recover s | first/last failure s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    def seconds(value):
        return "—" if value is None else value if isinstance(value, str) else f"{value:.1f}"
    def pp(phase):
        return "—" if phase["p50_ms"] is None else f"{phase['p50_ms']:.1f} / {phase['p99_ms']:.1f} ms"
    for r in results:
        failed = ", ".join(f"{s}: {n}" for s, n in sorted(r["failed_by_status"].items())) or "0"
        lines.append(f"| {r['fault']} | {r['sent']} | {r['acknowledged']} | {failed} | {r['lost']} | {r['duplicated']} | "
                     f"{r['resent_for_want_of_a_connection']} | {r['slowest_ms']:.0f} ms | {pp(r['before'])} | {pp(r['during'])} | {pp(r['after'])} | "
                     f"{seconds(r['seconds_to_detect'])} | {seconds(r['seconds_to_recover'])} | "
                     + ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(r["seconds_to_first_failure"], r["seconds_to_last_failure"]))
                     + " |")
    for r in results:
        lines += ["", f"## {r['fault']}: timeline", ""]
        if r["failure_details"]:
            lines += ["Failed requests, by what the answer said:", ""]
            lines += [f"- {n} × {detail}" for detail, n in r["failure_details"].items()] + [""]
        def at(t_ms):
            return f"{time.strftime('%H:%M:%S', time.gmtime(t_ms / 1000))}.{t_ms % 1000:03d}"
        events = [(e["t_ms"], e["event"]) for e in r["timeline"]]
        states = {0: "closed", 1: "open", 2: "half-open"}
        events += [(c["t_ms"], f"{c['storefront']}: breaker of {c['endpoint']} {states.get(c['state'], c['state'])}")
                   for c in r["breaker_changes"]]
        lines += [f"![{r['fault']}]({r['fault']}/timeline.svg)", ""]
        lines += [f"- {at(t)} {event}" for t, event in sorted(events)]
        if r["violations"]:
            lines += ["", "Invariants broken:", ""] + [f"- {v}" for v in r["violations"]]
    (OUT / "report.md").write_text("\n".join(lines) + "\n")
    (OUT / "report.json").write_text(json.dumps(results, indent=2))


def main():
    faults = [f for f in os.environ.get("CLUSTER_FAULTS", ",".join(FAULTS)).split(",") if f]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise SystemExit(f"unknown faults {unknown}; known: {sorted(FAULTS)}")
    OUT.mkdir(parents=True, exist_ok=True)
    run([os.environ.get("CARGO", "cargo"), "build", "--locked", "--release", "-p", "strata-bench", "--bin", "strata-load"],
        cwd=ROOT)
    run(["bash", "deploy/images/build.sh"], cwd=ROOT)
    env = dict(TOPOLOGY_ENV)
    run(["bash", "deploy/compose/up.sh"], cwd=ROOT, env=env)
    env["STRATA_ADMIN_EMAIL"] = env.get("STRATA_ADMIN_EMAIL", "admin@strata.dev")
    env["STRATA_ADMIN_PASSWORD"] = (ROOT / "deploy/compose/secrets/admin_password").read_text().strip()
    results = []
    try:
        for name in faults:
            results.append(one_fault(name, env))
    finally:
        if results:
            report(results)
            print((OUT / "report.md").read_text())
        if os.environ.get("CLUSTER_KEEP") != "1":
            subprocess.run([*COMPOSE, "down", "--volumes", "--remove-orphans"], cwd=ROOT)
    broken = [r for r in results if broken_by(r)]
    for r in broken:
        say(f"fault {r['fault']}: " + "; ".join(broken_by(r)))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
