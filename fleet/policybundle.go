package fleet

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Bundle files travel as JSON strings, and JSON strings are UTF-8: a
// module.wasm (or any file that is not valid UTF-8) stored as one had every
// byte >= 0x80 replaced by U+FFFD, while the push reported success. Such
// files are stored base64-encoded, marked in "encodings"; text files stay
// as they are, so a bundle stored before the marker existed reads as it
// did.

// EncodingBase64 marks a bundle file stored as standard base64.
const EncodingBase64 = "base64"

// policyBundleJSON is PolicyBundle's stored form.
type policyBundleJSON struct {
	Version string            `json:"version"`
	Files   map[string]string `json:"files"`
	// Encodings names, per path, how a file in Files is encoded; absent
	// means the content itself (valid UTF-8).
	Encodings map[string]string `json:"encodings,omitempty"`
	PushedAt  time.Time         `json:"pushed_at"`
}

// MarshalJSON stores files that are not valid UTF-8 as base64.
func (b PolicyBundle) MarshalJSON() ([]byte, error) {
	out := policyBundleJSON{Version: b.Version, Files: make(map[string]string, len(b.Files)), PushedAt: b.PushedAt}
	for p, s := range b.Files {
		if utf8.ValidString(s) {
			out.Files[p] = s
			continue
		}
		if out.Encodings == nil {
			out.Encodings = map[string]string{}
		}
		out.Files[p] = base64.StdEncoding.EncodeToString([]byte(s))
		out.Encodings[p] = EncodingBase64
	}
	return json.Marshal(out)
}

// UnmarshalJSON decodes what MarshalJSON stores, and bundles stored before
// encodings existed.
//
// # Errors
// An unknown encoding, a marker for a file that is not there, or content
// that does not decode.
func (b *PolicyBundle) UnmarshalJSON(raw []byte) error {
	var in policyBundleJSON
	if err := json.Unmarshal(raw, &in); err != nil {
		return err
	}
	for p, enc := range in.Encodings {
		s, ok := in.Files[p]
		if !ok {
			return fmt.Errorf("%w: policy bundle: encoding for %q, which it does not hold", ErrInvalid, p)
		}
		if enc != EncodingBase64 {
			return fmt.Errorf("%w: policy bundle: %q has unknown encoding %q", ErrInvalid, p, enc)
		}
		d, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return fmt.Errorf("%w: policy bundle: %q: %v", ErrInvalid, p, err)
		}
		in.Files[p] = string(d)
	}
	*b = PolicyBundle{Version: in.Version, Files: in.Files, PushedAt: in.PushedAt}
	return nil
}
