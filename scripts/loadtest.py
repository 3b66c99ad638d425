#!/usr/bin/env python3
"""`make loadtest`: the whole shop under closed-loop load at rising
concurrency, on the one-process default and on the compose topology, with
what every request costs each process.

For each topology, `strata-load capacity` (bench/src/shop/capacity.rs) runs
its windows (browse, direct-browse, checkout; each at every concurrency) and
writes target/loadtest/<topology>.json; this script starts the topology,
names the meters (each process's or container's CPU, the data services'
/metrics, PostgreSQL's pg_stat_statements), and writes
target/loadtest/report.md from both files.

- one-process: the release binaries as `make run` starts them (every context
  on SQLite in one data service, storefront and backoffice in dev mode), in a
  fresh data directory under target/loadtest/.
- compose: `make up` with deploy/compose/loadtest.yml on top (the data
  services' /metrics, pg_stat_statements, and a network the host reaches them
  on); the load goes through the balancer, as a shop's would.

Settings: LOADTEST_TOPOLOGIES (one-process,compose), LOADTEST_CONCURRENCY
(1,4,16,64), LOADTEST_SECONDS (per window, 10), LOADTEST_WARMUP (2),
LOADTEST_KEEP=1 leaves the compose topology up.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "loadtest"
BIN = ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "release"
LOAD = BIN / "strata-load"
COMPOSE = ["docker-compose", "-p", "strata", "-f", str(ROOT / "deploy/compose/docker-compose.yml"),
           "-f", str(ROOT / "deploy/compose/loadtest.yml")]
CONCURRENCY = os.environ.get("LOADTEST_CONCURRENCY", "1,4,16,64")
SECONDS = os.environ.get("LOADTEST_SECONDS", "10")
WARMUP = os.environ.get("LOADTEST_WARMUP", "2")
# One client address: the storefronts' per-client limits out of the way.
LIMITS = {"STRATA_RATE_LIMIT_PER_SEC": "1000000", "STRATA_RATE_LIMIT_BURST": "1000000",
          "STRATA_SIGN_IN_PER_MINUTE": "100000"}
METRICS_PORT = 9464


def say(message):
    print(f"loadtest: {message}", file=sys.stderr, flush=True)


def run(command, **kwargs):
    return subprocess.run(command, check=True, text=True, **kwargs)


def capacity(topology, args, env):
    run([str(LOAD), "capacity", "--topology", topology, "--concurrency", CONCURRENCY, "--seconds", SECONDS,
         "--warmup", WARMUP, "--out", str(OUT), *args], env=env)
    return json.loads((OUT / f"{topology}.json").read_text())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, args, env, log=subprocess.DEVNULL, bin_dir=BIN, wrap=lambda command: command):
    """Starts the binary `name` of `bin_dir` (its command line passed through
    `wrap`: taskset, say) with its stderr to `log`; waits for its `<name>
    listening on ADDRESS` and returns the process and its URL. (Also
    scripts/signin-flood.py's.)"""
    process = subprocess.Popen(wrap([str(Path(bin_dir) / name), *args]), env=env, stdout=subprocess.PIPE,
                               stderr=log, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = process.stdout.readline()
        if line.startswith(f"{name} listening on "):
            address = line.split()[3]
            return process, address if address.startswith("http") else f"http://{address}"
        if not line and process.poll() is not None:
            break
    raise SystemExit(f"{name} did not start (its log: {log.name})")


def one_process():
    scratch = OUT / "one-process"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATA_", "OTEL_"))}
    metrics = f"127.0.0.1:{free_port()}"
    processes = []
    try:
        with open(scratch / "shop.log", "w") as log:
            data, data_address = start("data-service", ["--listen", "127.0.0.1:0", "--data-dir", str(scratch)],
                                       dict(env, STRATA_METRICS_LISTEN=metrics,
                                            STRATA_IDENTITY_RESERVED_EMAILS="admin@strata.dev"), log)
            processes.append(data)
            edge_env = dict(env, **LIMITS, STRATA_MAX_OPEN_ORDERS="100")
            for context in ("CATALOG", "INVENTORY", "ORDERING", "IDENTITY"):
                edge_env[f"STRATA_{context}_ADDR"] = data_address
            edge_args = ["--listen", "127.0.0.1:0", "--dev", "--data-dir", str(scratch)]
            storefront, storefront_url = start("storefront", edge_args, edge_env, log)
            processes.append(storefront)
            backoffice, backoffice_url = start("backoffice", edge_args, edge_env, log)
            processes.append(backoffice)
            admin = scratch / "dev-admin.json"
            deadline = time.time() + 30
            while not admin.exists() and time.time() < deadline:
                time.sleep(0.1)
            staff = json.loads(admin.read_text())
            say(f"one process: data service {data_address}, storefront {storefront_url}, backoffice {backoffice_url}")
            return capacity("one-process", [
                "--storefront", storefront_url, "--backoffice", backoffice_url,
                "--workloads", "browse,direct-browse,checkout", "--direct", data_address,
                "--cpu", f"data-service=pid:{data.pid}", "--cpu", f"storefront=pid:{storefront.pid}",
                "--cpu", f"backoffice=pid:{backoffice.pid}",
                "--metrics", f"data-service=http://{metrics}/metrics",
                "--metrics", f"storefront={storefront_url}/metrics",
            ], dict(env, STRATA_ADMIN_EMAIL=staff["email"], STRATA_ADMIN_PASSWORD=staff["password"]))
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def container(service):
    return run([*COMPOSE, "ps", "-q", service], stdout=subprocess.PIPE, cwd=ROOT).stdout.strip()


def address(service, network):
    template = '{{(index .NetworkSettings.Networks "strata_%s").IPAddress}}' % network
    return run(["docker", "inspect", "-f", template, container(service)], stdout=subprocess.PIPE).stdout.strip()


DATA_SERVICES = ("catalog-inventory-1", "catalog-inventory-2", "identity-ordering-1", "identity-ordering-2")
CONTAINERS = (*DATA_SERVICES, "storefront-1", "storefront-2", "backoffice", "balancer", "postgres", "etcd")


def compose():
    env = dict(os.environ, **LIMITS, STRATA_COMPOSE_OVERRIDE=str(ROOT / "deploy/compose/loadtest.yml"))
    run(["bash", "deploy/compose/up.sh"], cwd=ROOT, env=env)
    try:
        secrets = ROOT / "deploy/compose/secrets"
        # The balancer and backoffice at their addresses on the front network,
        # not through the ports Docker publishes on the host: its userland
        # proxy (docker-proxy, a host process no container accounts for) would
        # add a hop and CPU that no real deployment has.
        args = ["--storefront", f"http://{address('balancer', 'front')}:8080",
                "--backoffice", f"http://{address('backoffice', 'front')}:8081",
                "--workloads", "browse,direct-browse,checkout",
                "--direct", f"http://{address('catalog-inventory-1', 'meters')}:50051"]
        for service in CONTAINERS:
            args += ["--cpu", f"{service}=container:{container(service)}"]
        for service in DATA_SERVICES:
            args += ["--metrics", f"{service}=http://{address(service, 'meters')}:{METRICS_PORT}/metrics"]
        for service in ("storefront-1", "storefront-2"):
            args += ["--metrics", f"{service}=http://{address(service, 'front')}:8080/metrics"]
        postgres = (f"postgres://postgres:{(secrets / 'postgres_password').read_text().strip()}"
                    f"@{address('postgres', 'meters')}:5432/postgres")
        load_env = dict(env, STRATA_ADMIN_EMAIL=env.get("STRATA_ADMIN_EMAIL", "admin@strata.dev"),
                        STRATA_ADMIN_PASSWORD=(secrets / "admin_password").read_text().strip(),
                        STRATA_LOAD_SERVICE_TOKEN=(secrets / "storefront_token").read_text().strip(),
                        STRATA_LOAD_POSTGRES_URL=postgres)
        return capacity("compose", args, load_env)
    finally:
        if os.environ.get("LOADTEST_KEEP") != "1":
            subprocess.run([*COMPOSE, "down", "--volumes", "--remove-orphans"], cwd=ROOT)


def cores():
    return len(os.sched_getaffinity(0))


def ok(answer):
    return answer.startswith("2") or answer == "grpc:Ok"


def shop_cpu(window):
    """CPU ms per request of the shop's own processes (the load generator's left out)."""
    return sum(v for k, v in window["cpu_ms_per_request"].items() if k != "strata-load")


def window(result, workload, concurrency):
    return next((w for w in result["windows"] if w["workload"] == workload and w["concurrency"] == concurrency), None)


# The saga's calls that go out at once (services/storefront/src/orders.rs): its
# first three reads, then the order's placement beside its holds. A group costs
# its slowest call; the groups and the other steps follow one another.
AT_ONCE = [("the first reads", {"OrderService/ListOrders", "OrderService/GetOrder", "ProductService/BatchGetProducts"}),
           ("the placement", {"OrderService/PlaceOrder", "StockItemService/Reserve"})]


def render(results, cores):
    lines = ["# The whole shop under load", "",
             f"`make loadtest` (scripts/loadtest.py) on {cores} cores: closed loops, {SECONDS} s per window after "
             f"{WARMUP} s of warm-up. Latencies as the client saw them. CPU in ms per request, by process; "
             "`strata-load` is the load generator, on the same cores, and is left out of \"shop CPU\". gRPC calls "
             "are those the data services served (health and reflection left out); statements are PostgreSQL's "
             "(pg_stat_statements; the one-process default runs SQLite inside the data service, uncounted).", ""]
    for topology, result in results.items():
        lines += [f"## {topology}", "",
                  "| workload | c | req/s | p50 ms | p99 ms | p99.9 ms | not 2xx | machine CPU ms/req (cores busy) | shop CPU ms/req | by process | gRPC calls/req | statements/req |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for w in result["windows"]:
            bad = ", ".join(f"{a}: {n}" for a, n in w["answers"].items() if not ok(a)) or "0"
            by = ", ".join(f"{k} {v:.2f}" for k, v in sorted(w["cpu_ms_per_request"].items(), key=lambda kv: -kv[1])
                           if v >= 0.01)
            calls = sum(step["per_request"] for step in w["grpc"].values())
            statements = sum(w["statements_per_request"].values())
            lines.append(f"| {w['workload']} | {w['concurrency']} | {w['per_sec']:.0f} | {w['p50_us'] / 1000:.2f} | "
                         f"{w['p99_us'] / 1000:.2f} | {w['p999_us'] / 1000:.2f} | {bad} | "
                         f"{w['machine_cpu_ms_per_request']:.2f} ({w['busy_cores']:.2f}) | {shop_cpu(w):.2f} | {by} | "
                         f"{calls:.2f} | {statements:.1f} |")
        lines.append("")
    for topology, result in results.items():
        checkout = window(result, "checkout", 1)
        if checkout is None:
            continue
        lines += [f"## {topology}: where a checkout's time goes (c=1)", "",
                  "Each step as the data services timed it and as the storefront's client waited for it "
                  "(their histograms, √2 buckets, interpolated).", "",
                  "| step | calls per checkout | p50 ms, data service | p50 ms, storefront's client | p99 ms, data service | p99 ms, storefront's client |",
                  "|---|---|---|---|---|---|"]
        along = {"server": [0.0, 0.0], "client": [0.0, 0.0]}
        groups = {name: {"server": [0.0, 0.0], "client": [0.0, 0.0]} for name, _ in AT_ONCE}
        for method, step in sorted(checkout["grpc"].items(), key=lambda kv: -kv[1]["p50_us"]):
            client = checkout.get("grpc_client", {}).get(method, {"p50_us": 0.0, "p99_us": 0.0})
            group = next((name for name, methods in AT_ONCE if method in methods), None)
            lines.append(f"| {method}{f' (at once: {group})' if group else ''} | "
                         f"{step['per_request']:.2f} | {step['p50_us'] / 1000:.3f} | {client['p50_us'] / 1000:.3f} | "
                         f"{step['p99_us'] / 1000:.3f} | {client['p99_us'] / 1000:.3f} |")
            for side, figures in (("server", step), ("client", client)):
                if group:
                    slowest = groups[group][side]
                    groups[group][side] = [max(slowest[0], figures["p50_us"]), max(slowest[1], figures["p99_us"])]
                else:
                    along[side][0] += step["per_request"] * figures["p50_us"]
                    along[side][1] += step["per_request"] * figures["p99_us"]
        server = [along["server"][i] + sum(g["server"][i] for g in groups.values()) for i in (0, 1)]
        client = [along["client"][i] + sum(g["client"][i] for g in groups.values()) for i in (0, 1)]
        edge = checkout.get("http", {}).get("POST /v1/orders")
        lines += [f"| **the steps in a row** (the slowest of each group sent at once, then each other step) | | {server[0] / 1000:.3f} | "
                  f"{client[0] / 1000:.3f} | {server[1] / 1000:.3f} | {client[1] / 1000:.3f} |"]
        if edge:
            lines.append(f"| **checkout, as the storefront timed it** | | | {edge['p50_us'] / 1000:.3f} | | {edge['p99_us'] / 1000:.3f} |")
        lines += [f"| **checkout, as the load generator saw it** | | | {checkout['p50_us'] / 1000:.3f} | | {checkout['p99_us'] / 1000:.3f} |",
                  "", "At p50 (p99s do not add up: the slowest requests are not slow at every step):", "",
                  f"- the way to the data services and back, per step, on the steps' path (the storefront's client "
                  f"stack, the network, the data service's transport): {(client[0] - server[0]) / 1000:.2f} ms;"]
        if edge:
            lines += [f"- the storefront's own work around the calls (HTTP, authentication, the saga): "
                      f"{(edge['p50_us'] - client[0]) / 1000:.2f} ms;",
                      f"- the HTTP hop from the load generator and back: {(checkout['p50_us'] - edge['p50_us']) / 1000:.2f} ms;"]
        storefront_cpu = sum(v for k, v in checkout["cpu_ms_per_request"].items() if k.startswith("storefront"))
        lines += [f"- in all, {(checkout['p50_us'] - server[0]) / 1000:.2f} ms on top of the steps as the data "
                  f"services timed them. The storefront spent {storefront_cpu:.2f} ms of CPU per checkout; at c=1 "
                  "nearly all of it is on the checkout's path.", ""]
    for topology, result in results.items():
        rows = []
        for c in sorted({w["concurrency"] for w in result["windows"]}):
            browse, direct = window(result, "browse", c), window(result, "direct-browse", c)
            if browse is None or direct is None or not direct["p50_us"] or not shop_cpu(direct):
                continue
            rows.append(f"| {c} | {browse['p50_us'] / 1000:.2f} | {direct['p50_us'] / 1000:.2f} | "
                        f"{browse['p50_us'] / direct['p50_us']:.2f} | {shop_cpu(browse):.3f} | {shop_cpu(direct):.3f} | "
                        f"{shop_cpu(browse) / shop_cpu(direct):.2f} | {browse['per_sec']:.0f} | {direct['per_sec']:.0f} |")
        if rows:
            lines += [f"## {topology}: the edge's overhead on a browse", "",
                      "`GET /v1/products/{id}` through the storefront against its two calls (`GetProduct`, "
                      "`BatchGetStockItems`) made straight to the data service over one plain gRPC channel, "
                      "in the same run.", "",
                      "| c | browse p50 ms | direct p50 ms | ratio | browse shop CPU ms | direct shop CPU ms | ratio | browse req/s | direct req/s |",
                      "|---|---|---|---|---|---|---|---|---|", *rows, ""]
    one, many = results.get("one-process"), results.get("compose")
    if one and many:
        lines += ["## The capacity model, checked", "",
                  "The model: a topology serves at most its cores divided by the machine CPU one request costs "
                  "under load (measured at the highest concurrency: at c=1 a request also pays for waking idle "
                  "threads). It predicts the compose topology from the one-process figures, and each topology "
                  "from its own; both are set against the highest throughput measured. Where a topology stays "
                  "below its prediction with cores idle, something other than CPU bounds it (a lock, a queue).", "",
                  "| workload | one-process: machine CPU ms/req | predicted | measured | compose: machine CPU ms/req | "
                  "predicted from one-process | predicted from its own | measured | cores busy |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for workload in ("browse", "checkout"):
            top = max(w["concurrency"] for w in one["windows"])
            a, b = window(one, workload, top), window(many, workload, top)
            if a is None or b is None:
                continue
            best_a = max(w["per_sec"] for w in one["windows"] if w["workload"] == workload)
            best_b = max(w["per_sec"] for w in many["windows"] if w["workload"] == workload)
            cost_a, cost_b = a["machine_cpu_ms_per_request"], b["machine_cpu_ms_per_request"]
            lines.append(f"| {workload} | {cost_a:.2f} | {cores * 1000 / cost_a:.0f} | {best_a:.0f} | {cost_b:.2f} | "
                         f"{cores * 1000 / cost_a:.0f} | {cores * 1000 / cost_b:.0f} | {best_b:.0f} | {b['busy_cores']:.2f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def report(results):
    text = render(results, cores())
    (OUT / "report.md").write_text(text)
    (OUT / "report.json").write_text(json.dumps(results, indent=2))
    print(text)


def main():
    topologies = [t for t in os.environ.get("LOADTEST_TOPOLOGIES", "one-process,compose").split(",") if t]
    unknown = [t for t in topologies if t not in ("one-process", "compose")]
    if unknown:
        raise SystemExit(f"unknown topologies {unknown}: one-process, compose")
    OUT.mkdir(parents=True, exist_ok=True)
    # As make test-cluster builds them: the load generator, then the images'
    # binaries (the one-process default runs those same binaries).
    cargo = os.environ.get("CARGO", "cargo")
    run([cargo, "build", "--locked", "--release", "-p", "strata-bench", "--bin", "strata-load"], cwd=ROOT)
    run([cargo, "build", "--locked", "--release", "-p", "strata-data-service", "-p", "strata-storefront",
         "-p", "strata-backoffice"], cwd=ROOT)
    results = {}
    for topology in topologies:
        results[topology] = one_process() if topology == "one-process" else compose()
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
