package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// The swap rule (issue 14): data.geniehive.swap decides which models the
// fleet loads and unloads. The swap controller (package swap), run by one
// edge at a time, evaluates it about once a second with a SwapInput and
// carries out the actions of the SwapDecision it returns, each checked
// against the hard limits first (swap.Guard): a policy can choose, never
// overfill VRAM, evict a model with requests in flight or a pinned one, or
// send a second command to a node with one in flight.

// SwapQuery is the query of the swap rule; SwapEntrypoint its Wasm
// entrypoint.
const (
	SwapQuery      = "data.geniehive.swap"
	SwapEntrypoint = "geniehive/swap"
)

// SwapInput is the swap rule's input document (input.* in Rego).
type SwapInput struct {
	SchemaVersion int   `json:"schema_version"`
	NowMS         int64 `json:"now_ms"`
	// Settings are the operator's limits (edge config swap.*).
	Settings SwapSettings `json:"settings"`
	// Pinned are models never unloaded (catalog swap.pin).
	Pinned []string `json:"pinned"`
	// Demand lists the models requests are waiting for, fleet-wide, most
	// wanted first.
	Demand []SwapDemand `json:"demand"`
	// Services are the live services that can swap (fleet.Service.Swap).
	Services []SwapService `json:"services"`
}

// SwapSettings are the operator's limits, in milliseconds.
type SwapSettings struct {
	// MinResidencyMS: a model loaded less than this long ago is not
	// unloaded to make room.
	MinResidencyMS int64 `json:"min_residency_ms"`
	// IdleMS: a model is unloaded to make room only after this long
	// without a request.
	IdleMS int64 `json:"idle_ms"`
	// CooldownMS between the end of one swap on a service and the start
	// of the next.
	CooldownMS int64 `json:"cooldown_ms"`
}

// SwapDemand is how many requests wait for a model nobody has loaded.
type SwapDemand struct {
	Model   string `json:"model"`
	Waiting int    `json:"waiting"`
}

// SwapService is one service that can load and unload models.
type SwapService struct {
	ID        string `json:"id"`
	Host      string `json:"host"`
	VRAMTotal int64  `json:"vram_total"`
	VRAMUsed  int64  `json:"vram_used"`
	// Busy: a command is in flight on this service's node.
	Busy bool `json:"busy"`
	// CooldownUntilMS: no new swap starts before then.
	CooldownUntilMS int64 `json:"cooldown_until_ms"`
	// Pending is the model this service is unloading others to make room
	// for ("" when none): the swap under way, not subject to cooldown.
	Pending string      `json:"pending"`
	Models  []SwapModel `json:"models"`
}

// SwapModel is one model a service offers.
type SwapModel struct {
	Name   string `json:"name"`
	Loaded bool   `json:"loaded"`
	// Size is its VRAM size when loaded, else its size on disk (the best
	// estimate of what loading takes).
	Size     int64 `json:"size"`
	InFlight int64 `json:"in_flight"`
	// IdleMS since its last request (since it loaded when never used).
	IdleMS int64 `json:"idle_ms"`
	// ResidentMS since it loaded (as far as the controller saw it).
	ResidentMS int64 `json:"resident_ms"`
}

// SwapDecision is the swap rule's output.
type SwapDecision struct {
	Actions []SwapAction `json:"actions"`
}

// SwapAction asks one service to load or unload one model.
type SwapAction struct {
	Op      string `json:"op"` // "load" | "unload"
	Service string `json:"service"`
	Model   string `json:"model"`
	// For is the model an unload makes room for.
	For    string `json:"for,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// SwapEvaluator is implemented by engines that evaluate the swap rule (go,
// rego, wasm). The module engine does not: with it no swap is ever made.
type SwapEvaluator interface {
	// EvalSwap evaluates the swap rule; out is reset and filled.
	//
	// # Errors
	// ErrNoSwapRule when the policy defines none; otherwise as Eval.
	EvalSwap(ctx context.Context, in *SwapInput, out *SwapDecision) error
}

// ErrNoSwapRule: the running policy has no swap rule (a bundle without
// one, or the module engine). The fleet then makes no swaps.
var ErrNoSwapRule = errors.New("policy: the running policy has no swap rule")

// MaxSwapActions caps the actions one evaluation may return.
const MaxSwapActions = 256

// DecodeSwapDecision decodes a swap rule's value, refusing what is not a
// decision (ErrOutput).
func DecodeSwapDecision(b []byte, out *SwapDecision) error {
	*out = SwapDecision{}
	if err := json.Unmarshal(b, out); err != nil {
		return errors.Join(ErrOutput, fmt.Errorf("swap decision: %w", err))
	}
	if len(out.Actions) > MaxSwapActions {
		return errors.Join(ErrOutput, fmt.Errorf("swap decision: %d actions (at most %d)", len(out.Actions), MaxSwapActions))
	}
	for _, a := range out.Actions {
		if (a.Op != "load" && a.Op != "unload") || a.Service == "" || a.Model == "" {
			return errors.Join(ErrOutput, fmt.Errorf("swap decision: action %+v needs op load|unload, service and model", a))
		}
	}
	return nil
}
