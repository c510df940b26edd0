package push

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-push/push/client"
)

func init() {
	caddy.RegisterModule(Client{})
}

// Client is the `push_client` handler: it serves push.js, the browser
// client, embedded in the module; a request whose path ends in `.d.ts`
// gets its TypeScript types instead. Responses carry an ETag (a request
// with a matching If-None-Match gets 304) and, unless a Cache-Control
// header is already set, `Cache-Control: public, max-age=3600`.
type Client struct{}

// CaddyModule returns the Caddy module information.
func (Client) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.push_client",
		New: func() caddy.Module { return new(Client) },
	}
}

// clientFile is one embedded file with its ETag.
type clientFile struct {
	body        []byte
	etag        string
	contentType string
}

func newClientFile(body []byte, contentType string) clientFile {
	sum := sha256.Sum256(body)
	return clientFile{
		body:        body,
		etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		contentType: contentType,
	}
}

var (
	clientJS    = newClientFile(client.JS, "text/javascript; charset=utf-8")
	clientTypes = newClientFile(client.Types, "application/typescript; charset=utf-8")
)

// ServeHTTP serves push.js or push.d.ts.
func (Client) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed for push.js", r.Method))
	}
	f := clientJS
	if strings.HasSuffix(r.URL.Path, ".d.ts") {
		f = clientTypes
	}
	hdr := w.Header()
	hdr.Set("Content-Type", f.contentType)
	hdr.Set("ETag", f.etag)
	if hdr.Get("Cache-Control") == "" {
		hdr.Set("Cache-Control", "public, max-age=3600")
	}
	// ServeContent answers If-None-Match (304), HEAD and ranges.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
	return nil
}

// Interface guards
var _ caddyhttp.MiddlewareHandler = (*Client)(nil)
