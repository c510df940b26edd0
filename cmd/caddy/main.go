// Command caddy is Caddy with its standard modules and caddy-push, so
// that `go run ./cmd/caddy run --config examples/Caddyfile` needs no
// xcaddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-push/push"
)

func main() {
	caddycmd.Main()
}
