"""One client, as fast as it can, through the compose topology's balancer: how
many requests are accepted against the storefronts' per-client rate limit.

    python3 scripts/rate-through-balancer.py [--url URL] [--seconds 10]
        [--connections 8] [--rate N --burst N]

Every request comes from this machine's one address, so the storefronts see one
client (the address the balancer forwards). Sends GET --url (default
http://127.0.0.1:8080/v1/products) on --connections keep-alive connections for
--seconds, counts the answers by status, and prints the accepted rate. With
--rate and --burst (the storefronts' STRATA_RATE_LIMIT_PER_SEC and
STRATA_RATE_LIMIT_BURST) it also prints the expected number of accepted
requests, rate x seconds + burst, and exits 1 when the measured one is more
than 20 % away from it. Only loopback addresses are accepted as targets.
"""
import argparse, collections, http.client, ipaddress, socket, sys, threading, time, urllib.parse


def loopback(host):
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback
                   for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080/v1/products")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=float, help="the configured requests per second")
    parser.add_argument("--burst", type=float, help="the configured burst")
    args = parser.parse_args()
    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http" or not url.hostname or not loopback(url.hostname):
        sys.exit(f"{args.url}: only http:// on a loopback address is a target here")
    path = url.path or "/"
    if url.query:
        path += "?" + url.query

    counts = collections.Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + args.seconds

    def client():
        mine = collections.Counter()
        connection = None
        while time.monotonic() < deadline:
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=5)
                connection.request("GET", path, headers={"Accept": "application/json"})
                response = connection.getresponse()
                response.read()
                mine[response.status] += 1
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                mine[type(error).__name__] += 1
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()
        with lock:
            counts.update(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(args.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started

    total = sum(counts.values())
    accepted = counts.get(200, 0)
    print(f"{args.url}: {total} requests in {elapsed:.1f} s on {args.connections} connections "
          f"({total / elapsed:.0f}/s offered)")
    for status, n in sorted(counts.items(), key=lambda kv: str(kv[0])):
        print(f"  {status}: {n}")
    print(f"accepted: {accepted} ({accepted / elapsed:.1f}/s)")
    if args.rate is not None and args.burst is not None:
        expected = args.rate * args.seconds + args.burst
        ratio = accepted / expected
        print(f"expected: rate x seconds + burst = {args.rate:g} x {args.seconds:g} + {args.burst:g} "
              f"= {expected:.0f}; measured/expected = {ratio:.2f}")
        if not 0.8 <= ratio <= 1.2:
            print("more than 20 % away from the configured limit", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
