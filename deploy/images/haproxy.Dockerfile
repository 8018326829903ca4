# A local stand-in for haproxy:2.8-alpine, packed from the machine's Debian
# haproxy and its shared libraries. Same config path and command as the
# public image: haproxy -f /usr/local/etc/haproxy/haproxy.cfg
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 99:99
EXPOSE 8080
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
