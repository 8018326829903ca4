// Package localimages prepares this repository's container tests (ghtest's
// examples, the chaos suite): it decides whether they run, builds the
// images locally with deploy/build-images.sh (once per test binary; the
// script keeps images whose inputs did not change) and points
// GENIEHIVE_IMAGE, REDIS_IMAGE and LB_IMAGE at them unless already set.
//
// The container tests run when GENIEHIVE_CHAOS=1 (scripts/test.sh, i.e.
// `make test`, sets it) or CI=true, never as a side effect of a plain
// `go test ./...` on a developer's machine (building the images may
// install Debian packages). GENIEHIVE_CHAOS=0 skips them everywhere.
// Without a reachable Docker engine they are skipped, except under
// CI=true, where that is a failure.
package localimages

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// ErrSkip wraps the reason container tests cannot run here (and may be skipped).
var ErrSkip = errors.New("container tests skipped")

// Prepare is called from TestMain. It returns nil when the container tests
// should run (images built, environment set), an ErrSkip-wrapped error
// when they may be skipped, and any other error when they must fail.
func Prepare() error {
	switch chaos := os.Getenv("GENIEHIVE_CHAOS"); {
	case chaos == "0":
		return fmt.Errorf("%w: GENIEHIVE_CHAOS=0", ErrSkip)
	case chaos != "1" && os.Getenv("CI") != "true":
		return fmt.Errorf("%w: container tests build images; run them with make test or GENIEHIVE_CHAOS=1", ErrSkip)
	}
	// No registry: the Ryuk reaper image cannot be pulled. Tests remove what
	// they start themselves.
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	// testcontainers reaches published ports through the default gateway
	// when it runs inside a container (/.dockerenv). When the Docker engine
	// runs in that same container (nested Docker, as on this machine), the
	// ports are on loopback instead.
	if os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") == "" && localDockerd() {
		os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	}
	if err := dockerUp(); err != nil {
		if os.Getenv("CI") == "true" {
			return fmt.Errorf("Docker is required under CI=true: %w", err)
		}
		return fmt.Errorf("%w: Docker unavailable: %v", ErrSkip, err)
	}
	return Build()
}

// localDockerd reports whether a dockerd process runs in this PID namespace.
func localDockerd() bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if b, err := os.ReadFile("/proc/" + e.Name() + "/comm"); err == nil && strings.TrimSpace(string(b)) == "dockerd" {
			return true
		}
	}
	return false
}

func dockerUp() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	defer dc.Close()
	_, err = dc.Ping(ctx, client.PingOptions{})
	return err
}

// Build runs deploy/build-images.sh and exports the image variables it
// prints (without overriding ones already set).
func Build() error {
	root := RepoRoot()
	t0 := time.Now()
	cmd := exec.Command("bash", filepath.Join(root, "deploy", "build-images.sh"), "--env")
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("deploy/build-images.sh: %w", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && os.Getenv(k) == "" {
			os.Setenv(k, v)
		}
	}
	fmt.Fprintf(os.Stderr, "localimages: ready in %s (%s, %s, %s)\n", time.Since(t0).Round(time.Millisecond),
		os.Getenv("GENIEHIVE_IMAGE"), os.Getenv("REDIS_IMAGE"), os.Getenv("LB_IMAGE"))
	return nil
}

// RepoRoot is the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}
