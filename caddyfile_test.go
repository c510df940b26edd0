package push

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

func adapt(t *testing.T, caddyfile string) (string, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	return string(out), err
}

func TestCaddyfileAdapts(t *testing.T) {
	out, err := adapt(t, `{
	push {
		history 10
		history_ttl 5m
		history_max_bytes 1MiB
		buffer 32
		max_message_size 64KiB
		broker memory
	}
}
:8080 {
	push_sse /events/* news user/{http.auth.user.id} {
		subscribe chat/* 
		heartbeat 0
		retry 2s
	}
	respond "fallback"
}`)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			Push map[string]any
			HTTP struct {
				Servers map[string]struct {
					Routes []json.RawMessage
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatal(err)
	}
	p := cfg.Apps.Push
	if p["history"] != float64(10) || p["history_ttl"] != float64(300e9) || p["history_max_bytes"] != float64(1<<20) ||
		p["buffer"] != float64(32) || p["max_message_size"] != float64(64<<10) {
		t.Fatalf("push app: %v", p)
	}
	if b, _ := p["broker"].(map[string]any); b["module"] != "memory" {
		t.Fatalf("broker: %v", p["broker"])
	}
	for _, want := range []string{
		`"handler":"push_sse"`, `"topic":["news","user/{http.auth.user.id}"]`, `"subscribe":["chat/*"]`,
		`"heartbeat":0`, `"retry":2000000000`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("adapted config lacks %s:\n%s", want, out)
		}
	}
	// push_sse orders itself before respond, with no order line.
	if strings.Index(out, "push_sse") > strings.Index(out, `"static_response"`) {
		t.Errorf("push_sse not ordered before respond:\n%s", out)
	}
}

func TestCaddyfileErrorsNameFileAndLine(t *testing.T) {
	for _, c := range []struct{ name, body, want string }{
		{"unknown subdirective", ":80 {\n\tpush_sse news {\n\t\tbogus 1\n\t}\n}", "Caddyfile:3"},
		{"no topic", ":80 {\n\tpush_sse /x {\n\t\tretry 1s\n\t}\n}", "Caddyfile:"},
		{"missing argument", ":80 {\n\tpush_sse {\n\t\ttopic\n\t}\n}", "Caddyfile:3"},
		{"bad duration", ":80 {\n\tpush_sse news {\n\t\theartbeat soon\n\t}\n}", "Caddyfile:3"},
		{"bad topic", ":80 {\n\tpush_sse {\n\t\ttopic \"a b\"\n\t}\n}", "Caddyfile:"},
		{"bad pattern", ":80 {\n\tpush_sse {\n\t\tsubscribe a**\n\t}\n}", "Caddyfile:3"},
		{"unknown option", "{\n\tpush {\n\t\thistroy 5\n\t}\n}\n:80 {\n\tpush_sse news\n}", "Caddyfile:3"},
		{"bad count", "{\n\tpush {\n\t\tbuffer 0\n\t}\n}\n:80 {\n\tpush_sse news\n}", "Caddyfile:3"},
		{"bad size", "{\n\tpush {\n\t\tmax_message_size lots\n\t}\n}\n:80 {\n\tpush_sse news\n}", "Caddyfile:3"},
		{"unknown broker", "{\n\tpush {\n\t\tbroker carrier-pigeon\n\t}\n}\n:80 {\n\tpush_sse news\n}", "push.brokers.carrier-pigeon"},
		{"two push blocks", "{\n\tpush {\n\t\thistory 5\n\t}\n\tpush {\n\t\tbuffer 9\n\t}\n}\n:80 {\n\tpush_sse news\n}", "given twice"},
		{"history in a handler", ":80 {\n\tpush_sse news {\n\t\thistory 5\n\t}\n}", "history is an option of the push app: put it in the global options block"},
		{"broker in a handler", ":80 {\n\tpush_ws news {\n\t\tbroker memory\n\t}\n}", "broker is an option of the push app"},
		{"path read as matcher", ":80 {\n\tpush_sse /events/ticker\n}", "/events/ticker is read as a path matcher"},
		{"path read as matcher, ws", ":80 {\n\tpush_ws /ws/ticker\n}", "/ws/ticker is read as a path matcher"},
		{"inline topic with a dot segment", ":80 {\n\tpush_sse * chat/../x\n}", "Caddyfile:2"},
		{"topic with an invisible character", ":80 {\n\tpush_sse {\n\t\ttopic news\u200b\n\t}\n}", "Caddyfile:3"},
		{"bad publish pattern", ":80 {\n\tpush_ws {\n\t\tpublish a**\n\t}\n}", "Caddyfile:3"},
		{"bad format", ":80 {\n\tpush_ws news {\n\t\tformat xml\n\t}\n}", "Caddyfile:3"},
	} {
		_, err := adapt(t, c.body)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %s", c.name, err, c.want)
		}
	}
}

