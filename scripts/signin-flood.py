#!/usr/bin/env python3
"""A sign-in flood against the real binaries, and what it costs the shop.

Starts a data service (every context on SQLite in a scratch directory) and a
storefront on loopback, registers one shopper, then:

1. idle: catalog reads (GET /v1/products, through a second storefront that
   is not flooded) one after another, for their p99;
2. flood: FLOOD_CLIENTS threads sign in as fast as they can for FLOOD_SECONDS,
   spread over FLOOD_ADDRESSES loopback source addresses (127.0.0.2, …), half
   with the right password and half with a wrong one, while the same catalog
   reads run beside them.

It prints the sign-ins' answers by status, the catalog reads' p50/p99 idle and
under the flood, and the data service's peak memory (VmHWM). Every refused
sign-in must be a clean 429 or 503 (problem+json); the script exits 1
otherwise. The storefront keeps its default sign-in limits (the point is to
see them work); its general rate limit is raised so that the catalog reads are
not what gets limited.

    python3 scripts/signin-flood.py            # release binaries (cargo build --release first)
    STRATA_BIN_DIR=target/debug python3 scripts/signin-flood.py

Traffic goes to 127.0.0.0/8 only.
"""

import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("STRATA_BIN_DIR", "target/release")
CLIENTS = int(os.environ.get("FLOOD_CLIENTS", "200"))
SECONDS = float(os.environ.get("FLOOD_SECONDS", "10"))
ADDRESSES = int(os.environ.get("FLOOD_ADDRESSES", "8"))
PASSWORD = "a flooding password"


def start(name, args, env):
    process = subprocess.Popen([f"{BIN}/{name}", *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = process.stdout.readline()
        if line.startswith(f"{name} listening on "):
            address = line.split()[3].removeprefix("http://")
            host, port = address.rsplit(":", 1)
            return process, (host, int(port))
    raise SystemExit(f"{name} did not start")


def request(address, method, path, body=None, source="127.0.0.1"):
    connection = http.client.HTTPConnection(*address, timeout=30, source_address=(source, 0))
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        connection.close()


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reads(address, stop, out):
    while not stop.is_set():
        started = time.perf_counter()
        status, _, _ = request(address, "GET", "/v1/products?page_size=20")
        out.append((time.perf_counter() - started) * 1000)
        if status != 200:
            out.append(float("inf"))


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round((len(values) - 1) * q))]


def main():
    scratch = tempfile.mkdtemp(prefix="strata-flood-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATA_", "OTEL_"))}
    env["RUST_LOG"] = "warn"
    data, data_address = start("data-service", ["--listen", "127.0.0.1:0", "--data-dir", scratch], env)
    edge_env = dict(env)
    for context in ("CATALOG", "INVENTORY", "ORDERING", "IDENTITY"):
        edge_env[f"STRATA_{context}_ADDR"] = "http://%s:%d" % data_address
    storefront, address = start("storefront", ["--listen", "127.0.0.1:0", "--dev", "--data-dir", scratch,
                                              "--rate-limit-per-sec", "100000", "--rate-limit-burst", "100000",
                                              "--no-follower"], edge_env)
    # The catalog is read through a storefront of its own, so that its
    # latency shows what the flood costs the data service (where hashing
    # runs beside the other contexts), not the flooded edge's own queue.
    reading, read_address = start("storefront", ["--listen", "127.0.0.1:0", "--dev", "--data-dir", scratch,
                                                 "--rate-limit-per-sec", "100000", "--rate-limit-burst", "100000",
                                                 "--no-follower"], edge_env)
    try:
        email = f"flood-{time.time_ns()}@shop.test"
        status, _, body = request(address, "POST", "/v1/accounts",
                                  {"email": email, "password": PASSWORD, "display_name": "Flood"})
        assert status == 201, body
        idle = []
        stop = threading.Event()
        reader = threading.Thread(target=reads, args=(read_address, stop, idle))
        reader.start()
        time.sleep(5)
        stop.set()
        reader.join()
        rss_idle = peak_rss_mib(data.pid)

        answers = {}
        unclean = []
        lock = threading.Lock()
        flood_stop = threading.Event()

        def sign_in(i):
            source = f"127.0.0.{2 + i % ADDRESSES}"
            password = PASSWORD if i % 2 == 0 else "not the password"
            while not flood_stop.is_set():
                status, content_type, body = request(address, "POST", "/v1/sessions",
                                                     {"email": email, "password": password}, source)
                with lock:
                    answers[status] = answers.get(status, 0) + 1
                    if status in (429, 503) and "problem+json" not in content_type:
                        unclean.append((status, body[:200]))
                    if status >= 500 and status != 503:
                        unclean.append((status, body[:200]))

        under = []
        stop = threading.Event()
        reader = threading.Thread(target=reads, args=(read_address, stop, under))
        threads = [threading.Thread(target=sign_in, args=(i,)) for i in range(CLIENTS)]
        reader.start()
        for thread in threads:
            thread.start()
        time.sleep(SECONDS)
        flood_stop.set()
        for thread in threads:
            thread.join()
        stop.set()
        reader.join()
        rss_flood = peak_rss_mib(data.pid)

        print(f"sign-ins: {CLIENTS} clients from {ADDRESSES} addresses for {SECONDS:.0f} s: "
              + ", ".join(f"{status}: {count}" for status, count in sorted(answers.items())))
        for name, values in (("idle", idle), ("under the flood", under)):
            print(f"catalog reads {name}: {len(values)}, p50 {percentile(values, 0.5):.1f} ms, "
                  f"p99 {percentile(values, 0.99):.1f} ms")
        print(f"catalog p99 under the flood / idle: {percentile(under, 0.99) / percentile(idle, 0.99):.2f}x")
        print(f"data service peak memory (VmHWM): {rss_idle:.1f} MiB idle, {rss_flood:.1f} MiB after the flood")
        if unclean:
            print(f"{len(unclean)} refusals were not clean problem+json 429/503: {unclean[:3]}")
            return 1
        return 0
    finally:
        for process in (storefront, reading, data):
            process.terminate()
            process.wait(timeout=20)


if __name__ == "__main__":
    sys.exit(main())
