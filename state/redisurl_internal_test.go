package state

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestParseRedisURL reads every URL form through go-redis's own parsers
// and checks the options each yields.
func TestParseRedisURL(t *testing.T) {
	type want struct {
		mode       redisMode
		addrs      []string
		db         int
		master     string
		user, pass string
		suser, spw string
		tls        bool
		dial       time.Duration
	}
	for _, c := range []struct {
		url string
		w   want
	}{
		{"", want{mode: modeSingle, addrs: []string{"127.0.0.1:6379"}}},
		{"10.0.0.1:6380", want{mode: modeSingle, addrs: []string{"10.0.0.1:6380"}}},
		{"redis://u:p@h:1/3?dial_timeout=2s", want{mode: modeSingle, addrs: []string{"h:1"}, db: 3, user: "u", pass: "p", dial: 2 * time.Second}},
		{"rediss://h:1/0", want{mode: modeSingle, addrs: []string{"h:1"}, tls: true}},
		{"redis+sentinel://su:sp@s1:26379/2?master_name=gh&addr=s2:26379&username=u&password=p",
			want{mode: modeSentinel, addrs: []string{"s1:26379", "s2:26379"}, db: 2, master: "gh", user: "u", pass: "p", suser: "su", spw: "sp"}},
		{"rediss+sentinel://s1:26379?master_name=gh", want{mode: modeSentinel, addrs: []string{"s1:26379"}, master: "gh", tls: true}},
		{"redis+cluster://u:p@c1:7000?addr=c2:7001&addr=c3:7002&dial_timeout=3",
			want{mode: modeCluster, addrs: []string{"c1:7000", "c2:7001", "c3:7002"}, user: "u", pass: "p", dial: 3 * time.Second}},
		{"rediss+cluster://c1:7000", want{mode: modeCluster, addrs: []string{"c1:7000"}, tls: true}},
		// The older spellings.
		{"redis-sentinel://u:p@s1:26379,s2:26379/1?master=gh",
			want{mode: modeSentinel, addrs: []string{"s1:26379", "s2:26379"}, db: 1, master: "gh", user: "u", pass: "p"}},
		{"rediss-sentinel://s1:26379,s2:26379?master=gh&dial_timeout=1s",
			want{mode: modeSentinel, addrs: []string{"s1:26379", "s2:26379"}, master: "gh", tls: true, dial: time.Second}},
		{"redis-cluster://u:p@c1:7000,c2:7001,c3:7002", want{mode: modeCluster, addrs: []string{"c1:7000", "c2:7001", "c3:7002"}, user: "u", pass: "p"}},
		{"redis-cluster://c1:7000,c2:7001/0", want{mode: modeCluster, addrs: []string{"c1:7000", "c2:7001"}}},
		{"rediss-cluster://c1:7000,c2:7001", want{mode: modeCluster, addrs: []string{"c1:7000", "c2:7001"}, tls: true}},
	} {
		p, err := parseRedisURL(c.url)
		if err != nil {
			t.Errorf("%q: %v", c.url, err)
			continue
		}
		var got want
		got.mode = p.mode
		switch p.mode {
		case modeSingle:
			o := p.single
			got.addrs, got.db, got.user, got.pass, got.tls, got.dial = []string{o.Addr}, o.DB, o.Username, o.Password, o.TLSConfig != nil, o.DialTimeout
		case modeSentinel:
			o := p.failover
			got.addrs, got.db, got.master, got.user, got.pass, got.tls, got.dial = o.SentinelAddrs, o.DB, o.MasterName, o.Username, o.Password, o.TLSConfig != nil, o.DialTimeout
			got.suser, got.spw = o.SentinelUsername, o.SentinelPassword
		case modeCluster:
			o := p.cluster
			got.addrs, got.user, got.pass, got.tls, got.dial = o.Addrs, o.Username, o.Password, o.TLSConfig != nil, o.DialTimeout
		}
		if strings.Join(got.addrs, ",") != strings.Join(c.w.addrs, ",") || got.mode != c.w.mode || got.db != c.w.db ||
			got.master != c.w.master || got.user != c.w.user || got.pass != c.w.pass || got.suser != c.w.suser ||
			got.spw != c.w.spw || got.tls != c.w.tls || got.dial != c.w.dial {
			t.Errorf("%q:\n got %+v\nwant %+v", c.url, got, c.w)
		}
	}
}

