"""Smoke test of a running data service by a client that knows nothing of Strata.

It learns the API through gRPC server reflection only, checks health, then
creates a product, reads it back and changes its price with a stale
expected_version, which must fail with ABORTED:

    python3 -m venv .venv && .venv/bin/pip install grpcio grpcio-reflection grpcio-health-checking
    .venv/bin/python scripts/smoke.py 127.0.0.1:50051
"""
import sys, uuid, grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc

ch = grpc.insecure_channel(sys.argv[1])
db = ProtoReflectionDescriptorDatabase(ch)
print("services:", sorted(db.get_services()))
pool = DescriptorPool(db)
svc = pool.FindServiceByName("strata.catalog.v1.ProductService")
def call(method, **fields):
    m = svc.FindMethodByName(method)
    req_cls = message_factory.GetMessageClass(m.input_type)
    resp_cls = message_factory.GetMessageClass(m.output_type)
    stub = ch.unary_unary(f"/{svc.full_name}/{method}", request_serializer=lambda r: r.SerializeToString(), response_deserializer=resp_cls.FromString)
    return stub(req_cls(**fields))
print("health:", health_pb2.HealthCheckResponse.ServingStatus.Name(health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest()).status))
created = call("CreateProduct", request_id=str(uuid.uuid4()), sku="MUG-"+uuid.uuid4().hex[:6], name="Mug", price={"currency_code": "EUR", "amount_minor": 1290}).product
got = call("GetProduct", id=created.id).product
print("created/get version:", created.version, got.version)
call("ChangePrice", id=created.id, request_id=str(uuid.uuid4()), expected_version=1, price={"currency_code": "EUR", "amount_minor": 1490})
try:
    call("ChangePrice", id=created.id, request_id=str(uuid.uuid4()), expected_version=1, price={"currency_code": "EUR", "amount_minor": 999})
except grpc.RpcError as e:
    print("stale expected_version:", e.code().name, "-", e.details())
    sys.exit(0 if e.code() == grpc.StatusCode.ABORTED else 1)
print("stale expected_version was accepted")
sys.exit(1)
