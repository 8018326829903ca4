# The one GenieHive image: the static binary (CGO_ENABLED=0) on scratch plus
# CA certificates, so every subcommand (edge, node, sim, policy, loadtest…)
# runs from it: `docker run IMAGE edge --config /etc/geniehive/edge.yaml`.
# Built by deploy/build-images.sh, which stages the binary and certificates
# into the build context.
FROM scratch
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY passwd group /etc/
COPY tmp/ /tmp/
COPY geniehive /usr/local/bin/geniehive
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65534:65534
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/geniehive"]
CMD ["--help"]
