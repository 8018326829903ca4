package dialect

import (
	"time"

	"github.com/geniehive/geniehive/internal/jsonw"
)

// Model is one entry of Anthropic's model list.
type Model struct {
	ID          string
	DisplayName string // ID when empty
	Created     time.Time
	// MaxInputTokens and MaxTokens, when known (> 0), are written too.
	MaxInputTokens, MaxTokens int
}

// AppendAnthropicModels appends GET /v1/models in Anthropic's format
// (what a client sending anthropic-version expects):
// {"data":[{"type":"model","id","display_name","created_at"}],
// "has_more":false,"first_id","last_id"}, created_at in RFC 3339.
func AppendAnthropicModels(dst []byte, models []Model) []byte {
	dst = append(dst, `{"data":[`...)
	for i := range models {
		m := &models[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"type":"model","id":`...)
		dst = jsonw.AppendString(dst, m.ID)
		dst = append(dst, `,"display_name":`...)
		if m.DisplayName != "" {
			dst = jsonw.AppendString(dst, m.DisplayName)
		} else {
			dst = jsonw.AppendString(dst, m.ID)
		}
		dst = append(dst, `,"created_at":"`...)
		dst = m.Created.UTC().AppendFormat(dst, time.RFC3339)
		dst = append(dst, '"')
		if m.MaxInputTokens > 0 {
			dst = append(dst, `,"max_input_tokens":`...)
			dst = appendInt(dst, m.MaxInputTokens)
		}
		if m.MaxTokens > 0 {
			dst = append(dst, `,"max_tokens":`...)
			dst = appendInt(dst, m.MaxTokens)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `],"has_more":false,"first_id":`...)
	if len(models) == 0 {
		return append(dst, `null,"last_id":null}`...)
	}
	dst = jsonw.AppendString(dst, models[0].ID)
	dst = append(dst, `,"last_id":`...)
	dst = jsonw.AppendString(dst, models[len(models)-1].ID)
	return append(dst, '}')
}
