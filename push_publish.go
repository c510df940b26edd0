package push

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-push/push/hub"
)

func init() {
	caddy.RegisterModule(Publisher{})
}

// Publisher is the `push_publish` handler: it publishes through a normal
// site route, so that Caddy's matchers and auth (remote_ip, basic_auth,
// forward_auth, a header matcher, mTLS) protect it, and an application
// can publish without reaching Caddy's admin endpoint.
//
// It answers as the admin publish routes do: `POST ?topic=<topic>` (with
// `&event=<type>` if wanted) publishes the raw body as one message;
// `POST` without `?topic=` takes the JSON body of `POST /push/publish`,
// one message or a batch, all or nothing.
type Publisher struct {
	// Patterns of the topics this route may publish to (required): `*`
	// matches within one `/`-separated segment, `**` any number of
	// segments. Placeholders are expanded per request, e.g.
	// `user/{http.auth.user.id}/*`; one that is unset, empty, or holds a
	// `/` or `*` makes that pattern allow nothing.
	Publish []string `json:"publish,omitempty"`

	// Largest payload, in bytes; the push app's max_message_size applies
	// too. Default: the push app's.
	MaxMessageSize int64 `json:"max_message_size,omitempty"`

	hub      *hub.Hub
	logger   *zap.Logger
	publish  patternSet
	maxBytes int64
}

// CaddyModule returns the Caddy module information.
func (Publisher) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.push_publish",
		New: func() caddy.Module { return new(Publisher) },
	}
}

// Provision sets up the handler.
func (p *Publisher) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	var err error
	if p.publish, err = newPatternSet(p.Publish); err != nil {
		return err
	}
	p.hub, err = appHub(ctx)
	return err
}

// Validate checks the configuration.
func (p *Publisher) Validate() error {
	if len(p.Publish) == 0 {
		return errors.New("no publish pattern: the route could publish nothing")
	}
	for _, s := range p.Publish {
		if err := checkPattern(s); err != nil {
			return fmt.Errorf("publish: %v", err)
		}
	}
	if p.MaxMessageSize < 0 {
		return errors.New("max_message_size must not be negative")
	}
	return nil
}

// ServeHTTP publishes the request's message or messages.
func (p *Publisher) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	allowed := p.publish.forRequest(r)
	pub := publisher{hub: p.hub, allowed: func(_ *http.Request, topic string) bool { return allowed.match(topic) }, maxSize: p.MaxMessageSize}
	var err error
	switch {
	case r.Method != http.MethodPost:
		err = methodNotAllowed(w, http.MethodPost)
	case r.URL.Query().Has("topic"):
		err = publishRaw(w, r, pub, r.URL.Query().Get("topic"))
	default:
		err = publishJSON(w, r, pub)
	}
	if err == nil {
		return nil
	}
	// Answer as the admin API does: the status and {"error":"..."}.
	var apiErr caddy.APIError
	if !errors.As(err, &apiErr) {
		apiErr = caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	if apiErr.Message == "" && apiErr.Err != nil {
		apiErr.Message = apiErr.Err.Error()
	}
	p.logger.Debug("publish refused", zap.Int("status", apiErr.HTTPStatus), zap.Error(err))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(apiErr.HTTPStatus)
	return json.NewEncoder(w).Encode(apiErr)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Publisher)(nil)
	_ caddy.Validator             = (*Publisher)(nil)
	_ caddyhttp.MiddlewareHandler = (*Publisher)(nil)
)
