//go:build wasip1 && stdjson

package main

import "encoding/json"

// encoding/json variant, for comparison (build with -tags stdjson).

func parseRequest(b []byte, r *request) bool {
	return json.Unmarshal(b, r) == nil
}

func parseModels(b []byte) (map[string][]string, bool) {
	var d struct {
		Models map[string][]string `json:"models"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, false
	}
	return d.Models, true
}
