"""A shopping scenario against a running Strata (`make run`, then `make demo`).

Staff creates two products, changes a price, publishes them and receives
stock; a shopper signs up, browses, checks out (and retries with the same
Idempotency-Key), is refused more teapots than are left, and staff ships the
order. Every call's status is checked; the first unexpected answer stops the
demo with its body and a non-zero exit. Names are unique per run, so it can run
any number of times against the same (persistent, not necessarily empty) system.

Settings: STOREFRONT_URL (default http://127.0.0.1:8080), BACKOFFICE_URL
(default http://127.0.0.1:8081), STRATA_ADMIN_EMAIL and STRATA_ADMIN_PASSWORD
(default: the dev staff account in $STRATA_DATA_DIR/dev-admin.json, data dir ./var).
"""
import http.client, json, os, sys, time, urllib.error, urllib.parse, urllib.request, uuid

STOREFRONT = os.environ.get("STOREFRONT_URL", "http://127.0.0.1:8080").rstrip("/")
BACKOFFICE = os.environ.get("BACKOFFICE_URL", "http://127.0.0.1:8081").rstrip("/")
READY_TIMEOUT_SECS = 30
last_response = None  # shown when an answer lacks a member the demo reads


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body
        try:
            self.data = json.loads(body)
        except ValueError:
            self.data = None

    def json(self):
        return self.data


def fail(message, response=None):
    sys.stdout.flush()
    print(f"\ndemo FAILED: {message}", file=sys.stderr)
    if response is not None:
        print(f"  HTTP {response.status}, X-Request-Id {response.headers.get('X-Request-Id')}, "
              f"Content-Type {response.headers.get('Content-Type')}", file=sys.stderr)
        body = response.json()
        print("  " + (json.dumps(body, indent=2).replace("\n", "\n  ") if body is not None
                      else response.body.decode(errors="replace") or "(empty body)"), file=sys.stderr)
    sys.exit(1)


def send(method, url, body=None, token=None, headers=(), timeout=30):
    """One HTTP call; any status is a Response, only a failed connection raises."""
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    request.add_header("Accept", "application/json")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in dict(headers).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return Response(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read())


def call(what, method, url, expect, body=None, token=None, headers=()):
    """A step's call: fails the demo unless the status is `expect` (one or a
    tuple) and the body a JSON object."""
    global last_response
    try:
        response = send(method, url, body, token, headers)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        fail(f"{what}: {method} {url}: {getattr(e, 'reason', e)}")
    if response.status not in ((expect,) if isinstance(expect, int) else expect):
        fail(f"{what}: {method} {url}: expected HTTP {expect}, got {response.status}", response)
    if not isinstance(response.data, dict):
        fail(f"{what}: {method} {url}: the body is not a JSON object", response)
    last_response = response
    return response


def check(condition, what, response=None):
    if not condition:
        fail(what, response)


def step(what, response, figure=""):
    print(f"{what:<60} {response.status}  {figure}")


def eur(minor):
    return {"currency": "EUR", "amount_minor": minor}


def money(m):
    return f"{m['currency']} {m['amount_minor'] // 100}.{m['amount_minor'] % 100:02d}"


def wait_ready():
    deadline = time.monotonic() + READY_TIMEOUT_SECS
    for base in (STOREFRONT, BACKOFFICE):
        while True:
            try:
                if send("GET", f"{base}/readyz", timeout=2).status == 200:
                    break
                last = "it answered not ready"
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                last = str(getattr(e, "reason", e))
            if time.monotonic() > deadline:
                fail(f"{base}/readyz did not answer 200 within {READY_TIMEOUT_SECS}s ({last}); "
                     "is the shop running? Start it with `make run`")
            time.sleep(0.5)
        print(f"{base} is ready")


def staff_credentials():
    email, password = os.environ.get("STRATA_ADMIN_EMAIL"), os.environ.get("STRATA_ADMIN_PASSWORD")
    if email and password:
        return email, password
    path = os.path.join(os.environ.get("STRATA_DATA_DIR", "./var"), "dev-admin.json")
    try:
        with open(path) as f:
            stored = json.load(f)
        return stored["email"], stored["password"]
    except (OSError, ValueError, KeyError) as e:
        fail(f"no staff credentials: STRATA_ADMIN_EMAIL/STRATA_ADMIN_PASSWORD are not set and {path} "
             f"cannot be read ({e}); start the shop with `make run` first")


