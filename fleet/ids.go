package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// ErrInvalid marks bad input rejected before anything was written.
var ErrInvalid = errors.New("invalid")

// ValidID reports whether id is usable as a host or service id: 1–128 bytes
// of letters, digits and . _ - / (no braces, colons or spaces, which would
// break the key schema or ACL patterns).
func ValidID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-', c == '/':
		default:
			return false
		}
	}
	return true
}

// HashKey returns the SHA-256 of an API key secret.
func HashKey(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

// HashKeyHex is HashKey in hex, as stored in APIKey.Hash.
func HashKeyHex(secret string) string { h := HashKey(secret); return hex.EncodeToString(h[:]) }
