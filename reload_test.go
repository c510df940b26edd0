package push

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestDialAfterReload dials the site and the admin endpoint on a fresh
// connection right after each of many reloads: every one reaches the new
// config, none is reset or answered by the old one.
func TestDialAfterReload(t *testing.T) {
	tc := startCaddy(t, "", `respond "config 0"`)
	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
	get := func(url string) (string, error) {
		resp, err := client.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	for i := 1; i <= 30; i++ {
		want := fmt.Sprintf("config %d", i)
		if err := tc.load("", fmt.Sprintf("respond %q", want)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		if body, err := get(tc.url("/")); err != nil || body != want {
			t.Fatalf("reload %d: site answered %q, %v; want %q", i, body, err, want)
		}
		if _, err := get("http://" + tc.admin + "/config/"); err != nil {
			t.Fatalf("reload %d: admin: %v", i, err)
		}
	}
}
