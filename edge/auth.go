package edge

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"

	"github.com/geniehive/geniehive/fleet"
	"github.com/valyala/fasthttp"
)

// keyring holds the keys from the configuration, by SHA-256 of the secret.
// Keys stored in Redis arrive with each snapshot (Snapshot.Keys).
//
// Auth fails closed: once it is on — auth_required, a configured key, a
// stored key, the gh:auth:enabled marker a stored key leaves behind, or a
// keyring that cannot be read — it stays on, and an empty or unreadable
// keyring lets nobody in (the edge reports itself degraded: degraded.go).
// Only a store that never held a key, with no key configured and
// auth_required unset, leaves auth off.
type keyring struct {
	byHash   map[[sha256.Size]byte]*fleet.APIKey
	required bool // auth_required
}

func newKeyring(cfg []KeyConfig) (*keyring, error) {
	kr := &keyring{byHash: make(map[[sha256.Size]byte]*fleet.APIKey, len(cfg))}
	for _, k := range cfg {
		var h [sha256.Size]byte
		if k.Secret != "" {
			h = sha256.Sum256([]byte(k.Secret))
		} else {
			b, err := hex.DecodeString(k.SHA256)
			if err != nil || len(b) != sha256.Size {
				return nil, &APIError{Message: "key " + k.ID + ": bad sha256"}
			}
			copy(h[:], b)
		}
		kr.byHash[h] = &fleet.APIKey{ID: k.ID, Hash: hex.EncodeToString(h[:]), Scope: k.Scope, Roles: k.Roles}
	}
	return kr, nil
}

// authEnabled reports whether requests must present a key.
func (kr *keyring) authEnabled(snap *fleet.Snapshot) bool {
	return kr.required || !kr.noKeyEver(snap)
}

// noKeyEver reports that nothing says auth was ever meant to be on: no key
// configured, none stored, no auth marker, and a keyring that read cleanly.
func (kr *keyring) noKeyEver(snap *fleet.Snapshot) bool {
	return len(kr.byHash) == 0 && (snap == nil || (len(snap.Keys) == 0 && !snap.AuthOn && snap.KeysError == ""))
}

var (
	hdrXAPIKey = []byte("X-Api-Key")
	bearer     = []byte("bearer ")
)

// duplicateKeyHeader reports whether the request carries more than one
// Authorization or more than one X-Api-Key header. Such a request is
// refused (errDuplicateKeyHeader) rather than authenticated by whichever
// comes first: a proxy or client that appends a header must not turn a
// request into one the edge reads differently from them. PeekAll reuses
// the header's own slice: no allocation once the header was used.
func duplicateKeyHeader(h *fasthttp.RequestHeader) bool {
	return len(h.PeekAll(fasthttp.HeaderAuthorization)) > 1 || len(h.PeekAll("X-Api-Key")) > 1
}

// presentedKey returns the secret the client sent (Authorization: Bearer or
// X-Api-Key), nil when none. The caller refuses a request with
// duplicateKeyHeader first.
func presentedKey(h *fasthttp.RequestHeader) []byte {
	if a := h.Peek(fasthttp.HeaderAuthorization); len(a) > len(bearer) {
		ok := true
		for i := range bearer {
			c := a[i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != bearer[i] {
				ok = false
				break
			}
		}
		if ok {
			k := a[len(bearer):]
			for len(k) > 0 && k[0] == ' ' {
				k = k[1:]
			}
			return k
		}
	}
	if k := h.PeekBytes(hdrXAPIKey); len(k) > 0 {
		return k
	}
	return nil
}

// lookup finds the key for a presented secret. The comparison of digests is
// constant time; the map lookup is over SHA-256 digests, which reveals
// nothing useful about secrets through timing.
func (kr *keyring) lookup(secret []byte, snap *fleet.Snapshot) *fleet.APIKey {
	if len(secret) == 0 {
		return nil
	}
	h := sha256.Sum256(secret)
	if k, ok := kr.byHash[h]; ok && constEq(h, k) {
		return k
	}
	if snap != nil {
		if k, ok := snap.Keys[h]; ok && constEq(h, k) {
			return k
		}
	}
	return nil
}

func constEq(h [sha256.Size]byte, k *fleet.APIKey) bool {
	var want [sha256.Size]byte
	if len(k.Hash) != 2*sha256.Size {
		return false
	}
	if _, err := hex.Decode(want[:], []byte(k.Hash)); err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(h[:], want[:]) == 1
}
