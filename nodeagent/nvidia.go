package nodeagent

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/geniehive/geniehive/fleet"
)

// nvidiaSMIArgs is the query the agent runs.
var nvidiaSMIArgs = []string{"--query-gpu=index,name,memory.used,memory.total,utilization.gpu", "--format=csv,noheader,nounits"}

// nvidiaGPUs returns a GPU reader running the nvidia-smi at path.
func nvidiaGPUs(path string) func(context.Context) ([]fleet.GPU, error) {
	return func(ctx context.Context) ([]fleet.GPU, error) {
		out, err := exec.CommandContext(ctx, path, nvidiaSMIArgs...).Output()
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi: %w", err)
		}
		return parseNvidiaSMI(string(out))
	}
}

// parseNvidiaSMI parses the CSV nvidia-smi prints for nvidiaSMIArgs
// ("0, NVIDIA GeForce RTX 4090, 1234, 24564, 7"; memory in MiB). Values
// nvidia-smi cannot read ("[N/A]", "[Not Supported]") become 0.
func parseNvidiaSMI(out string) ([]fleet.GPU, error) {
	var gpus []fleet.GPU
	for n, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) < 5 {
			return nil, fmt.Errorf("nvidia-smi line %d: want 5 fields, got %q", n+1, line)
		}
		// A GPU name could contain a comma: the name is everything between
		// the first and the last three fields.
		idx, err := strconv.Atoi(strings.TrimSpace(f[0]))
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi line %d: index %q", n+1, f[0])
		}
		k := len(f)
		num := func(s string) int64 {
			v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil {
				return 0
			}
			return int64(v)
		}
		gpus = append(gpus, fleet.GPU{
			Index:          idx,
			Name:           strings.TrimSpace(strings.Join(f[1:k-3], ",")),
			VRAMUsedBytes:  num(f[k-3]) << 20,
			VRAMTotalBytes: num(f[k-2]) << 20,
			UtilPercent:    int(num(f[k-1])),
		})
	}
	return gpus, nil
}
