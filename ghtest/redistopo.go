package ghtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go/wait"
)

// RedisTopology is the shape of the cluster's Redis (WithRedisTopology).
type RedisTopology int

// Topologies. Every one runs from the one Redis image (REDIS_IMAGE: Debian's
// redis-server; a sentinel is `redis-server CONF --sentinel`).
const (
	// RedisSingle is one server, alias "redis" (the default).
	RedisSingle RedisTopology = iota
	// RedisSentinel is a master ("redis1"), a replica ("redis2") and three
	// sentinels ("sentinel1".."sentinel3", port 26379, quorum 2, master
	// name SentinelMaster, down-after 1s). Edges and node agents connect
	// through the sentinels (redis+sentinel://).
	RedisSentinel
	// RedisCluster is a Redis Cluster of 3 masters ("redis1".."redis3") and
	// 3 replicas ("redis4".."redis6", redis(N+3) replicating redisN),
	// cluster-node-timeout 2s, every node announcing its IP on the
	// cluster network. Edges and node agents connect with redis+cluster://.
	RedisCluster
)

// SentinelMaster is the master name the sentinels of RedisSentinel monitor.
const SentinelMaster = "gh"

// SentinelPort is the sentinels' port inside their containers.
const SentinelPort = "26379/tcp"

// WithRedisTopology chooses the Redis topology (default RedisSingle). With
// RedisSentinel or RedisCluster the Redis containers live on the cluster
// network only (the addresses Sentinel and Cluster hand out are IPs there),
// so node agents join the cluster network too.
func WithRedisTopology(t RedisTopology) Option { return func(c *config) { c.topology = t } }

// redisURL is the URL edges, node agents and commands use inside the
// cluster network.
func (c *Cluster) redisURL() string {
	switch c.cfg.topology {
	case RedisSentinel:
		return "redis+sentinel://sentinel1:26379/0?master_name=" + SentinelMaster + "&addr=sentinel2:26379&addr=sentinel3:26379"
	case RedisCluster:
		return "redis+cluster://redis1:6379?addr=redis2:6379&addr=redis3:6379"
	}
	return "redis://redis:6379/0"
}

// startRedis starts the configured topology and waits until it serves.
func (c *Cluster) startRedis(ctx context.Context) error {
	cmd := []string{"redis-server", "--protected-mode", "no", "--save", "", "--appendonly", "no"}
	ready := func() wait.Strategy {
		return wait.ForLog("Ready to accept connections").WithStartupTimeout(30 * time.Second)
	}
	switch c.cfg.topology {
	case RedisSentinel:
		return c.startSentinel(ctx, cmd, ready)
	case RedisCluster:
		return c.startRedisCluster(ctx, cmd, ready)
	}
	var err error
	c.Redis, err = c.start(ctx, "redis", c.cfg.redis, spec{
		cmd:      cmd,
		expose:   []string{RedisPort},
		wait:     ready(),
		networks: append([]string{c.Network}, c.NodeNetworks...),
	})
	if c.Redis != nil {
		c.RedisNodes = []*Container{c.Redis}
	}
	return err
}

