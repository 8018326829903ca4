package ghtest

import (
	"io"

	"context"
	"encoding/csv"
	"fmt"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
	"strings"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// Kill sends SIGKILL to the container (it stays, stopped; Start brings it back).
func (c *Cluster) Kill(ctx context.Context, ctr *Container) error {
	_, err := c.docker.ContainerKill(ctx, ctr.GetContainerID(), client.ContainerKillOptions{Signal: "KILL"})
	return err
}

// Stop stops the container gracefully: SIGTERM, then SIGKILL after grace.
func (c *Cluster) Stop(ctx context.Context, ctr *Container, grace time.Duration) error {
	return ctr.Stop(ctx, &grace)
}

// Restart starts a stopped (or killed) container again and waits for its
// readiness check (edges: the health endpoint).
func (c *Cluster) Restart(ctx context.Context, ctr *Container) error {
	return ctr.Start(ctx)
}

// Disconnect detaches the container from a network (cutting it off from
// everything it reached only there).
func (c *Cluster) Disconnect(ctx context.Context, ctr *Container, networkName string) error {
	_, err := c.docker.NetworkDisconnect(ctx, networkName, client.NetworkDisconnectOptions{Container: ctr.GetContainerID(), Force: true})
	return err
}

// Connect attaches the container to a network again under its alias.
func (c *Cluster) Connect(ctx context.Context, ctr *Container, networkName string) error {
	_, err := c.docker.NetworkConnect(ctx, networkName, client.NetworkConnectOptions{
		Container:      ctr.GetContainerID(),
		EndpointConfig: endpointWithAlias(ctr.Alias),
	})
	return err
}

// LBServers reports the load balancer's view of the edges: alias -> status
// ("UP", "DOWN", "MAINT", "UP 1/2", ...).
func (c *Cluster) LBServers(ctx context.Context) (map[string]string, error) {
	if c.LB == nil {
		return nil, fmt.Errorf("no load balancer")
	}
	u, err := c.LB.PortEndpoint(ctx, LBStatsPort, "http")
	if err != nil {
		return nil, err
	}
	b, err := c.getURL(ctx, u+"/stats;csv", "")
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(b), "# ")))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil || len(recs) == 0 {
		return nil, fmt.Errorf("stats csv: %v", err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	px, sv, st := col["pxname"], col["svname"], col["status"]
	out := map[string]string{}
	for _, rec := range recs[1:] {
		if len(rec) <= st || rec[px] != "edges" || rec[sv] == "BACKEND" || rec[sv] == "FRONTEND" {
			continue
		}
		out[rec[sv]] = rec[st]
	}
	return out, nil
}

// WaitLBServers waits until n edges are UP in the load balancer's pool.
func (c *Cluster) WaitLBServers(ctx context.Context, n int) error {
	var last map[string]string
	var lastErr error
	for {
		m, err := c.LBServers(ctx)
		up := 0
		for _, s := range m {
			if s == "UP" {
				up++
			}
		}
		if err == nil && up >= n {
			return nil
		}
		last, lastErr = m, err
		select {
		case <-ctx.Done():
			return fmt.Errorf("load balancer: want %d edges UP, have %v (err %v): %w", n, last, lastErr, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitLBStatus waits until the named edge has the given status in the pool.
func (c *Cluster) WaitLBStatus(ctx context.Context, alias string, status func(string) bool) error {
	var last string
	for {
		m, err := c.LBServers(ctx)
		if err == nil {
			last = m[alias]
			if status(last) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("load balancer: %s still %q: %w", alias, last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func endpointWithAlias(alias string) *network.EndpointSettings {
	return &network.EndpointSettings{Aliases: []string{alias}}
}

// Command runs `geniehive ARGS...` once in a container of the geniehive
// image on the cluster network, with GENIEHIVE_REDIS_URL pointing at the
// cluster's Redis and files (container path -> content) copied in first,
// and returns its combined output. A non-zero exit is an error carrying
// the output.
//
//	out, err := c.Command(ctx, map[string]string{"/work/catalog.yaml": yaml}, "roles", "load", "/work/catalog.yaml")
func (c *Cluster) Command(ctx context.Context, files map[string]string, args ...string) (string, error) {
	alias := "cmd-" + randHex(3)
	ctr, err := c.start(ctx, alias, c.cfg.image, spec{
		cmd:      args,
		env:      map[string]string{"GENIEHIVE_REDIS_URL": c.redisURL()},
		files:    files,
		networks: []string{c.Network},
		wait:     wait.ForExit().WithExitTimeout(2 * time.Minute),
	})
	if ctr == nil {
		return "", err
	}
	defer func() {
		_ = testcontainers.TerminateContainer(ctr.Container)
		c.forget(ctr)
	}()
	var out string
	if rc, lerr := ctr.Logs(ctx); lerr == nil {
		b, _ := io.ReadAll(rc)
		rc.Close()
		out = string(b)
	}
	if err != nil {
		return out, err
	}
	st, err := ctr.State(ctx)
	if err != nil {
		return out, err
	}
	if st.ExitCode != 0 {
		return out, fmt.Errorf("geniehive %s: exit status %d: %s", strings.Join(args, " "), st.ExitCode, out)
	}
	return out, nil
}

func (c *Cluster) forget(ctr *Container) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.all {
		if x == ctr {
			c.all = append(c.all[:i], c.all[i+1:]...)
			return
		}
	}
}