func TestParseRedisURLRefuses(t *testing.T) {
	for _, u := range []string{
		"http://h:1",
		"redis+sentinel://s1:26379",            // no master name
		"redis-sentinel://s1:26379,s2:26379/0", // no master
		"redis+cluster://c1:7000?no_such_option=1",
		"redis-cluster://c1:7000,c2:7001?bogus=1",
		"redis-cluster://:pw@",
		"redis://h:1/notanumber",
		"redis+sentinel://s1:26379/0?master_name=m&addr=nohostport",
	} {
		if _, err := parseRedisURL(u); err == nil {
			t.Errorf("%q: accepted", u)
		}
	}
}

// TestNewClientKinds checks which client each mode builds, and that every
// one honours request deadlines and the credential overrides.
func TestNewClientKinds(t *testing.T) {
	for u, cluster := range map[string]bool{
		"redis://h:1/0": false, "redis+sentinel://s:1?master_name=m": false, "redis-cluster://a:1,b:2": true,
	} {
		c, err := NewClient(Options{URL: u, Username: "envuser", Password: "envpw"})
		if err != nil {
			t.Fatal(err)
		}
		switch cc := c.(type) {
		case *redis.ClusterClient:
			if !cluster || !cc.Options().ContextTimeoutEnabled || cc.Options().Password != "envpw" || cc.Options().Username != "envuser" {
				t.Errorf("%s: cluster client %+v", u, cc.Options())
			}
		case *redis.Client:
			if cluster || !cc.Options().ContextTimeoutEnabled || cc.Options().Password != "envpw" || cc.Options().Username != "envuser" {
				t.Errorf("%s: client with %+v", u, cc.Options())
			}
		default:
			t.Errorf("%s: %T", u, c)
		}
		c.Close()
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://u:secret@h:1/0":                               "redis://u:xxxxx@h:1/0",
		"redis-sentinel://u:secret@a:1,b:2/0?master=m":         "redis-sentinel://u:xxxxx@a:1,b:2/0?master=m",
		"redis+sentinel://s1:1?master_name=m&password=secret":  "redis+sentinel://s1:1?master_name=m&password=xxxxx",
		"redis+sentinel://s1:1?sentinel_password=secret&x=%zz": "redis+sentinel://s1:1?xxxxx",
		"redis://h:1/0": "redis://h:1/0",
	} {
		if got := RedactURL(in); got != want || strings.Contains(got, "secret") {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestParseRedisURLErrorsNameTheForm: a refusal names what the user's own
// URL form takes (the aliases' ?master=, not master_name), and a Cluster or
// Sentinel URL without a host is refused rather than dialling the default
// 127.0.0.1:6379 (redis+cluster:// did, redis-cluster:// refused).
func TestParseRedisURLErrorsNameTheForm(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"redis-sentinel://s1:26379,s2:26379/0", "?master=NAME"},
		{"redis-sentinel://s1:26379/0?master=", "?master=NAME"},
		{"rediss-sentinel://s1:26379/0", "?master=NAME"},
		{"redis+sentinel://s1:26379/0", "?master_name=NAME"},
		{"redis+cluster://", "no host"},
		{"rediss+cluster://?addr=h2:7001", "no host"},
		{"redis+sentinel:///0?master_name=m", "no host"},
		// Ports outside 1-65535 or not a number, in every form and list.
		{"redis://:pw@127.0.0.1:70000/0", "port \"70000\""},
		{"redis://127.0.0.1:0/0", "port \"0\""},
		{"127.0.0.1:65536", "port \"65536\""},
		{"rediss://h:99999/0", "port \"99999\""},
		{"redis+cluster://h1:7000?addr=h2:70001", "port \"70001\""},
		{"redis+cluster://h1:70000?addr=h2:7001", "port \"70000\""},
		{"redis-cluster://h1:7000,h2:x", "port \"x\""},
		{"redis+sentinel://s1:26379/0?master_name=m&addr=s2:123456", "port \"123456\""},
		{"redis-sentinel://s1:99999,s2:26379/0?master=m", "port \"99999\""},
	} {
		_, err := parseRedisURL(c.url)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.url, err, c.want)
		}
	}
}
