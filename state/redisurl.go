package state

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Redis URL forms (Options.URL). go-redis's own parsers read every form:
// redis.ParseURL for one server, redis.ParseFailoverURL for Sentinel and
// redis.ParseClusterURL for Cluster, so every option those parsers know
// (dial_timeout, pool_size, skip_verify, ...) is accepted as a query
// parameter, and an unknown one is refused.
//
//	redis://[user:pass@]host:port/db              one server
//	rediss://...                                  the same over TLS
//	unix:///path/redis.sock?db=N                  one server on a Unix socket
//	redis+sentinel://[suser:spass@]s1:p/db?master_name=NAME&addr=s2:p&username=U&password=P
//	rediss+sentinel://...                         Sentinel, TLS to sentinels and servers
//	redis+cluster://[user:pass@]h1:p?addr=h2:p&addr=h3:p
//	rediss+cluster://...                          Cluster over TLS
//	host:port                                     shorthand for redis://host:port
//
// In the Sentinel form the user info is the sentinels' credentials (as in
// go-redis); the servers' are the username= and password= parameters.
//
// Aliases, kept for configurations written before: redis-sentinel://,
// rediss-sentinel://, redis-cluster:// and rediss-cluster:// take a
// comma-separated host list (h1:p,h2:p), and ?master=NAME for master_name.
// In redis-sentinel:// the user info is the servers' credentials (the
// sentinels are reached without any), as it always was. Aliases are
// rewritten to the forms above and read by the same go-redis parsers.
//
// Every client has ContextTimeoutEnabled set: request deadlines bound
// Redis calls. Sentinel and Cluster clients dial with a 2s timeout and one
// attempt unless the URL sets dial_timeout / dialer_retries, and a Cluster
// client reloads its slot map on the errors a failing-over master causes
// (failover.go).

// redisMode is the topology a URL names.
type redisMode int

const (
	modeSingle redisMode = iota
	modeSentinel
	modeCluster
)

