# A local stand-in for redis:7-alpine, packed from the machine's Debian
# redis-server and its shared libraries (no image registry is reachable).
# Like the public image, `redis-server` is on PATH so compose/testcontainers
# commands work unchanged against either.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin
USER 999:999
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
