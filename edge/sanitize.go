package edge

import (
	"encoding/json"
	"regexp"
	"unicode/utf8"
)

// What a client may see of the edge's failures: the service id of an
// upstream, never its address, and never an upstream's error document as
// is (it may carry internal fields); an upstream's own message for a
// request it refused is relayed only when it names nothing internal. The
// details go to the log. A model name a client sent is echoed (404 bodies,
// the access log) cut to maxEchoedName bytes.

// maxEchoedName bounds a client's model name where the edge repeats it.
const maxEchoedName = 256

// clipName cuts s to maxEchoedName bytes at a UTF-8 boundary, marking the
// cut.
func clipName(s string) string {
	if len(s) <= maxEchoedName {
		return s
	}
	n := maxEchoedName
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "...(cut)"
}

// internalDetail matches what an upstream message must not carry to a
// client: addresses, URLs, dial errors, file paths.
var internalDetail = regexp.MustCompile(`(?i)\b\d{1,3}(\.\d{1,3}){3}\b|\[[0-9a-f:]*:[0-9a-f:]*\]|://|\bdial\b|\btcp\b|\bunix\b|\blocalhost\b|(^|[\s'"(=])/[a-z_.]`)

// maxRelayedMessage bounds an upstream message relayed to the client.
const maxRelayedMessage = 300

// upstreamMessage is the message of an upstream's error body (OpenAI's
// {"error":{"message"}}, Ollama's {"error":"..."}, vLLM's and FastAPI's
// top-level "message" or "detail"), when it is safe to show: short and
// naming no address or path. "" otherwise. param is the upstream's
// "param" when it is a plain field name.
func upstreamMessage(body []byte) (msg, param string) {
	var doc struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Detail  any             `json:"detail"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return "", ""
	}
	msg = doc.Message
	if len(doc.Error) > 0 {
		var s string
		var o struct {
			Message string `json:"message"`
			Param   string `json:"param"`
		}
		if json.Unmarshal(doc.Error, &s) == nil {
			msg = s
		} else if json.Unmarshal(doc.Error, &o) == nil && o.Message != "" {
			msg = o.Message
			if fieldName.MatchString(o.Param) {
				param = o.Param
			}
		}
	}
	if d, ok := doc.Detail.(string); ok && msg == "" {
		msg = d
	}
	if msg == "" || len(msg) > maxRelayedMessage || !utf8.ValidString(msg) || internalDetail.MatchString(msg) {
		return "", param
	}
	return msg, param
}

// fieldName is a request field path an upstream may name as its error's
// param.
var fieldName = regexp.MustCompile(`^[a-z_][a-z0-9_.\[\]]{0,63}$`)

// logUpstreamFailure logs the details of the failure a request ends with
// (the client sees Classify's sanitised answer).
func (s *Server) logUpstreamFailure(err error) {
	ue, ok := err.(*upstreamError)
	if !ok {
		return
	}
	body := ue.body
	if len(body) > 1024 {
		body = body[:1024]
	}
	s.log.Warn("upstream failed", "service", ue.service, "status", ue.status, "err", ue.Error(), "body", string(body))
}
