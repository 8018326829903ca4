package fleet

import "time"

// SwapOp is what a swap command asks a node to do with one model.
type SwapOp string

// Swap operations.
const (
	SwapLoad   SwapOp = "load"   // make the model resident (and keep it for KeepAlive)
	SwapUnload SwapOp = "unload" // free the model's memory
)

// Valid reports whether o is SwapLoad or SwapUnload.
func (o SwapOp) Valid() bool { return o == SwapLoad || o == SwapUnload }

// SwapCommand is one instruction on a node's command stream
// (gh:node:{<host>}:cmds). Only operators' processes (the edges' swap
// controller) write it; the node reads, executes and acknowledges it.
type SwapCommand struct {
	// ID is unique in the fleet (the issuing edge's id and a sequence);
	// the result is stored under it.
	ID string `json:"id"`
	Op SwapOp `json:"op"`
	// Service is the service id ("<host>/<name>") whose upstream does it.
	Service string `json:"service"`
	Model   string `json:"model"`
	// KeepAliveMS is how long a loaded model stays resident while idle
	// (Ollama's keep_alive): 0 the upstream's default, negative forever.
	// Unused by unload.
	KeepAliveMS int64 `json:"keep_alive_ms,omitempty"`
	// Deadline: a command not finished by then is expired, never run late.
	Deadline time.Time `json:"deadline"`
	Issuer   string    `json:"issuer,omitempty"` // the edge that sent it
	Reason   string    `json:"reason,omitempty"` // why (the swap policy's words)
}

// SwapStatus is how a command ended.
type SwapStatus string

// Swap results.
const (
	SwapDone    SwapStatus = "done"
	SwapFailed  SwapStatus = "failed"  // the upstream refused or erred (Error says what it said)
	SwapExpired SwapStatus = "expired" // not finished before its deadline (the node was dead, busy or slow)
)

// SwapResult is what came of one command
// (gh:node:{<host>}:res:<id>, with a TTL). The first writer wins: the node
// when it finishes, an edge that finds the deadline passed without one.
type SwapResult struct {
	ID     string     `json:"id"`
	Status SwapStatus `json:"status"`
	Error  string     `json:"error,omitempty"`
	// TookMS is the time from the node taking the command to its end.
	TookMS int64     `json:"took_ms,omitempty"`
	At     time.Time `json:"at"`
	By     string    `json:"by,omitempty"` // "node" or the edge id that expired it
}

// Swap capability of a service (Service.Swap).
const (
	SwapNone   = ""         // the service serves what it serves; never sent a command
	SwapOllama = "ollama"   // /api/generate with keep_alive, confirmed through /api/ps
	SwapRouter = "llamacpp" // llama.cpp router: POST /models/load, /models/unload, GET /models
)

// SwapControl is the swap controller's state of one service
// (gh:swap:ctl, written by the edge holding the swap lease, read by every
// edge): the command in flight, the swap under way, the cooldown, and
// since when each model has been seen resident.
type SwapControl struct {
	Service string `json:"service"`
	// Cmd is the command in flight on the service's node (nil: none).
	Cmd    *SwapCommand `json:"cmd,omitempty"`
	SentAt time.Time    `json:"sent_at,omitzero"`
	// Pending is the model unloads are making room for ("" none).
	Pending string `json:"pending,omitempty"`
	// CooldownUntil: no new swap starts on the service before then.
	CooldownUntil time.Time `json:"cooldown_until,omitzero"`
	// Settle: the last command ended then; the service counts as busy
	// until its node's heartbeat is newer (the snapshot shows the effect).
	Settle time.Time `json:"settle,omitzero"`
	// LoadedAt: when the controller first saw each resident model.
	LoadedAt map[string]time.Time `json:"loaded_at,omitempty"`
}

// SwapRecord is one entry of the swap log (gh:swap:log, newest first,
// capped): a decision sent or refused, or a command's outcome.
type SwapRecord struct {
	At      time.Time `json:"at"`
	Edge    string    `json:"edge"`
	Event   string    `json:"event"` // "sent", "refused" (by the guard), "outcome"
	Op      SwapOp    `json:"op"`
	Service string    `json:"service"`
	Model   string    `json:"model"`
	For     string    `json:"for,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	CmdID   string    `json:"cmd_id,omitempty"`
	// Result and Error of an outcome; TookMS from send to result.
	Result SwapStatus `json:"result,omitempty"`
	Error  string     `json:"error,omitempty"`
	TookMS int64      `json:"took_ms,omitempty"`
}
