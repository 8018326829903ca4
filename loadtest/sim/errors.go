package sim

import (
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strconv"
)

func randFloat() float64 { return rand.Float64() }

// api names the dialect a request arrived in: it decides the error shape.
type api uint8

const (
	apiOther        api = iota
	apiChat             // POST /v1/chat/completions
	apiCompletions      // POST /v1/completions
	apiEmbeddings       // POST /v1/embeddings
	apiResponses        // POST /v1/responses
	apiMessages         // POST /v1/messages, /v1/messages/count_tokens
	apiModels           // GET /v1/models, /v1/models/{id}
	apiOllamaNative     // /api/*
)

// apiErr is one error answer; each flavor renders it in its own shape.
type apiErr struct {
	status int
	msg    string
	typ    string // generic OpenAI flavor: the error type ("" = from status)
	code   string // generic OpenAI flavor: the error code (null when empty)
	param  string // generic OpenAI flavor: the parameter (null when empty)
	// bind: Ollama rejected the body before its handler ran (gin's
	// ShouldBindJSON or a middleware check): c.AbortWithStatusJSON with
	// openai.NewError(status), so a typed error and a charset content type
	// (middleware/openai.go), where handler errors come back as "api_error"
	// through BaseWriter.writeError.
	bind bool
}

const (
	ctJSON        = "application/json"
	ctJSONCharset = "application/json; charset=utf-8" // gin's c.JSON
	ctText        = "text/plain; charset=utf-8"
)

// fail writes e in the shape the simulated server uses for dialect a.
func (s *Server) fail(w http.ResponseWriter, a api, e apiErr) {
	if a == apiMessages && s.cfg.Flavor != FlavorWhisper {
		anthropicError(w, e.status, e.msg)
		return
	}
	switch s.cfg.Flavor {
	case FlavorOllama:
		if a == apiOllamaNative {
			// server/routes.go: c.JSON(status, gin.H{"error": msg}).
			writeJSON(w, e.status, ctJSONCharset, struct {
				Error string `json:"error"`
			}{e.msg}, false)
			return
		}
		// middleware/openai.go BaseWriter.writeError wraps the handler's
		// {"error": msg} in openai.NewError(500, msg): type "api_error"
		// whatever the status (recordings: 404 unknown model).
		status := http.StatusInternalServerError
		ct, nl := ctJSON, true
		if e.bind {
			status, ct, nl = e.status, ctJSONCharset, false
		}
		typ := "api_error"
		switch status {
		case http.StatusBadRequest:
			typ = "invalid_request_error"
		case http.StatusNotFound:
			typ = "not_found_error"
		}
		writeJSON(w, e.status, ct, oaiError{Error: oaiErrorBody{Message: e.msg, Type: typ}}, nl)
	case FlavorLlamaCPP:
		// tools/server/server-common.cpp format_error_response.
		writeJSON(w, e.status, ctJSONCharset, struct {
			Error llamaErrorBody `json:"error"`
		}{llamaErrorBody{Code: e.status, Message: e.msg, Type: llamaErrorType(e.status)}}, false)
	case FlavorVLLM:
		// vllm/entrypoints/openai/protocol.py ErrorResponse{error: ErrorInfo}
		// with code = the HTTP status.
		writeJSON(w, e.status, ctJSON, struct {
			Error vllmErrorBody `json:"error"`
		}{vllmErrorBody{Message: e.msg, Type: vllmErrorType(e.status), Code: e.status}}, false)
	default:
		// OpenAI's own error object (platform.openai.com/docs/guides/error-codes).
		body := oaiErrorBody{Message: e.msg, Type: e.typ}
		if body.Type == "" {
			body.Type = "invalid_request_error"
			if e.status >= 500 {
				body.Type = "server_error"
			}
		}
		if e.code != "" {
			body.Code = &e.code
		}
		if e.param != "" {
			body.Param = &e.param
		}
		writeJSON(w, e.status, ctJSON, oaiError{Error: body}, false)
	}
}