func (c *Cluster) startSentinel(ctx context.Context, cmd []string, ready func() wait.Strategy) error {
	var err error
	master, err := c.start(ctx, "redis1", c.cfg.redis, spec{cmd: cmd, expose: []string{RedisPort}, wait: ready(), networks: []string{c.Network}})
	if master != nil {
		c.Redis = master
		c.RedisNodes = append(c.RedisNodes, master)
	}
	if err != nil {
		return err
	}
	mip, err := c.IP(ctx, master)
	if err != nil {
		return err
	}
	replica, err := c.start(ctx, "redis2", c.cfg.redis, spec{
		cmd:    append(append([]string(nil), cmd...), "--replicaof", mip, "6379"),
		expose: []string{RedisPort}, wait: ready(), networks: []string{c.Network},
	})
	if replica != nil {
		c.RedisNodes = append(c.RedisNodes, replica)
	}
	if err != nil {
		return err
	}
	conf := "port 26379\nprotected-mode no\ndir /tmp\n" +
		"sentinel monitor " + SentinelMaster + " " + mip + " 6379 2\n" +
		"sentinel down-after-milliseconds " + SentinelMaster + " 1000\n" +
		"sentinel failover-timeout " + SentinelMaster + " 5000\n" +
		"sentinel parallel-syncs " + SentinelMaster + " 1\n"
	c.Sentinels = make([]*Container, 3)
	var g group
	for i := range c.Sentinels {
		i := i
		g.Go(func() error {
			// Sentinel rewrites its configuration file (it records the
			// replicas and the other sentinels it learns of): root, so it
			// may write the file the copy created.
			ctr, err := c.start(ctx, "sentinel"+strconv.Itoa(i+1), c.cfg.redis, spec{
				cmd:      []string{"redis-server", "/etc/sentinel.conf", "--sentinel"},
				files:    map[string]string{"/etc/sentinel.conf": conf},
				expose:   []string{SentinelPort},
				wait:     wait.ForLog("+monitor master").WithStartupTimeout(30 * time.Second),
				networks: []string{c.Network},
				user:     "0:0",
			})
			c.Sentinels[i] = ctr
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	// Settled: the replica is in sync and every sentinel knows the two
	// others and the replica, so a failover can be agreed on.
	return c.poll(ctx, "the Sentinel group to settle", func() error {
		rc, err := c.directClient(ctx, replica)
		if err != nil {
			return err
		}
		defer rc.Close()
		info, err := rc.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return errors.New("replica not in sync")
		}
		for _, s := range c.Sentinels {
			sc, err := c.sentinelClient(ctx, s)
			if err != nil {
				return err
			}
			m, err := sc.Master(ctx, SentinelMaster).Result()
			sc.Close()
			if err != nil {
				return err
			}
			if m["num-other-sentinels"] != "2" || m["num-slaves"] != "1" {
				return fmt.Errorf("%s: %s other sentinels, %s replicas", s.Alias, m["num-other-sentinels"], m["num-slaves"])
			}
		}
		return nil
	})
}

func (c *Cluster) startRedisCluster(ctx context.Context, cmd []string, ready func() wait.Strategy) error {
	c.RedisNodes = make([]*Container, 6)
	var g group
	for i := range c.RedisNodes {
		i := i
		g.Go(func() error {
			ctr, err := c.start(ctx, "redis"+strconv.Itoa(i+1), c.cfg.redis, spec{
				cmd:      append(append([]string(nil), cmd...), "--cluster-enabled", "yes", "--cluster-node-timeout", "2000", "--cluster-config-file", "/tmp/nodes.conf"),
				expose:   []string{RedisPort},
				wait:     ready(),
				networks: []string{c.Network},
			})
			c.RedisNodes[i] = ctr
			return err
		})
	}
	err := g.Wait()
	for _, n := range c.RedisNodes {
		if n != nil && c.Redis == nil {
			c.Redis = n
		}
	}
	if err != nil {
		return err
	}
	// What redis-cli --cluster create does, from the host: announce IPs,
	// distinct config epochs, slots in three ranges, MEET, then replicas.
	ids := make([]string, 6)
	ips := make([]string, 6)
	clients := make([]*redis.Client, 6)
	defer func() {
		for _, rc := range clients {
			if rc != nil {
				rc.Close()
			}
		}
	}()
	ranges := [3][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}}
	for i, n := range c.RedisNodes {
		if ips[i], err = c.IP(ctx, n); err != nil {
			return err
		}
		if clients[i], err = c.directClient(ctx, n); err != nil {
			return err
		}
		rc := clients[i]
		if err := rc.ConfigSet(ctx, "cluster-announce-ip", ips[i]).Err(); err != nil {
			return fmt.Errorf("%s: %w", n.Alias, err)
		}
		if err := rc.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			return fmt.Errorf("%s: CLUSTER SET-CONFIG-EPOCH: %w", n.Alias, err)
		}
		if ids[i], err = rc.Do(ctx, "CLUSTER", "MYID").Text(); err != nil {
			return fmt.Errorf("%s: CLUSTER MYID: %w", n.Alias, err)
		}
		if i < 3 {
			if err := rc.ClusterAddSlotsRange(ctx, ranges[i][0], ranges[i][1]).Err(); err != nil {
				return fmt.Errorf("%s: CLUSTER ADDSLOTSRANGE: %w", n.Alias, err)
			}
		}
	}
	for i := 1; i < 6; i++ {
		if err := clients[0].ClusterMeet(ctx, ips[i], "6379").Err(); err != nil {
			return fmt.Errorf("CLUSTER MEET %s: %w", ips[i], err)
		}
	}
	if err := c.poll(ctx, "every cluster node to know the 5 others", func() error {
		for i, rc := range clients {
			nodes, err := rc.ClusterNodes(ctx).Result()
			if err != nil {
				return err
			}
			if n := strings.Count(strings.TrimSpace(nodes), "\n") + 1; n != 6 || strings.Contains(nodes, "handshake") {
				return fmt.Errorf("%s knows %d nodes", c.RedisNodes[i].Alias, n)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for i := 3; i < 6; i++ {
		if err := clients[i].Do(ctx, "CLUSTER", "REPLICATE", ids[i-3]).Err(); err != nil {
			return fmt.Errorf("%s: CLUSTER REPLICATE: %w", c.RedisNodes[i].Alias, err)
		}
	}
	return c.poll(ctx, "the Redis Cluster to be ok with 3 replicas in sync", func() error {
		for i, rc := range clients {
			info, err := rc.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("%s: cluster state not ok", c.RedisNodes[i].Alias)
			}
			if i >= 3 {
				r, err := rc.Info(ctx, "replication").Result()
				if err != nil {
					return err
				}
				if !strings.Contains(r, "master_link_status:up") {
					return fmt.Errorf("%s: replica not in sync", c.RedisNodes[i].Alias)
				}
			}
		}
		return nil
	})
}

// poll calls f every 100ms until it returns nil or ctx ends.
func (c *Cluster) poll(ctx context.Context, what string, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %v: %w", what, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// IP is the container's address on the cluster network.
func (c *Cluster) IP(ctx context.Context, ctr *Container) (string, error) {
	in, err := ctr.Inspect(ctx)
	if err != nil {
		return "", err
	}
	if in.NetworkSettings != nil {
		if ep, ok := in.NetworkSettings.Networks[c.Network]; ok && ep != nil && ep.IPAddress.IsValid() {
			return ep.IPAddress.String(), nil
		}
	}
	return "", fmt.Errorf("%s has no address on %s", ctr.Alias, c.Network)
}

// directClient is a client to one Redis container through its published port.
func (c *Cluster) directClient(ctx context.Context, ctr *Container) (*redis.Client, error) {
	ep, err := ctr.PortEndpoint(ctx, RedisPort, "")
	if err != nil {
		return nil, err
	}
	return redis.NewClient(&redis.Options{Addr: ep, ContextTimeoutEnabled: true, MaxRetries: -1}), nil
}

func (c *Cluster) sentinelClient(ctx context.Context, ctr *Container) (*redis.SentinelClient, error) {
	ep, err := ctr.PortEndpoint(ctx, SentinelPort, "")
	if err != nil {
		return nil, err
	}
	return redis.NewSentinelClient(&redis.Options{Addr: ep, ContextTimeoutEnabled: true, MaxRetries: -1}), nil
}

// SentinelClient is a client to sentinel i (0-2) of a RedisSentinel
// topology, from the host. The caller closes it.
func (c *Cluster) SentinelClient(ctx context.Context, i int) (*redis.SentinelClient, error) {
	if i < 0 || i >= len(c.Sentinels) {
		return nil, fmt.Errorf("no sentinel %d", i)
	}
	return c.sentinelClient(ctx, c.Sentinels[i])
}

// RedisNode returns the Redis container whose cluster-network address is
// addr ("ip:6379", as Sentinel and CLUSTER SLOTS name them).
func (c *Cluster) RedisNode(ctx context.Context, addr string) (*Container, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	for _, n := range c.RedisNodes {
		if ip, err := c.IP(ctx, n); err == nil && ip == host {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no Redis container at %s", addr)
}

// hostDialer reaches the cluster network's Redis and sentinel addresses
// (container IPs that Sentinel and CLUSTER SLOTS hand out) through their
// published ports, so a host-side client follows failovers and redirects
// without routing into the Docker network.
func (c *Cluster) hostDialer(ctx context.Context) (func(ctx context.Context, network, addr string) (net.Conn, error), []string, error) {
	m := map[string]string{}
	var sentinels []string
	add := func(ctr *Container, port string) error {
		// A stopped (killed) container has neither: it is left out.
		ip, err := c.IP(ctx, ctr)
		if err != nil {
			return nil
		}
		ep, err := ctr.PortEndpoint(ctx, port, "")
		if err != nil {
			return nil
		}
		inner := net.JoinHostPort(ip, strings.TrimSuffix(port, "/tcp"))
		m[inner] = ep
		if port == SentinelPort {
			sentinels = append(sentinels, inner)
		}
		return nil
	}
	for _, n := range c.RedisNodes {
		if err := add(n, RedisPort); err != nil {
			return nil, nil, err
		}
	}
	for _, s := range c.Sentinels {
		if err := add(s, SentinelPort); err != nil {
			return nil, nil, err
		}
	}
	var mu sync.Mutex
	d := &net.Dialer{Timeout: 2 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		to, ok := m[addr]
		mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("ghtest: %s is not a Redis address of this cluster", addr)
		}
		return d.DialContext(ctx, network, to)
	}, sentinels, nil
}

// redisClient is a host-side client for the configured topology.
func (c *Cluster) redisClient(ctx context.Context) (redis.UniversalClient, error) {
	if c.cfg.topology == RedisSingle {
		ep, err := c.Redis.PortEndpoint(ctx, RedisPort, "")
		if err != nil {
			return nil, err
		}
		return redis.NewClient(&redis.Options{Addr: ep, ContextTimeoutEnabled: true}), nil
	}
	dial, sentinels, err := c.hostDialer(ctx)
	if err != nil {
		return nil, err
	}
	if c.cfg.topology == RedisSentinel {
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: sentinels,
			Dialer: dial, DialerRetries: 1, ContextTimeoutEnabled: true}), nil
	}
	var addrs []string
	for _, n := range c.RedisNodes {
		if ip, err := c.IP(ctx, n); err == nil {
			addrs = append(addrs, net.JoinHostPort(ip, "6379"))
		}
	}
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Dialer: dial, DialerRetries: 1, ContextTimeoutEnabled: true}), nil
}

// userConfig sets the container's user (spec.user).
func userConfig(user string) func(*container.Config) {
	return func(cc *container.Config) {
		if user != "" {
			cc.User = user
		}
	}
}