def find_products(ids):
    """The storefront's products with these ids, following next_page_token."""
    found, token, pages = {}, "", 0
    while True:
        query = urllib.parse.urlencode({"page_size": 100, **({"page_token": token} if token else {})})
        page = call("list products", "GET", f"{STOREFRONT}/v1/products?{query}", 200).json()
        pages += 1
        found.update({p["id"]: p for p in page["products"] if p["id"] in ids})
        next_token = page.get("next_page_token") or ""
        if set(ids) <= found.keys() or not next_token:
            return found, pages
        check(next_token != token, f"list products: page {pages} gave back the same next_page_token")
        token = next_token


def main():
    wait_ready()
    email, password = staff_credentials()
    run = uuid.uuid4().hex[:8]

    # 1. staff signs in (401 for a while is fine: backoffice registers the staff
    # account in the background at start, after it is ready)
    deadline = time.monotonic() + READY_TIMEOUT_SECS
    while True:
        r = call("staff signs in", "POST", f"{BACKOFFICE}/v1/sessions", (200, 401), {"email": email, "password": password})
        if r.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    check(r.status == 200, f"staff sign-in refused for {READY_TIMEOUT_SECS}s: are {email}'s credentials the backoffice's?", r)
    staff = r.json()["access_token"]
    step(f"staff {email} signs in at backoffice", r, f"{r.json().get('token_type')} token")

    # 2. catalog and stock
    products = {}
    for key, name, price in (("mug", "Demo mug", 1290), ("teapot", "Demo teapot", 3450)):
        sku = f"DEMO-{key.upper()}-{run}"
        r = call(f"create {sku}", "POST", f"{BACKOFFICE}/v1/products", 201,
                 {"sku": sku, "name": f"{name} {run}", "description": f"{name}, made by make demo", "price": eur(price)},
                 staff)
        p = r.json()
        check(p["status"] == "draft" and p["sku"] == sku, f"create {sku}: expected a draft {sku}, got {p}", r)
        check(r.headers.get("ETag") == f'"{p["version"]}"', f"create {sku}: ETag {r.headers.get('ETag')}, expected \"{p['version']}\"", r)
        products[key] = {"id": p["id"], "sku": sku, "etag": r.headers["ETag"], "price": price}
        step(f"create product {sku}", r, f"{money(p['price'])}, version {p['version']}, ETag {r.headers.get('ETag')}")
    mug, teapot = products["mug"], products["teapot"]

    mug["price"] = 1390
    r = call("change the mug's price", "POST", f"{BACKOFFICE}/v1/products/{mug['id']}/price", 200,
             {"price": eur(mug["price"])}, staff, {"If-Match": mug["etag"]})
    check(r.json()["price"] == eur(mug["price"]), f"change price: the product says {r.json()['price']}", r)
    step(f"change {mug['sku']}'s price, If-Match {mug['etag']}", r, f"{money(r.json()['price'])}, version {r.json()['version']}")

    for p in (mug, teapot):
        r = call(f"publish {p['sku']}", "POST", f"{BACKOFFICE}/v1/products/{p['id']}/publish", 200, token=staff)
        check(r.json()["status"] == "published", f"publish {p['sku']}: status {r.json()['status']}", r)
        step(f"publish {p['sku']}", r, r.json()["status"])

    for p, quantity in ((mug, 5), (teapot, 2)):
        r = call(f"receive {p['sku']}", "POST", f"{BACKOFFICE}/v1/stock/{p['sku']}/receive", 200, {"quantity": quantity}, staff)
        check(r.json()["on_hand"] == quantity, f"receive {p['sku']}: on_hand {r.json()['on_hand']}, expected {quantity}", r)
        step(f"receive {quantity} x {p['sku']}", r, f"on_hand {r.json()['on_hand']}, available {r.json()['available']}")

    # 3. a shopper
    shopper = {"email": f"shopper-{run}@example.com", "password": f"demo-password-{run}", "display_name": f"Shopper {run}"}
    r = call("sign up", "POST", f"{STOREFRONT}/v1/accounts", 201, shopper)
    step(f"shopper {shopper['email']} signs up at storefront", r, f"roles {r.json()['roles']}, {r.json()['status']}")
    r = call("shopper signs in", "POST", f"{STOREFRONT}/v1/sessions", 200, {"email": shopper["email"], "password": shopper["password"]})
    buyer = r.json()["access_token"]
    step("shopper signs in", r, f"expires in {r.json().get('expires_in')} s")

    # 4. browse
    found, pages = find_products({mug["id"], teapot["id"]})
    check(len(found) == 2, f"list products: the demo products are not both listed (found {sorted(found)})")
    for p, expected in ((mug, 5), (teapot, 2)):
        listed = found[p["id"]]
        check(listed["available"] == expected, f"list products: {p['sku']} available {listed['available']}, expected {expected}")
        check(listed["price"] == eur(p["price"]), f"list products: {p['sku']} price {listed['price']}, expected {eur(p['price'])}")
    print(f"{'browse products (page_size=100), found both':<60} 200  "
          f"{pages} page(s); mug available {found[mug['id']]['available']}, teapot available {found[teapot['id']]['available']}")
    r = call("get the mug", "GET", f"{STOREFRONT}/v1/products/{mug['id']}", 200)
    step(f"get product {mug['sku']}", r, f"{money(r.json()['price'])}, available {r.json()['available']}")

    # 5-6. check out, then retry with the same key
    key = str(uuid.uuid4())
    cart = {"lines": [{"product_id": mug["id"], "quantity": 2}, {"product_id": teapot["id"], "quantity": 1}]}
    r = call("check out", "POST", f"{STOREFRONT}/v1/orders", 201, cart, buyer, {"Idempotency-Key": key})
    order = r.json()
    expected_total = eur(2 * mug["price"] + teapot["price"])
    check(order["status"] == "confirmed", f"check out: status {order['status']}, expected confirmed", r)
    check(order["total"] == expected_total, f"check out: total {order['total']}, expected {expected_total}", r)
    step("check out 2 mugs + 1 teapot", r, f"order {order['id']} {order['status']}, total {money(order['total'])}")
    r = call("retry the checkout", "POST", f"{STOREFRONT}/v1/orders", 201, cart, buyer, {"Idempotency-Key": key})
    check(r.json()["id"] == order["id"], f"retry: order {r.json()['id']}, expected the first one {order['id']}", r)
    step("retry the checkout with the same Idempotency-Key", r, f"same order {r.json()['id']}")

    # 7. the shopper's orders
    r = call("get the order", "GET", f"{STOREFRONT}/v1/orders/{order['id']}", 200, token=buyer)
    check(r.json()["status"] == "confirmed", f"get order: status {r.json()['status']}", r)
    step("get the order", r, f"{r.json()['status']}, {len(r.json()['lines'])} lines, total {money(r.json()['total'])}")
    r = call("list my orders", "GET", f"{STOREFRONT}/v1/orders?page_size=100", 200, token=buyer)
    check([o["id"] for o in r.json()["orders"]] == [order["id"]], f"list orders: {r.json()['orders']}", r)
    step("list the shopper's orders", r, f"{len(r.json()['orders'])} order: {order['id']}")

    # 8. more teapots than are left
    r = call("check out 5 teapots", "POST", f"{STOREFRONT}/v1/orders", 409,
             {"lines": [{"product_id": teapot["id"], "quantity": 5}]}, buyer, {"Idempotency-Key": str(uuid.uuid4())})
    problem = r.json() or {}
    check(r.headers.get("Content-Type", "").startswith("application/problem+json"), "409 is not application/problem+json", r)
    check((problem.get("product_id"), problem.get("requested"), problem.get("available")) == (teapot["id"], 5, 1),
          f"409 should name the teapot {teapot['id']} with requested 5 and available 1", r)
    step("check out 5 teapots (1 left)", r, f"refused: {problem.get('detail')}")
    r = call("get the teapot", "GET", f"{STOREFRONT}/v1/products/{teapot['id']}", 200)
    check(r.json()["available"] == 1, f"after the refusal the teapot shows available {r.json()['available']}, expected 1", r)
    step(f"get product {teapot['sku']}", r, f"available still {r.json()['available']}")
    r = call("teapot stock", "GET", f"{BACKOFFICE}/v1/stock/{teapot['sku']}", 200, token=staff)
    s = r.json()
    check((s["on_hand"], s["reserved"]) == (2, 1), f"teapot stock on_hand {s['on_hand']} reserved {s['reserved']}, expected 2 and 1", r)
    step(f"stock of {teapot['sku']} at backoffice", r, f"on_hand {s['on_hand']}, reserved {s['reserved']} (unchanged)")

    # 9. staff ships
    r = call("ship the order", "POST", f"{BACKOFFICE}/v1/orders/{order['id']}/ship", 200, token=staff)
    check(r.json()["status"] == "shipped", f"ship: status {r.json()['status']}, expected shipped", r)
    step("staff ships the order", r, r.json()["status"])
    r = call("mug stock", "GET", f"{BACKOFFICE}/v1/stock/{mug['sku']}", 200, token=staff)
    s = r.json()
    check((s["on_hand"], s["reserved"]) == (3, 0), f"mug stock on_hand {s['on_hand']} reserved {s['reserved']}, expected 3 and 0", r)
    step(f"stock of {mug['sku']} at backoffice", r, f"on_hand {s['on_hand']}, reserved {s['reserved']}")

    print("demo passed")


if __name__ == "__main__":
    try:
        main()
    except (KeyError, TypeError, IndexError) as e:
        fail(f"an answer lacks what the contract promises ({type(e).__name__}: {e})", last_response)
