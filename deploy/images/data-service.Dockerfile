# strata/data-service: hosts the contexts named by STRATA_CONTEXTS over gRPC.
#
# Built by deploy/images/build.sh (`make images`) from a context it stages in
# target/images/data-service: rootfs/ holds /data-service (the release binary)
# and, at the paths `ldd` lists them, the shared libraries it links and the
# dynamic loader. Nothing else: no shell, no package manager, nothing to pull.
#
# Run with a read-only root (`docker run --read-only`): nothing is written
# outside the database, which is PostgreSQL (STRATA_<CONTEXT>_DATABASE_URL). A
# context left without a URL would use SQLite under STRATA_DATA_DIR, which the
# read-only root refuses at start, as it should.
FROM scratch
COPY rootfs/ /
USER 65532:65532
EXPOSE 50051
ENTRYPOINT ["/data-service"]
# gRPC health of this process's own listener (STRATA_LISTEN); exit 0 when
# SERVING. No shell: exec form. The start period covers migrations.
HEALTHCHECK --interval=5s --timeout=3s --start-period=120s --retries=3 CMD ["/data-service", "health"]
