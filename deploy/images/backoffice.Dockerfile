# strata/backoffice: the staff's HTTP/JSON edge.
#
# Built by deploy/images/build.sh (`make images`) from a context it stages in
# target/images/backoffice: rootfs/ holds /backoffice (the release binary) and, at the
# paths `ldd` lists them, the shared libraries it links and the dynamic
# loader. Nothing else: no shell, no package manager, nothing to pull.
#
# Run with a read-only root (`docker run --read-only`): the only place it
# writes is STRATA_DATA_DIR, which is meant to be /var/lib/strata with a
# volume or tmpfs mounted there (owned by 65532 here, so a new volume is too).
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 state/ /var/lib/strata/
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/backoffice"]
# GET /readyz on this process's own listener (STRATA_BACKOFFICE_LISTEN); exit 0 when
# ready (every data service it needs answers its health). No shell: exec form.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 CMD ["/backoffice", "health"]
