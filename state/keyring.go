package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/geniehive/geniehive/fleet"
	"github.com/redis/go-redis/v9"
)

// ErrCorrupt marks operator state that Redis returned but that cannot be
// used as it is (a malformed key entry, a catalog or bundle that does not
// decode, a key of the wrong type). Readers keep the last good value they
// hold and report the problem; they never fall back to "nothing is
// configured", which for keys would mean "auth is off".
var ErrCorrupt = errors.New("corrupt")

// KeyringError reports a keyring that is unreadable in whole or in part:
// the entries named in BadIDs did not parse (or failed validation), or the
// keys hash itself could not be read as a hash (Whole). errors.Is
// ErrCorrupt.
type KeyringError struct {
	BadIDs []string
	Whole  string // non-empty when the whole keyring is unreadable
}

func (e *KeyringError) Error() string {
	if e.Whole != "" {
		return "keyring unreadable: " + e.Whole
	}
	return "keyring has unparsable entries: " + strings.Join(e.BadIDs, ", ")
}

// Is makes a KeyringError match ErrCorrupt.
func (e *KeyringError) Is(target error) bool { return target == ErrCorrupt }

// Keyring is what Redis holds about API keys.
type Keyring struct {
	// Keys are the entries that parsed and validated, sorted by ID.
	Keys []fleet.APIKey
	// AuthOn is the gh:auth:enabled marker: set by every key ever stored
	// (PutKey) and never cleared by deleting keys, so an edge knows auth
	// was on even when the keyring is now empty.
	AuthOn bool
}

// ReadKeyring reads the stored keys and the auth marker in one round trip.
//
// # Errors
// A *KeyringError (errors.Is ErrCorrupt) when an entry does not parse or
// the keys key is not a hash; the Keyring then still holds every valid
// entry and the marker. Other Redis errors, with an empty Keyring.
func (s *Store) ReadKeyring(ctx context.Context) (Keyring, error) {
	var all *redis.MapStringStringCmd
	var auth *redis.IntCmd
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		all = p.HGetAll(ctx, s.kKeys)
		auth = p.Exists(ctx, s.kAuth)
		return nil
	})
	var kr Keyring
	if auth.Err() == nil {
		kr.AuthOn = auth.Val() == 1
	}
	if err != nil {
		if isWrongType(all.Err()) && auth.Err() == nil {
			return kr, &KeyringError{Whole: all.Err().Error()}
		}
		return Keyring{}, err
	}
	var kerr *KeyringError
	kr.Keys = make([]fleet.APIKey, 0, len(all.Val()))
	for id, v := range all.Val() {
		k, err := decodeKey(id, v)
		if err != nil {
			if kerr == nil {
				kerr = &KeyringError{}
			}
			kerr.BadIDs = append(kerr.BadIDs, id)
			continue
		}
		kr.Keys = append(kr.Keys, k)
	}
	sort.Slice(kr.Keys, func(i, j int) bool { return kr.Keys[i].ID < kr.Keys[j].ID })
	if kerr != nil {
		sort.Strings(kerr.BadIDs)
		return kr, kerr
	}
	return kr, nil
}

// ListKeys returns every stored API key that parses, sorted by ID.
//
// # Errors
// As ReadKeyring: a *KeyringError comes with the valid keys.
func (s *Store) ListKeys(ctx context.Context) ([]fleet.APIKey, error) {
	kr, err := s.ReadKeyring(ctx)
	return kr.Keys, err
}

// decodeKey parses one gh:keys entry strictly: the JSON must decode, its
// id must be the field's, the hash 64 hex digits and the scope known. An
// entry that fails is an error, never a skipped key: skipping the only
// entry would leave an empty keyring.
func decodeKey(id, v string) (fleet.APIKey, error) {
	var k fleet.APIKey
	if err := json.Unmarshal([]byte(v), &k); err != nil {
		return k, err
	}
	if k.ID != id {
		return k, fmt.Errorf("entry %q holds key id %q", id, k.ID)
	}
	if h, err := hex.DecodeString(k.Hash); err != nil || len(h) != sha256.Size {
		return k, fmt.Errorf("entry %q: bad sha256", id)
	}
	if !k.Scope.Valid() {
		return k, fmt.Errorf("entry %q: scope %q", id, k.Scope)
	}
	return k, nil
}

func isWrongType(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "WRONGTYPE")
}

// PutGoodBundle records pb as the last policy bundle an edge loaded and
// tested (gh:policy:good: version, digest, bundle), unless it is the one
// recorded already. Edges call it after every successful load of a pushed
// bundle; a restarted edge that finds the pushed bundle broken loads this
// one instead of the shipped policy.
func (s *Store) PutGoodBundle(ctx context.Context, pb *fleet.PolicyBundle, digest string) error {
	k := s.prefix + "policy:good"
	if cur, err := s.c.HGet(ctx, k, "digest").Result(); err == nil && cur == digest {
		return nil
	}
	raw, err := json.Marshal(pb)
	if err != nil {
		return err
	}
	return s.c.HSet(ctx, k, "version", pb.Version, "digest", digest, "bundle", raw).Err()
}

// GoodBundle reads what PutGoodBundle recorded; nil, "", nil when nothing
// is.
//
// # Errors
// Redis errors; a record that does not decode (errors.Is ErrCorrupt).
func (s *Store) GoodBundle(ctx context.Context) (*fleet.PolicyBundle, string, error) {
	m, err := s.c.HGetAll(ctx, s.prefix+"policy:good").Result()
	if err != nil || len(m) == 0 {
		return nil, "", err
	}
	var pb fleet.PolicyBundle
	if err := json.Unmarshal([]byte(m["bundle"]), &pb); err != nil {
		return nil, "", fmt.Errorf("last good policy bundle is %w: %v", ErrCorrupt, err)
	}
	return &pb, m["digest"], nil
}
