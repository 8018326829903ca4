package console

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func serve(method, path, inm string) *fasthttp.Response {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(path)
	if inm != "" {
		ctx.Request.Header.Set("If-None-Match", inm)
	}
	Serve(&ctx)
	resp := new(fasthttp.Response)
	ctx.Response.CopyTo(resp)
	return resp
}

// Every answer carries the security headers; the index, script and
// stylesheet are served with their types; anything else is 404 or 405.
func TestServeFilesAndHeaders(t *testing.T) {
	for path, ctype := range map[string]string{"/ui/": "text/html", "/ui/index.html": "text/html", "/ui/app.js": "javascript", "/ui/app.css": "text/css",
		"/ui/nope.js": "", "/ui/../go.mod": ""} {
		r := serve("GET", path, "")
		if r.Header.Peek("Content-Security-Policy") == nil || string(r.Header.Peek("X-Content-Type-Options")) != "nosniff" {
			t.Errorf("%s: security headers missing: %s", path, r.Header.String())
		}
		if ctype == "" {
			if r.StatusCode() != 404 {
				t.Errorf("%s: %d, want 404", path, r.StatusCode())
			}
			continue
		}
		if r.StatusCode() != 200 || !strings.Contains(string(r.Header.ContentType()), ctype) || len(r.Body()) == 0 {
			t.Errorf("%s: %d %q (%d bytes)", path, r.StatusCode(), r.Header.ContentType(), len(r.Body()))
		}
		etag := string(r.Header.Peek("ETag"))
		if r2 := serve("GET", path, etag); r2.StatusCode() != 304 || len(r2.Body()) != 0 {
			t.Errorf("%s with its ETag: %d", path, r2.StatusCode())
		}
	}
	if r := serve("GET", "/ui", ""); r.StatusCode() != 301 || !strings.HasSuffix(string(r.Header.Peek("Location")), "/ui/") {
		t.Errorf("/ui: %d %q", r.StatusCode(), r.Header.Peek("Location"))
	}
	if r := serve("POST", "/ui/", ""); r.StatusCode() != 405 {
		t.Errorf("POST /ui/: %d", r.StatusCode())
	}
}

// The page loads nothing from elsewhere and runs no inline script or
// style (the CSP would block them): every src/href is relative or a
// fragment, and there is no <script> body, style attribute or handler.
func TestNoExternalOrInlineContent(t *testing.T) {
	html := string(files["index.html"].body)
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(html, -1) {
		if u := m[1]; strings.Contains(u, "//") || strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "/ui/") {
			t.Errorf("index.html refers to %q", u)
		}
	}
	if regexp.MustCompile(`<script[^>]*>[^<]+</script>|style="|<style|\son[a-z]+="`).MatchString(html) {
		t.Error("index.html has inline script, style or an event handler attribute")
	}
	for name, f := range files {
		if strings.Contains(string(f.body), "http://") || strings.Contains(string(f.body), "https://") {
			t.Errorf("%s names an absolute URL", name)
		}
	}
	if !strings.Contains(CSP, "default-src 'self'") || !strings.Contains(CSP, "frame-ancestors 'none'") || strings.Contains(CSP, "unsafe-inline") {
		t.Errorf("CSP %q", CSP)
	}
}

// The console's refusals are in OpenAI's error format like every other
// answer of the edge (docs/API.md: 404 not_found, 405 method_not_allowed),
// with the security headers kept.
func TestErrorsAreOpenAIFormat(t *testing.T) {
	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{{"POST", "/ui/", 405, "method_not_allowed"}, {"DELETE", "/ui/app.js", 405, "method_not_allowed"}, {"GET", "/ui/nope.js", 404, "not_found"}} {
		r := serve(c.method, c.path, "")
		var doc struct {
			Error struct{ Message, Type, Code string } `json:"error"`
		}
		if err := json.Unmarshal(r.Body(), &doc); err != nil || r.StatusCode() != c.status || doc.Error.Code != c.code ||
			doc.Error.Type != "invalid_request_error" || doc.Error.Message == "" || !strings.HasPrefix(string(r.Header.ContentType()), "application/json") {
			t.Errorf("%s %s: %d %q %s", c.method, c.path, r.StatusCode(), r.Header.ContentType(), r.Body())
		}
		if r.Header.Peek("Content-Security-Policy") == nil {
			t.Errorf("%s %s: CSP missing", c.method, c.path)
		}
	}
}
