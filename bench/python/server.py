"""strata.catalog.v1.ProductService in plain Python: the benchmark's reference.

The service as a Python team would write it, grpcio's asyncio server over an
asyncpg pool, serving the same tables as Strata's catalog context (schema
`catalog`, created by Strata's migrations). Only GetProduct and ChangePrice are
implemented; the other methods answer UNIMPLEMENTED. It is not part of Strata.

    DIR/bin/python bench/python/server.py --listen 127.0.0.1:PORT \
        --dsn postgres://... --gen DIR/gen

(DIR prepared by bench/python/setup.sh.) Prints `listening on HOST:PORT` once
ready; SIGTERM or SIGINT stops it.
"""

import argparse
import asyncio
import json
import re
import signal
import sys
import uuid
from datetime import datetime, timezone

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp

pb = None  # strata.catalog.v1.catalog_pb2, imported from --gen in main()
money_pb = None  # strata.type.v1.money_pb2, likewise

SELECT_PRODUCT = (
    "select id, sku, name, description, price_minor, currency, status, version,"
    " created_at, updated_at from product where id = $1"
)
SELECT_RECORDED = "select fingerprint, result from idempotency where request_id = $1"
INSERT_RECORDED = (
    "insert into idempotency (request_id, fingerprint, result, created_at)"
    " values ($1, $2, $3, $4) on conflict (request_id) do nothing"
)
UPDATE_PRICE = (
    "update product set price_minor = $3, currency = $4, version = $5, updated_at = $6"
    " where id = $1 and version = $2"
)
# The event's position follows the store's rule (domain/store/src/postgres.rs):
# the transaction id times 1024 plus its index in the transaction.
INSERT_OUTBOX = (
    "insert into outbox (position, event_id, aggregate_id, aggregate_version, event_type, payload, occurred_at)"
    " values (pg_current_xact_id()::text::int8 * 1024 + 1, gen_random_uuid(), $1, $2, $3, $4, $5)"
)

CURRENCY = re.compile(r"[A-Z]{3}")
REQUEST_ID = re.compile(r"[!-~]{1,128}")  # printable ASCII without spaces

# Failures of the database connection: the store is down, retry later.
DB_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


class AlreadyRecorded(Exception):
    """A concurrent request with the same request_id committed first."""


class VersionConflict(Exception):
    """The product changed between reading and writing it."""


def timestamp(value):
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def product_message(p):
    """A product snapshot (dict with datetimes) as the Product message."""
    return pb.Product(
        id=p["id"],
        sku=p["sku"],
        name=p["name"],
        description=p["description"],
        price=money_pb.Money(currency_code=p["currency"], amount_minor=p["price_minor"]),
        status=pb.ProductStatus.Value("PRODUCT_STATUS_" + p["status"].upper()),
        version=p["version"],
        create_time=timestamp(p["created_at"]),
        update_time=timestamp(p["updated_at"]),
    )


def snapshot_from_row(row):
    p = dict(row)
    p["id"] = str(p["id"])
    return p


def snapshot_to_json(p):
    return json.dumps(
        {**p, "created_at": p["created_at"].isoformat(), "updated_at": p["updated_at"].isoformat()}
    )


def snapshot_from_json(text):
    p = json.loads(text)
    p["created_at"] = datetime.fromisoformat(p["created_at"])
    p["updated_at"] = datetime.fromisoformat(p["updated_at"])
    return p