func TestJSONConfig(t *testing.T) {
	tc := startCaddy(t, "", `respond "placeholder"`)
	cfg := fmt.Sprintf(`{
	"admin": {"listen": %q, "config": {"persist": false}},
	"storage": {"module": "file_system", "root": %q},
	"apps": {
		"push": {"history": 2, "buffer": 16, "broker": {"module": "memory"}},
		"http": {"servers": {"s": {
			"listen": [%q],
			"automatic_https": {"disable": true},
			"routes": [{"handle": [{"handler": "push_sse", "topic": ["news"], "subscribe": ["x/*"], "heartbeat": "1m"}]}]
		}}}
	}
}`, tc.admin, tc.dir, tc.http)
	if err := tc.loadJSON([]byte(cfg)); err != nil {
		t.Fatal(err)
	}
	c := mustSubscribe(t, tc.url("/?topic=x/1"), nil)
	a, b := tc.publish("news", "", "1"), tc.publish("x/1", "", "2")
	for _, id := range []string{a, b} {
		if ev := c.next(t); ev.ID != id {
			t.Fatalf("got %+v, want %s", ev, id)
		}
	}
	for range 3 {
		tc.publish("news", "", "more")
	}
	if got := tc.stats()["retained"]; got != float64(3) { // 2 on news, 1 on x/1
		t.Fatalf("retained = %v, want 3 with history 2", got)
	}

	// A handler with neither topic nor subscribe is refused.
	bad := strings.Replace(cfg, `"topic": ["news"], "subscribe": ["x/*"], `, "", 1)
	if err := tc.loadJSON([]byte(bad)); err == nil || !strings.Contains(err.Error(), "no topic and no subscribe") {
		t.Fatalf("config with no topic: %v", err)
	}
}

func TestCaddyfileWebSocket(t *testing.T) {
	out, err := adapt(t, `:8080 {
	push_ws /ws/* news {
		subscribe chat/*
		publish chat/* 
		origins https://app.example.com *
		ping 10s
		format json
		max_message_size 16KiB
	}
	push_ws /raw/* {
		topic bin
		format raw
		ping 0
	}
	respond "fallback"
}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"handler":"push_ws"`, `"topic":["news"]`, `"subscribe":["chat/*"]`, `"publish":["chat/*"]`,
		`"origins":["https://app.example.com","*"]`, `"ping":10000000000`, `"format":"json"`,
		`"max_message_size":16384`, `"format":"raw"`, `"ping":0`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("adapted config lacks %s:\n%s", want, out)
		}
	}
	if strings.Index(out, "push_ws") > strings.Index(out, `"static_response"`) {
		t.Errorf("push_ws not ordered before respond:\n%s", out)
	}
	for _, c := range []struct{ name, body, want string }{
		{"unknown subdirective", ":80 {\n\tpush_ws news {\n\t\tbogus 1\n\t}\n}", "Caddyfile:3"},
		{"nothing to do", ":80 {\n\tpush_ws /x {\n\t\tping 1s\n\t}\n}", "Caddyfile:"},
		{"bad format", ":80 {\n\tpush_ws news {\n\t\tformat xml\n\t}\n}", "Caddyfile:3"},
		{"bad origin", ":80 {\n\tpush_ws news {\n\t\torigins https://*.example.com\n\t}\n}", "Caddyfile:3"},
		{"bad ping", ":80 {\n\tpush_ws news {\n\t\tping often\n\t}\n}", "Caddyfile:3"},
		{"bad size", ":80 {\n\tpush_ws news {\n\t\tmax_message_size big\n\t}\n}", "Caddyfile:3"},
		{"bad publish pattern", ":80 {\n\tpush_ws {\n\t\tpublish a**\n\t}\n}", "Caddyfile:3"},
		{"raw with publish", ":80 {\n\tpush_ws news {\n\t\tformat raw\n\t\tpublish chat/*\n\t}\n}", "Caddyfile:"},
	} {
		_, err := adapt(t, c.body)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %s", c.name, err, c.want)
		}
	}
	// A handler that only publishes is fine.
	if _, err := adapt(t, ":80 {\n\tpush_ws /pub/* {\n\t\tpublish chat/*\n\t}\n}"); err != nil {
		t.Errorf("publish-only handler: %v", err)
	}
}

func TestCaddyfileRedisBroker(t *testing.T) {
	out, err := adapt(t, `{
	push {
		broker redis {env.REDIS_URL} {
			prefix  app1:
			timeout 250ms
		}
	}
}`)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			Push struct{ Broker map[string]any }
		}
	}
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatal(err)
	}
	b := cfg.Apps.Push.Broker
	if b["module"] != "redis" || b["url"] != "{env.REDIS_URL}" || b["prefix"] != "app1:" || b["timeout"] != float64(250e6) {
		t.Fatalf("broker: %v", b)
	}
	for _, bad := range []string{
		"broker redis",
		"broker redis redis://a redis://b",
		"broker redis redis://a {\n\t\t\tprefix\n\t\t}",
		"broker redis redis://a {\n\t\t\ttimeout -1s\n\t\t}",
		"broker redis redis://a {\n\t\t\tdb 2\n\t\t}",
	} {
		if _, err := adapt(t, "{\n\tpush {\n\t\t"+bad+"\n\t}\n}"); err == nil || !strings.Contains(err.Error(), "Caddyfile:") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestRedisBrokerValidate(t *testing.T) {
	t.Setenv("PUSH_TEST_REDIS_URL", "redis://127.0.0.1:1")
	if err := (&RedisBroker{URL: "{env.PUSH_TEST_REDIS_URL}"}).Validate(); err != nil {
		t.Fatalf("env placeholder: %v", err)
	}
	for _, r := range []RedisBroker{
		{},
		{URL: "{env.PUSH_TEST_UNSET_VARIABLE}"},
		{URL: "redis://h:1?master_set=m"},
		{URL: "redis://h:1", Timeout: -1},
		{URL: "redis://h:1", Prefix: "a b"},
	} {
		if err := r.Validate(); err == nil {
			t.Errorf("%+v accepted", r)
		}
	}
}
