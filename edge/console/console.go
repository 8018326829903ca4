// Package console serves GenieHive's operator console: a few static files
// (HTML, one script, one stylesheet) embedded in the binary and served at
// /ui/ on every edge. No build step and no external request: the page
// talks only to its own edge — /v1/cluster/* and /v1/models for the data,
// /v1/cluster/events for live updates — with the reader key the operator
// types once (kept in the tab's sessionStorage, sent as a bearer token;
// none is asked when auth is off).
//
// The files hold no data and need no key; everything they show comes from
// the authenticated APIs. Every answer carries a strict Content-Security-
// Policy (default-src 'self', no inline script or style, no framing),
// X-Content-Type-Options: nosniff and no-referrer.
//
// Serve is safe for concurrent use; the files and their ETags are built
// once at init.
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"path"
	"strings"

	"github.com/valyala/fasthttp"
)

// Prefix is the path the console is served under.
const Prefix = "/ui/"

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every console answer.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

type file struct {
	body  []byte
	ctype string
	etag  string
}

var files = func() map[string]*file {
	m := map[string]*file{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		m[strings.TrimPrefix(p, "static/")] = &file{body: b, ctype: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("console: embedded files: " + err.Error())
	}
	return m
}()

// Files lists the served file names (for tests and the size budget).
func Files() map[string]int {
	out := make(map[string]int, len(files))
	for n, f := range files {
		out[n] = len(f.body)
	}
	return out
}

// Serve answers a request for /ui or a path under /ui/: GET and HEAD only;
// /ui and /ui/ give index.html; an unknown file is 404.
func Serve(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	p := string(ctx.Path())
	if p == "/ui" {
		ctx.Redirect(Prefix, fasthttp.StatusMovedPermanently)
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		h.Set("Allow", "GET, HEAD")
		apiError(ctx, fasthttp.StatusMethodNotAllowed, errMethod)
		return
	}
	name := strings.TrimPrefix(p, Prefix)
	if name == "" {
		name = "index.html"
	}
	f, ok := files[name]
	if !ok {
		apiError(ctx, fasthttp.StatusNotFound, errNotFound)
		return
	}
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	if string(ctx.Request.Header.Peek("If-None-Match")) == f.etag {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	h.SetContentType(f.ctype)
	ctx.SetBody(f.body)
}

// The console's refusals, in OpenAI's error format like every other answer
// of the edge (docs/API.md).
const (
	errMethod   = `{"error":{"message":"method not allowed on the console (allowed: GET, HEAD)","type":"invalid_request_error","code":"method_not_allowed","param":null}}`
	errNotFound = `{"error":{"message":"the console has no such file","type":"invalid_request_error","code":"not_found","param":null}}`
)

// apiError answers status with an error document, keeping the headers set
// so far (fasthttp's ctx.Error would reset them).
func apiError(ctx *fasthttp.RequestCtx, status int, doc string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(doc)
}
