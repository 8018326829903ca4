package loadtest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// CheckTarget refuses a target URL whose host is neither loopback nor one
// of the project's own containers, unless allow names it.
//
// Allowed without asking: 127.0.0.0/8, ::1, "localhost", and host names
// without a dot (compose service names such as "edge" or "sim-1"). allow
// entries are host names (exact, case-insensitive), IP addresses, or CIDR
// prefixes ("10.0.0.0/8").
//
// # Errors
// A malformed URL, a scheme other than http, or a host that is not allowed
// (the message says which --allow-host would admit it).
func CheckTarget(rawURL string, allow []string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("target %q: %w", rawURL, err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("target %q: only http:// targets are supported", rawURL)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("target %q: no host", rawURL)
	}
	if HostAllowed(host, allow) {
		return nil
	}
	return fmt.Errorf("target %q: host %s is not loopback or a container name; the load generator only drives your own machine (pass --allow-host %s to allow it)", rawURL, host, host)
}

// HostAllowed reports whether host passes the rules of CheckTarget.
func HostAllowed(host string, allow []string) bool {
	h := strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	ip := net.ParseIP(h)
	switch {
	case h == "localhost" || strings.HasSuffix(h, ".localhost"):
		return true
	case ip != nil && ip.IsLoopback():
		return true
	case ip == nil && !strings.Contains(h, "."):
		return true // compose service name
	}
	for _, a := range allow {
		a = strings.ToLower(strings.TrimSpace(a))
		if a == "" {
			continue
		}
		if a == h {
			return true
		}
		if _, n, err := net.ParseCIDR(a); err == nil && ip != nil && n.Contains(ip) {
			return true
		}
		if aip := net.ParseIP(a); aip != nil && ip != nil && aip.Equal(ip) {
			return true
		}
	}
	return false
}