type oaiError struct {
	Error oaiErrorBody `json:"error"`
}

type oaiErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

type llamaErrorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Type    string `json:"type"`
}

func llamaErrorType(status int) string {
	switch status {
	case 400:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 501:
		return "not_supported_error"
	case 503:
		return "unavailable_error"
	}
	return "server_error"
}

type vllmErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    int     `json:"code"`
}

// vllmErrorType is the HTTPStatus phrase vLLM's create_error_response
// uses as the type ("NotFoundError", "BadRequestError", ...).
func vllmErrorType(status int) string {
	switch status {
	case 400:
		return "BadRequestError"
	case 404:
		return "NotFoundError"
	case 501:
		return "NotImplementedError"
	case 503:
		return "ServiceUnavailableError"
	}
	return "InternalServerError"
}

// anthropicError is Anthropic's error object as Ollama's anthropic/anthropic.go
// NewError builds it (type by status, request_id "req_<24 hex>"); vLLM and
// llama.cpp answer the same shape on /v1/messages.
func anthropicError(w http.ResponseWriter, status int, msg string) {
	typ := "api_error"
	switch status {
	case 400:
		typ = "invalid_request_error"
	case 401:
		typ = "authentication_error"
	case 403:
		typ = "permission_error"
	case 404:
		typ = "not_found_error"
	case 429:
		typ = "rate_limit_error"
	case 503, 529:
		typ = "overloaded_error"
	}
	writeJSON(w, status, ctJSON, struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
		RequestID string `json:"request_id"`
	}{Type: "error", Error: struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}{typ, msg}, RequestID: randomHexID("req")}, true)
}

// notFound answers a path the simulated server does not serve, as that
// server does.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	switch s.cfg.Flavor {
	case FlavorOllama:
		// gin's default NoRoute handler.
		writeRaw(w, http.StatusNotFound, ctText, []byte("404 page not found"))
	case FlavorLlamaCPP:
		// cpp-httplib 404 turned into JSON by llama-server (issue #14702).
		s.fail(w, apiOther, apiErr{status: 404, msg: "File Not Found"})
	case FlavorVLLM, FlavorWhisper:
		// FastAPI (Starlette) default.
		writeJSON(w, http.StatusNotFound, ctJSON, map[string]string{"detail": "Not Found"}, false)
	default:
		s.fail(w, apiOther, apiErr{status: 404, msg: "Invalid URL (" + r.Method + " " + r.URL.Path + ")"})
	}
}

// methodNotAllowed answers a known path with the wrong method.
func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	switch s.cfg.Flavor {
	case FlavorOllama:
		// gin with HandleMethodNotAllowed = true (server/routes.go).
		writeRaw(w, http.StatusMethodNotAllowed, ctText, []byte("405 method not allowed"))
	case FlavorVLLM, FlavorWhisper:
		writeJSON(w, http.StatusMethodNotAllowed, ctJSON, map[string]string{"detail": "Method Not Allowed"}, false)
	case FlavorLlamaCPP:
		// cpp-httplib has no 405: an unrouted method is a 404.
		s.notFound(w, r)
	default:
		s.fail(w, apiOther, apiErr{status: 405, code: "method_not_allowed", msg: "Method " + r.Method + " not allowed; use " + allow})
	}
}

func writeJSON(w http.ResponseWriter, status int, ct string, v any, newline bool) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"message":"encode failure","type":"server_error","param":null,"code":null}}`)
	}
	if newline {
		b = append(b, '\n') // json.Encoder, as Ollama's middleware writes
	}
	writeRaw(w, status, ct, b)
}

func writeRaw(w http.ResponseWriter, status int, ct string, b []byte) {
	h := w.Header()
	h["Content-Type"] = []string{ct}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// randomHexID is prefix + "_" + 24 hex digits (anthropic/anthropic.go generateID).
func randomHexID(prefix string) string {
	var b [12]byte
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return prefix + "_" + hex.EncodeToString(b[:])
}
