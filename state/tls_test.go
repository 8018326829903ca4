package state_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/state"
)

// writeCert issues a certificate signed by parent (self-signed when parent
// is nil) and writes cert and key as PEM under dir/name.{crt,key}.
func writeCert(t *testing.T, dir, name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	return c, key
}

// TLS to Redis (rediss://) against a real redis-server that requires a
// client certificate (--tls-auth-clients yes): the certificate from the
// URL's tls_cert/tls_key (or Options) gets in, a client without one does
// not, and a server certificate not signed by tls_ca is refused.
func TestRedisTLSWithClientCertificate(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not found")
		}
		t.Skip("redis-server not found")
	}
	dir := t.TempDir()
	now := time.Now()
	ca, caKey := writeCert(t, dir, "ca", &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, nil, nil)
	writeCert(t, dir, "server", &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	writeCert(t, dir, "client", &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "node-gpu-a"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, caKey)
	// Another CA, for the "wrong server" case.
	writeCert(t, dir, "other", &x509.Certificate{SerialNumber: big.NewInt(4), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, nil, nil)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	f := func(n string) string { return filepath.Join(dir, n) }
	cmd := exec.Command(bin, "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", f("server.crt"), "--tls-key-file", f("server.key"), "--tls-ca-cert-file", f("ca.crt"),
		"--tls-auth-clients", "yes", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ctx := context.Background()
	base := "rediss://127.0.0.1:" + strconv.Itoa(port) + "/0"
	url := base + "?tls_cert=" + f("client.crt") + "&tls_key=" + f("client.key") + "&tls_ca=" + f("ca.crt")
	var c interface{ Close() error }
	deadline := time.Now().Add(10 * time.Second)
	for {
		cl, err := state.Connect(ctx, state.Options{URL: url})
		if err == nil {
			c = cl
			s := state.New(cl, "tls:")
			if err := s.PutKey(ctx, fleet.APIKey{ID: "k", Hash: fleet.HashKeyHex("x"), Scope: fleet.ScopeClient}); err != nil {
				t.Fatal(err)
			}
			if kr, err := s.ReadKeyring(ctx); err != nil || len(kr.Keys) != 1 {
				t.Fatalf("over TLS: %+v %v", kr, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect with a client certificate: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Close()
	// The same through Options instead of URL parameters.
	cl, err := state.Connect(ctx, state.Options{URL: base, TLSCert: f("client.crt"), TLSKey: f("client.key"), TLSCA: f("ca.crt")})
	if err != nil {
		t.Fatalf("Options TLS files: %v", err)
	}
	cl.Close()
	// No client certificate: the server refuses the handshake.
	if cl, err := state.Connect(ctx, state.Options{URL: base + "?tls_ca=" + f("ca.crt")}); err == nil {
		cl.Close()
		t.Fatal("connected without a client certificate to a server that requires one")
	}
	// A server the given CA did not sign: refused by the client.
	if cl, err := state.Connect(ctx, state.Options{URL: base, TLSCert: f("client.crt"), TLSKey: f("client.key"), TLSCA: f("other.crt")}); err == nil {
		cl.Close()
		t.Fatal("accepted a server certificate the CA did not sign")
	}
	// TLS files on a plain URL are a configuration error, not silently plaintext.
	if _, err := state.NewClient(state.Options{URL: "redis://127.0.0.1:1/0", TLSCA: f("ca.crt")}); err == nil {
		t.Fatal("TLS files accepted on redis://")
	}
}
