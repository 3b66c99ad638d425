#!/usr/bin/env python3
"""A sign-in flood against the real binaries, and what it costs the shop.

Starts a data service (every context on SQLite in a scratch directory), the
flooded storefront and a second storefront the catalog is read through, all on
loopback with their default sign-in limits, then runs `strata-load flood`
(bench/src/shop/flood.rs) against them:

1. idle: catalog reads (GET /v1/products) at a fixed rate, for their p99;
2. flood: sign-ins at FLOOD_RATE per second from FLOOD_ADDRESSES loopback
   source addresses (127.0.1.x) over FLOOD_ACCOUNTS accounts, one in four with
   a wrong password, while the same catalog reads run beside them.

The catalog is read through a storefront of its own, so that its latency shows
what the flood costs the data service (where hashing runs beside the other
contexts), not the flooded edge's own queue.

With two cores or more, the shop runs on all cores but the last and the load
generator on the last (FLOOD_PIN=0 turns this off): the flood comes from other
machines in real life, and a generator sharing the shop's cores measures
itself.

It prints the sign-ins' answers by status, the catalog reads' p50/p99 idle and
under the flood, and the data service's peak memory (VmHWM). Every refused
sign-in must be a clean 429 or 503 (problem+json); it exits 1 otherwise.

    cargo build --release -p strata-data-service -p strata-storefront -p strata-bench
    python3 scripts/signin-flood.py
    STRATA_BIN_DIR=target/debug python3 scripts/signin-flood.py

Traffic goes to 127.0.0.0/8 only.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import loadtest

BIN = os.environ.get("STRATA_BIN_DIR", "target/release")
SECONDS = os.environ.get("FLOOD_SECONDS", "10")
RATE = os.environ.get("FLOOD_RATE", "400")
ADDRESSES = os.environ.get("FLOOD_ADDRESSES", "100")
ACCOUNTS = os.environ.get("FLOOD_ACCOUNTS", "40")
READ_RATE = os.environ.get("FLOOD_READ_RATE", "100")
CORES = os.cpu_count() or 1
PIN = os.environ.get("FLOOD_PIN", "1") != "0" and CORES >= 2
SHOP_CPUS = f"0-{CORES - 2}" if PIN else None
LOAD_CPUS = f"{CORES - 1}" if PIN else None


def pinned(command, cpus):
    return ["taskset", "-c", cpus, *command] if cpus else command


def start(name, args, env):
    return loadtest.start(name, args, env, bin_dir=BIN, wrap=lambda command: pinned(command, SHOP_CPUS))


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    scratch = tempfile.mkdtemp(prefix="strata-flood-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATA_", "OTEL_"))}
    env["RUST_LOG"] = "warn"
    data, data_address = start("data-service", ["--listen", "127.0.0.1:0", "--data-dir", scratch], env)
    edge_env = dict(env)
    for context in ("CATALOG", "INVENTORY", "ORDERING", "IDENTITY"):
        edge_env[f"STRATA_{context}_ADDR"] = data_address
    edge_args = ["--listen", "127.0.0.1:0", "--dev", "--data-dir", scratch,
                 "--rate-limit-per-sec", "100000", "--rate-limit-burst", "100000", "--no-follower"]
    storefront, address = start("storefront", edge_args, edge_env)
    reading, read_address = start("storefront", edge_args, edge_env)
    processes = (storefront, reading, data)
    try:
        rss_idle = peak_rss_mib(data.pid)
        load = subprocess.run(pinned([f"{BIN}/strata-load", "flood", "--storefront", address, "--reader", read_address,
                                      "--rate", RATE, "--read-rate", READ_RATE, "--seconds", SECONDS,
                                      "--addresses", ADDRESSES, "--accounts", ACCOUNTS], LOAD_CPUS),
                              stdout=subprocess.PIPE, text=True)
        rss_flood = peak_rss_mib(data.pid)
        print(load.stdout, end="")
        if load.returncode != 0:
            return 1
        summary = json.loads(load.stdout)
        sign_ins, reads = summary["sign_ins"], summary["catalog_reads"]
        print(f"shop on CPUs {SHOP_CPUS or 'all'}, load generator on {LOAD_CPUS or 'all'}")
        print(f"sign-ins: {sign_ins['started']} at {RATE}/s from {ADDRESSES} addresses over {ACCOUNTS} accounts: "
              + ", ".join(f"{status}: {count}" for status, count in sign_ins["by_status"].items()))
        for name in ("idle", "flood"):
            print(f"catalog reads {name}: {reads[name]['count']}, p50 {reads[name]['p50_ms']:.2f} ms, "
                  f"p99 {reads[name]['p99_ms']:.2f} ms")
        print(f"catalog p99 under the flood / idle: {reads['p99_ratio']:.2f}x")
        print(f"data service peak memory (VmHWM): {rss_idle:.1f} MiB before, {rss_flood:.1f} MiB after the flood")
        return 0
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)


if __name__ == "__main__":
    sys.exit(main())