class ProductService:
    def __init__(self, pool):
        self.pool = pool

    async def GetProduct(self, request, context):
        try:
            product_id = uuid.UUID(request.id)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "id: must be a UUID")
        try:
            row = await self.pool.fetchrow(SELECT_PRODUCT, product_id)
        except DB_UNAVAILABLE as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"database unavailable: {e}")
        if row is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"product {product_id} not found")
        return pb.GetProductResponse(product=product_message(snapshot_from_row(row)))

    async def ChangePrice(self, request, context):
        problems = []
        try:
            product_id = uuid.UUID(request.id)
        except ValueError:
            problems.append("id: must be a UUID")
        if not REQUEST_ID.fullmatch(request.request_id):
            problems.append("request_id: 1 to 128 printable ASCII characters without spaces")
        has_expected = request.HasField("expected_version")
        if has_expected and request.expected_version == 0:
            problems.append("expected_version: must be at least 1 when given")
        if not request.HasField("price"):
            problems.append("price: is required")
        else:
            if not CURRENCY.fullmatch(request.price.currency_code):
                problems.append("price.currency_code: must be three upper-case letters")
            if request.price.amount_minor <= 0:
                problems.append("price.amount_minor: must be greater than zero")
        if problems:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))
        fingerprint = b"ChangePrice\0" + request.SerializeToString()

        try:
            recorded = await self.pool.fetchrow(SELECT_RECORDED, request.request_id)
            if recorded is not None:
                return await self.replay(recorded, fingerprint, context)

            row = await self.pool.fetchrow(SELECT_PRODUCT, product_id)
            if row is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"product {product_id} not found")
            current = snapshot_from_row(row)
            if has_expected and request.expected_version != current["version"]:
                await context.abort(
                    grpc.StatusCode.ABORTED,
                    f"expected version {request.expected_version}, current version {current['version']}",
                )
            if current["status"] == "retired":
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION, "a retired product cannot change"
                )

            now = datetime.now(timezone.utc)
            changed = {
                **current,
                "price_minor": request.price.amount_minor,
                "currency": request.price.currency_code,
                "version": current["version"] + 1,
                "updated_at": now,
            }
            event = {
                "type": "price_changed",
                "price_minor": changed["price_minor"],
                "currency": changed["currency"],
            }
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    status = await conn.execute(
                        INSERT_RECORDED,
                        request.request_id,
                        fingerprint,
                        snapshot_to_json(changed),
                        now,
                    )
                    if status == "INSERT 0 0":
                        raise AlreadyRecorded()
                    status = await conn.execute(
                        UPDATE_PRICE,
                        product_id,
                        current["version"],
                        changed["price_minor"],
                        changed["currency"],
                        changed["version"],
                        now,
                    )
                    if status == "UPDATE 0":
                        raise VersionConflict()
                    await conn.execute(
                        INSERT_OUTBOX,
                        product_id,
                        changed["version"],
                        "catalog.product.price_changed",
                        json.dumps(event),
                        now,
                    )
            except AlreadyRecorded:
                recorded = await self.pool.fetchrow(SELECT_RECORDED, request.request_id)
                return await self.replay(recorded, fingerprint, context)
            except VersionConflict:
                await context.abort(
                    grpc.StatusCode.ABORTED, f"product {product_id} was changed concurrently"
                )
        except DB_UNAVAILABLE as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"database unavailable: {e}")
        return pb.ChangePriceResponse(product=product_message(changed))

    async def replay(self, recorded, fingerprint, context):
        """The first result of a command already carried out under this request_id."""
        if bytes(recorded["fingerprint"]) != fingerprint:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "request_id: already used for a different request",
            )
        product = snapshot_from_json(recorded["result"])
        return pb.ChangePriceResponse(product=product_message(product))

    async def unimplemented(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not implemented by the Python reference")

    def __getattr__(self, name):
        # Every method the benchmark does not call (CreateProduct, StreamEvents,
        # and whatever the proto gains later) answers UNIMPLEMENTED.
        if name[:1].isupper():
            return self.unimplemented
        raise AttributeError(name)


async def serve(args, pb_grpc):
    pool = await asyncpg.create_pool(
        args.dsn, min_size=4, max_size=16, server_settings={"search_path": "catalog"}
    )
    # No SO_REUSEPORT: a port already in use is an error, not a silently shared port.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_ProductServiceServicer_to_server(ProductService(pool), server)
    port = server.add_insecure_port(args.listen)
    await server.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    host = args.listen.rpartition(":")[0]
    print(f"listening on {host}:{port}", flush=True)
    await stop.wait()
    await server.stop(grace=5)
    await pool.close()


def main():
    global pb, money_pb
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:50052", help="host:port to serve gRPC on")
    parser.add_argument("--dsn", required=True, help="postgres://user:password@host:port/db")
    parser.add_argument("--gen", required=True, help="directory of the generated gRPC code")
    args = parser.parse_args()

    sys.path.insert(0, args.gen)
    from strata.catalog.v1 import catalog_pb2, catalog_pb2_grpc
    from strata.type.v1 import money_pb2

    pb = catalog_pb2
    money_pb = money_pb2
    asyncio.run(serve(args, catalog_pb2_grpc))


if __name__ == "__main__":
    main()
