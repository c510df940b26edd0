package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// tlsConfig is what every TLS connection of the run starts from: the
// system roots, or, with -insecure, any certificate at all (a throwaway
// self-signed one in a benchmark). Callers set NextProtos on a clone.
func (cfg *Config) tlsConfig() *tls.Config {
	return &tls.Config{InsecureSkipVerify: cfg.Insecure} //nolint:gosec // only when asked for with -insecure
}

// h1TLS is a TLS client config that offers HTTP/1.1 alone, so that a
// server speaking both answers in HTTP/1.1 (SSE over h1, WebSocket).
func (cfg *Config) h1TLS() *tls.Config {
	c := cfg.tlsConfig()
	c.NextProtos = []string{"http/1.1"}
	return c
}

// h2Pool hands out HTTP/2 transports: subscribers i*per .. i*per+per-1
// share transport i, hence one connection (more if the server allows
// fewer concurrent streams than per). It counts the TCP connections the
// transports open.
type h2Pool struct {
	cfg    *Config
	mu     sync.Mutex
	byConn map[int]*h2Group
	dials  atomic.Int64
}

// h2Group is the transport of one connection. Its first stream opens the
// connection; the others wait for that, or they would each dial one.
type h2Group struct {
	tr     *http.Transport
	opened chan struct{}
}

func newH2Pool(cfg *Config) *h2Pool {
	return &h2Pool{cfg: cfg, byConn: map[int]*h2Group{}}
}

// transport returns subscriber sub's transport, and whether sub is the
// first of its group (then it must call close(g.opened) once its request
// is answered, or failed).
func (p *h2Pool) transport(sub int) (g *h2Group, first bool) {
	k := sub / p.cfg.StreamsPerConn
	p.mu.Lock()
	defer p.mu.Unlock()
	if g, ok := p.byConn[k]; ok {
		return g, false
	}
	var protos http.Protocols
	protos.SetHTTP2(true) // HTTP/2 over TLS only: never fall back to HTTP/1.1
	var d net.Dialer
	tr := &http.Transport{
		TLSClientConfig:     p.cfg.tlsConfig(),
		Protocols:           &protos,
		DisableCompression:  true,
		TLSHandshakeTimeout: 30 * time.Second,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				p.dials.Add(1)
			}
			return c, err
		},
	}
	g = &h2Group{tr: tr, opened: make(chan struct{})}
	p.byConn[k] = g
	return g, true
}

// dialSSEH2 opens one SSE stream over HTTP/2.
// The first stream of group g opens its connection; call it for the
// others once g.opened is closed.
func dialSSEH2(ctx context.Context, cfg Config, g *h2Group, first bool) (io.Closer, func(func([]byte, time.Time)) error, error) {
	tr := g.tr
	if first {
		defer close(g.opened)
	}
	// The stream lives as long as the run, not the dial: only the wait
	// for the response headers is bounded.
	rctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, cfg.SubURL, nil)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range cfg.SubHeaders {
		req.Header[k] = v
	}
	t := time.AfterFunc(30*time.Second, cancel)
	resp, err := tr.RoundTrip(req)
	t.Stop()
	if err != nil {
		cancel()
		return nil, nil, err
	}
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		if resp.ProtoMajor != 2 {
			return nil, nil, fmt.Errorf("server answered %s, not HTTP/2", resp.Proto)
		}
		return nil, nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body := resp.Body
	closer := closerFunc(func() error {
		cancel()
		err := body.Close()
		tr.CloseIdleConnections()
		return err
	})
	return closer, func(f func([]byte, time.Time)) error {
		defer body.Close()
		return readSSE(bufio.NewReaderSize(body, 16<<10), f)
	}, nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// checkTLS checks the TLS and HTTP/2 options against the URLs.
func (cfg *Config) checkTLS() error {
	u, err := url.Parse(cfg.SubURL)
	if err != nil {
		return fmt.Errorf("-sub: %w", err)
	}
	secure := u.Scheme == "https" || u.Scheme == "wss"
	switch {
	case cfg.HTTP2 && (cfg.Transport != "sse" || u.Scheme != "https"):
		return errors.New("-http2 is for SSE over https:// (WebSocket is over HTTP/1.1)")
	case cfg.StreamsPerConn > 1 && !cfg.HTTP2:
		return errors.New("-streams-per-conn needs -http2")
	case cfg.Insecure && !secure && !isHTTPS(cfg.PubURL):
		return errors.New("-insecure with no https:// or wss:// URL")
	}
	return nil
}

func isHTTPS(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https"
}