// parsedURL is a URL read into the options of the client it names.
type parsedURL struct {
	mode     redisMode
	single   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

// parseRedisURL reads raw (see the forms above) with go-redis's parsers.
//
// # Errors
// An unknown scheme, an option go-redis does not know, a Sentinel URL
// without a master name, a port that is not 1 to 65535; the error shows the URL with its passwords hidden.
func parseRedisURL(raw string) (parsedURL, error) {
	if raw == "" {
		raw = "redis://127.0.0.1:6379/0"
	}
	if !strings.Contains(raw, "://") {
		raw = "redis://" + raw
	}
	p, err := parseURLForm(raw)
	if err == nil {
		err = p.checkAddrs()
	}
	if err != nil {
		return parsedURL{}, fmt.Errorf("redis url %s: %w", RedactURL(raw), err)
	}
	return p, nil
}

// checkAddrs refuses an address whose port is not a number from 1 to
// 65535, in every address the URL names (the host and each addr=): the
// go-redis parsers pass "127.0.0.1:70000" on, and the client then retries
// it forever, logging each failed dial, instead of saying what is wrong.
func (p parsedURL) checkAddrs() error {
	var addrs []string
	switch p.mode {
	case modeSentinel:
		addrs = p.failover.SentinelAddrs
	case modeCluster:
		addrs = p.cluster.Addrs
	default:
		if p.single.Network == "unix" {
			return nil
		}
		addrs = []string{p.single.Addr}
	}
	for _, a := range addrs {
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("address %q: %v", a, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("address %q: port %q is not a number from 1 to 65535", a, port)
		}
	}
	return nil
}

func parseURLForm(raw string) (parsedURL, error) {
	scheme, rest, _ := strings.Cut(raw, "://")
	scheme = strings.ToLower(scheme)
	tls := "redis"
	switch scheme {
	case "redis", "rediss", "unix":
		o, err := redis.ParseURL(raw)
		if err != nil {
			return parsedURL{}, err
		}
		return parsedURL{mode: modeSingle, single: o}, nil
	case "rediss+sentinel":
		tls = "rediss"
		fallthrough
	case "redis+sentinel":
		if noHost(rest) {
			return parsedURL{}, errors.New("no host")
		}
		o, err := redis.ParseFailoverURL(tls + "://" + rest)
		if err != nil {
			return parsedURL{}, err
		}
		if o.MasterName == "" {
			return parsedURL{}, fmt.Errorf("sentinel needs ?master_name=NAME")
		}
		return parsedURL{mode: modeSentinel, failover: o}, nil
	case "rediss+cluster":
		tls = "rediss"
		fallthrough
	case "redis+cluster":
		if noHost(rest) {
			return parsedURL{}, errors.New("no host")
		}
		o, err := redis.ParseClusterURL(tls + "://" + rest)
		if err != nil {
			return parsedURL{}, err
		}
		return parsedURL{mode: modeCluster, cluster: o}, nil
	case "redis-sentinel", "rediss-sentinel", "redis-cluster", "rediss-cluster":
		canon, err := aliasURL(scheme, rest)
		if err != nil {
			return parsedURL{}, err
		}
		return parseURLForm(canon)
	}
	return parsedURL{}, fmt.Errorf("unknown scheme %q (redis, rediss, unix, redis+sentinel, rediss+sentinel, redis+cluster, rediss+cluster)", scheme)
}

// aliasURL rewrites redis-sentinel:// and redis-cluster:// (and their
// rediss- forms) into redis+sentinel:// and redis+cluster://.
func aliasURL(scheme, rest string) (string, error) {
	// Split the host list off by hand: url.Parse refuses "h1:p,h2:p".
	auth, hostsPath := "", rest
	if at := strings.LastIndexByte(beforeAny(rest, "/?#"), '@'); at >= 0 {
		auth, hostsPath = rest[:at], rest[at+1:]
	}
	hosts := beforeAny(hostsPath, "/?#")
	tail := hostsPath[len(hosts):]
	u, err := url.Parse("redis://placeholder" + tail)
	if err != nil {
		return "", err
	}
	list := strings.Split(hosts, ",")
	if hosts == "" || list[0] == "" {
		return "", fmt.Errorf("no host")
	}
	q := u.Query()
	for _, h := range list[1:] {
		if h != "" {
			q.Add("addr", h)
		}
	}
	sentinel := strings.HasSuffix(scheme, "-sentinel")
	if sentinel {
		if m := q.Get("master"); m != "" {
			q.Del("master")
			q.Set("master_name", m)
		} else if q.Get("master_name") == "" {
			return "", fmt.Errorf("%s needs ?master=NAME", scheme)
		}
		if auth != "" {
			// The alias's user info always meant the servers' credentials.
			ui, err := url.Parse("redis://" + auth + "@x")
			if err != nil || ui.User == nil {
				return "", fmt.Errorf("bad user info")
			}
			if n := ui.User.Username(); n != "" {
				q.Set("username", n)
			}
			if pw, ok := ui.User.Password(); ok {
				q.Set("password", pw)
			}
			auth = ""
		}
	} else {
		u.Path = "" // a cluster has no database number
	}
	out := strings.Replace(scheme, "-", "+", 1) + "://"
	if auth != "" {
		out += auth + "@"
	}
	out += list[0] + u.EscapedPath()
	if enc := q.Encode(); enc != "" {
		out += "?" + enc
	}
	return out, nil
}

// noHost says whether the part of a URL after "://" names no host: the
// go-redis parsers would dial 127.0.0.1:6379 for a Cluster or Sentinel
// URL that is missing its first address.
func noHost(rest string) bool {
	h := beforeAny(rest, "/?#")
	if at := strings.LastIndexByte(h, '@'); at >= 0 {
		h = h[at+1:]
	}
	return h == ""
}

// beforeAny returns s up to the first byte of cut.
func beforeAny(s, cut string) string {
	if i := strings.IndexAny(s, cut); i >= 0 {
		return s[:i]
	}
	return s
}

// setTLS puts the client certificate and CA of tc (nil: none given) into
// the TLS config go-redis built for a rediss URL, keeping its server name.
//
// # Errors
// TLS files for a URL that is not TLS (redis://, redis+sentinel://, ...).
func (p parsedURL) setTLS(tc *tls.Config) error {
	if tc == nil {
		return nil
	}
	var dst **tls.Config
	switch p.mode {
	case modeSentinel:
		dst = &p.failover.TLSConfig
	case modeCluster:
		dst = &p.cluster.TLSConfig
	default:
		dst = &p.single.TLSConfig
	}
	if *dst == nil {
		return errors.New("TLS files given for a URL without TLS (use rediss://, rediss+sentinel:// or rediss+cluster://)")
	}
	tc.ServerName = (*dst).ServerName
	*dst = tc
	return nil
}

// newClient builds the client p names; o's credentials override the
// servers' (not the sentinels').
func (p parsedURL) newClient(o Options) redis.UniversalClient {
	switch p.mode {
	case modeSentinel:
		f := p.failover
		f.ContextTimeoutEnabled = true
		if o.Username != "" {
			f.Username = o.Username
		}
		if o.Password != "" {
			f.Password = o.Password
		}
		if f.DialTimeout == 0 {
			f.DialTimeout = failoverDialTimeout
		}
		if f.DialerRetries == 0 {
			f.DialerRetries = failoverDialerRetries
		}
		return redis.NewFailoverClient(f)
	case modeCluster:
		c := p.cluster
		c.ContextTimeoutEnabled = true
		if o.Username != "" {
			c.Username = o.Username
		}
		if o.Password != "" {
			c.Password = o.Password
		}
		if c.DialTimeout == 0 {
			c.DialTimeout = failoverDialTimeout
		}
		if c.DialerRetries == 0 {
			c.DialerRetries = failoverDialerRetries
		}
		cc := redis.NewClusterClient(c)
		cc.AddHook(clusterReload{cc})
		return cc
	}
	s := p.single
	s.ContextTimeoutEnabled = true
	if o.Username != "" {
		s.Username = o.Username
	}
	if o.Password != "" {
		s.Password = o.Password
	}
	return redis.NewClient(s)
}
