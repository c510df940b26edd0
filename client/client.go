// Package client holds push.js, the browser client of caddy-push, and its
// TypeScript types, embedded so that the push_client handler can serve
// them.
package client

import (
	_ "embed"
)

// JS is push.js, an ES module.
//
//go:embed push.js
var JS []byte

// Types is push.d.ts, the TypeScript declarations of push.js.
//
//go:embed push.d.ts
var Types []byte
