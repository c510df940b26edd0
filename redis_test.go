package push

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-push/push/internal/redistest"
	"github.com/caddy-push/push/internal/testnet"
)

// The tests in this file run real Caddy processes (cmd/caddy, built
// once) on a real redis-server, as a deployment of several instances
// behind a load balancer does.

var (
	caddyBinOnce sync.Once
	caddyBin     string
	caddyBinErr  error
)

// buildCaddy builds cmd/caddy once per test binary, to one path per
// checkout (so that runs do not pile up binaries), replaced atomically
// (so that two runs at once do not trip over each other).
func buildCaddy(t *testing.T) string {
	t.Helper()
	caddyBinOnce.Do(func() {
		wd, err := os.Getwd()
		if err != nil {
			caddyBinErr = err
			return
		}
		sum := sha256.Sum256([]byte(wd))
		caddyBin = filepath.Join(os.TempDir(), fmt.Sprintf("caddy-push-test-%x", sum[:6]))
		tmp := fmt.Sprintf("%s.%d", caddyBin, os.Getpid())
		out, err := exec.Command("go", "build", "-o", tmp, "./cmd/caddy").CombinedOutput()
		if err == nil {
			err = os.Rename(tmp, caddyBin)
		}
		if err != nil {
			os.Remove(tmp)
			caddyBinErr = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
		}
	})
	if caddyBinErr != nil {
		t.Fatal(caddyBinErr)
	}
	return caddyBin
}

// caddyProc is a Caddy process with the Redis broker.
type caddyProc struct {
	t     *testing.T
	bin   string
	file  string
	env   []string
	http  string
	admin string
	cmd   *exec.Cmd
	out   *strings.Builder
	ready string // the admin path that answers 200 once it runs
}

const procSite = `push_sse /events/* {
		subscribe **
		heartbeat 200ms
	}
	push_ws /ws/* {
		subscribe **
		publish **
	}`

// startProc runs an instance on srv. The Redis URL reaches it through
// the environment, as {env.REDIS_URL}.
func startProc(t *testing.T, srv *redistest.Server) *caddyProc {
	t.Helper()
	dir := t.TempDir()
	p := &caddyProc{
		t:     t,
		bin:   buildCaddy(t),
		file:  filepath.Join(dir, "Caddyfile"),
		env:   append(os.Environ(), "REDIS_URL="+srv.URL(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir),
		http:  fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t)),
		admin: fmt.Sprintf("127.0.0.1:%d", testnet.FreePort(t)),
		ready: "/push/stats",
	}
	cfg := fmt.Sprintf(`{
	admin %s
	storage file_system %s
	persist_config off
	auto_https off
	skip_install_trust
	default_bind 127.0.0.1
	log {
		level ERROR
	}
	push {
		history 20000
		broker redis {env.REDIS_URL} {
			prefix  test:
			timeout 500ms
		}
	}
}

http://%s {
	%s
}
`, p.admin, dir, p.http, procSite)
	if err := os.WriteFile(p.file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p.start()
	t.Cleanup(p.kill)
	return p
}

// startFile runs a Caddyfile of the repository with env added to the
// environment; admin is its admin address.
func startFile(t *testing.T, file, admin, ready string, env ...string) *caddyProc {
	t.Helper()
	dir := t.TempDir()
	p := &caddyProc{
		t:     t,
		bin:   buildCaddy(t),
		file:  file,
		env:   append(append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir), env...),
		admin: admin,
		ready: ready,
	}
	p.start()
	t.Cleanup(p.kill)
	return p
}

func (p *caddyProc) start() {
	p.t.Helper()
	p.out = new(strings.Builder)
	p.cmd = exec.Command(p.bin, "run", "--config", p.file, "--adapter", "caddyfile")
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := adminClient.Get("http://" + p.admin + p.ready)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.kill()
	p.t.Fatalf("caddy did not start within 30s:\n%s", p.out)
}

// kill ends the process with SIGKILL, as a crash would.
func (p *caddyProc) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

func (p *caddyProc) url(path string) string { return "http://" + p.http + path }

func (p *caddyProc) adminDo(method, path, body string) (int, []byte) {
	return adminRequest(p.t, p.admin, method, path, body)
}

func (p *caddyProc) publish(topic, data string) string {
	p.t.Helper()
	status, body := p.adminDo(http.MethodPost, "/push/topics/"+topic, data)
	var resp struct{ ID string }
	if err := json.Unmarshal(body, &resp); status != http.StatusOK || err != nil || resp.ID == "" {
		p.t.Fatalf("publish to %s: %d %s", topic, status, body)
	}
	return resp.ID
}

func (p *caddyProc) stats() map[string]any {
	p.t.Helper()
	status, body := p.adminDo(http.MethodGet, "/push/stats", "")
	var st map[string]any
	if err := json.Unmarshal(body, &st); status != http.StatusOK || err != nil {
		p.t.Fatalf("stats: %d %s", status, body)
	}
	return st
}

// waitProcSubscribers waits until p counts n subscribers.
func waitProcSubscribers(t *testing.T, p *caddyProc, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.stats()["subscribers"] != float64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("subscribers = %v, want %d", p.stats()["subscribers"], n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRedisTwoInstancesOneHub(t *testing.T) {
	srv := redistest.Start(t)
	a, b := startProc(t, srv), startProc(t, srv)

	sa := mustSubscribe(t, a.url("/events/?topic=news"), nil)
	sb := mustSubscribe(t, b.url("/events/?topic=news"), nil)
	wa := mustDialWS(t, "ws://"+a.http+"/ws/?topic=news")
	wb := mustDialWS(t, "ws://"+b.http+"/ws/?topic=news")
	waitProcSubscribers(t, a, 2)
	waitProcSubscribers(t, b, 2)

	want := []string{a.publish("news", "one"), b.publish("news", "two")}
	status, body := b.adminDo(http.MethodPost, "/push/publish",
		`[{"topic":"news","data":"three"},{"topic":"other","data":"x"},{"topic":"news","data":"four"}]`)
	var batch []struct{ ID string }
	if err := json.Unmarshal(body, &batch); status != http.StatusOK || err != nil || len(batch) != 3 {
		t.Fatalf("batch: %d %s", status, body)
	}
	want = append(want, batch[0].ID, batch[2].ID)
	if seq(t, batch[1].ID) != seq(t, batch[0].ID)+1 || seq(t, batch[0].ID) != seq(t, want[1])+1 {
		t.Fatalf("IDs not consecutive: %v then %s", want, body)
	}
	datas := []string{"one", "two", "three", "four"}
	for i, id := range want {
		for _, c := range []*sseConn{sa, sb} {
			if ev := c.next(t); ev.ID != id || ev.Data != datas[i] {
				t.Fatalf("SSE got %+v, want %s %s", ev, id, datas[i])
			}
		}
		for _, c := range []*wsConn{wa, wb} {
			if f := c.message(); f.ID != id || data(f) != datas[i] {
				t.Fatalf("WS got %+v, want %s %s", f, id, datas[i])
			}
		}
	}
	// A WebSocket publish on B reaches A.
	wb.send(`{"type":"publish","topic":"news","data":"five","ref":1}`)
	ack, msg := wb.ackAndMessage()
	if ack.ID == "" || msg.ID != ack.ID {
		t.Fatalf("ack %+v, message %+v", ack, msg)
	}
	if ev := sa.next(t); ev.ID != ack.ID || ev.Data != "five" {
		t.Fatalf("A got %+v, want %s", ev, ack.ID)
	}
	want = append(want, ack.ID)

	// Resume anywhere: a cursor read on B is served by A.
	r := mustSubscribe(t, a.url("/events/?topic=news"), lastID(want[1]))
	for _, id := range want[2:] {
		if ev := r.next(t); ev.ID != id {
			t.Fatalf("resumed on A: got %s, want %s", ev.ID, id)
		}
	}

	// An instance killed with -9 and restarted has nothing in memory;
	// its subscribers resume from Redis.
	b.kill()
	missed := []string{a.publish("news", "six"), a.publish("news", "seven")}
	b.start()
	r = mustSubscribe(t, b.url("/events/?topic=news"), lastID(want[len(want)-1]))
	for _, id := range missed {
		if ev := r.next(t); ev.ID != id || ev.Event == "push.reset" {
			t.Fatalf("resumed on restarted B: got %+v, want %s", ev, id)
		}
	}
	live := b.publish("news", "eight")
	if ev := r.next(t); ev.ID != live {
		t.Fatalf("B got %s, want %s", ev.ID, live)
	}
	for _, id := range append(missed, live) {
		if ev := sa.next(t); ev.ID != id {
			t.Fatalf("A got %s, want %s", ev.ID, id)
		}
	}
	// Every instance restarted: history and epoch are in Redis.
	a.kill()
	b.kill()
	a.start()
	r = mustSubscribe(t, a.url("/events/?topic=news"), lastID(want[0]))
	for _, id := range append(want[1:], append(missed, live)...) {
		if ev := r.next(t); ev.ID != id {
			t.Fatalf("after every instance restarted: got %+v, want %s", ev, id)
		}
	}
}

func TestRedisOutageAndRestartMidRun(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	a, b := startProc(t, srv), startProc(t, srv)
	sb := mustSubscribe(t, b.url("/events/?topic=news"), nil)
	wa := mustDialWS(t, "ws://"+a.http+"/ws/?topic=news")
	waitProcSubscribers(t, a, 1)
	waitProcSubscribers(t, b, 1)
	first := a.publish("news", "before")
	if ev := sb.next(t); ev.ID != first {
		t.Fatalf("got %s, want %s", ev.ID, first)
	}
	wa.message()

	srv.Kill()
	start := time.Now()
	status, body := a.adminDo(http.MethodPost, "/push/topics/news", "lost")
	if status != http.StatusServiceUnavailable {
		t.Fatalf("publish during the outage: %d %s", status, body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("503 took %v (timeout 500ms)", d)
	}
	wa.send(`{"type":"publish","topic":"news","data":"lost too","ref":7}`)
	if f := wa.frame(); f.Type != "error" || string(f.Ref) != "7" {
		t.Fatalf("WS publish during the outage: %+v", f)
	}
	// New subscribers are accepted, live only.
	late := mustSubscribe(t, a.url("/events/?topic=news"), nil)
	time.Sleep(500 * time.Millisecond) // heartbeats go on

	srv.Restart() // with its data
	var id string
	deadline := time.Now().Add(10 * time.Second)
	for id == "" {
		if time.Now().After(deadline) {
			t.Fatal("publish still failing 10s after redis came back")
		}
		status, body := b.adminDo(http.MethodPost, "/push/topics/news", "after")
		if status == http.StatusOK {
			var resp struct{ ID string }
			_ = json.Unmarshal(body, &resp)
			id = resp.ID
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if seq(t, id) != seq(t, first)+1 {
		t.Fatalf("after the outage: %s after %s (something was published during it?)", id, first)
	}
	// The same connections, never reset, get what follows.
	for _, c := range []*sseConn{sb, late} {
		if ev := c.next(t); ev.ID != id || ev.Event == "push.reset" {
			t.Fatalf("got %+v, want %s", ev, id)
		}
	}
	if f := wa.message(); f.ID != id {
		t.Fatalf("WS got %s, want %s", f.ID, id)
	}

	// Redis restarted empty: subscribers are cut, told on resuming, and
	// a new epoch begins.
	srv.Kill()
	if err := os.RemoveAll(srv.Dir()); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(srv.Dir(), 0o700); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	sb.ended(t)
	if code := wa.closeCode(); code != 1001 {
		t.Fatalf("WS closed with %d", code)
	}
	r := mustSubscribe(t, b.url("/events/?topic=news"), lastID(id))
	if ev := r.next(t); ev.Event != "push.reset" {
		t.Fatalf("resuming after redis lost its data: %+v", ev)
	}
	next := a.publish("news", "new epoch")
	if strings.Split(next, "-")[0] == strings.Split(id, "-")[0] {
		t.Fatalf("%s after %s: same epoch", next, id)
	}
	if ev := r.next(t); ev.ID != next {
		t.Fatalf("got %s, want %s", ev.ID, next)
	}
}

func TestRedisRandomResumeOverTwoInstances(t *testing.T) {
	srv := redistest.Start(t)
	a, b := startProc(t, srv), startProc(t, srv)
	var n int
	var mu sync.Mutex
	runResumeOn(t, resumeRig{
		bases: []string{"http://" + a.http, "http://" + b.http},
		adminDo: func(method, path, body string) (int, []byte) {
			mu.Lock()
			n++
			p := []*caddyProc{a, b}[n%2]
			mu.Unlock()
			return p.adminDo(method, path, body)
		},
		stats: a.stats,
	}, 10_000, 50, 0)
}

// TestRedisExampleBehindLoadBalancer runs the README's two-instance
// example as it is written: two instances on one Redis behind a Caddy
// load balancer.
func TestRedisExampleBehindLoadBalancer(t *testing.T) {
	srv := redistest.Start(t)
	port := func() string { return fmt.Sprint(testnet.FreePort(t)) }
	env := []string{
		"REDIS_URL=" + srv.URL(),
		"A_PORT=" + port(), "A_ADMIN_PORT=" + port(),
		"B_PORT=" + port(), "B_ADMIN_PORT=" + port(),
		"LB_PORT=" + port(), "LB_ADMIN_PORT=" + port(),
	}
	get := func(name string) string {
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, name+"="); ok {
				return v
			}
		}
		panic(name)
	}
	a := startFile(t, "examples/redis/instance-a.Caddyfile", "localhost:"+get("A_ADMIN_PORT"), "/push/stats", env...)
	b := startFile(t, "examples/redis/instance-b.Caddyfile", "localhost:"+get("B_ADMIN_PORT"), "/push/stats", env...)
	startFile(t, "examples/redis/lb.Caddyfile", "localhost:"+get("LB_ADMIN_PORT"), "/config/", env...)
	url := "http://localhost:" + get("LB_PORT") + "/events/"
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", "localhost:"+get("LB_PORT"))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("load balancer not listening: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Round robin: two subscribers land on different instances.
	s1 := mustSubscribe(t, url, nil)
	s2 := mustSubscribe(t, url, nil)
	waitProcSubscribers(t, a, 1)
	waitProcSubscribers(t, b, 1)
	ids := []string{a.publish("ticker", "via A"), b.publish("ticker", "via B")}
	for _, c := range []*sseConn{s1, s2} {
		for _, id := range ids {
			if ev := c.next(t); ev.ID != id {
				t.Fatalf("got %+v, want %s", ev, id)
			}
		}
	}
	// Reconnecting through the load balancer lands on either instance,
	// and resumes there.
	s1.close()
	missed := a.publish("ticker", "while away")
	r := mustSubscribe(t, url, lastID(ids[1]))
	if ev := r.next(t); ev.ID != missed {
		t.Fatalf("resumed: got %+v, want %s", ev, missed)
	}
}

// TestRedisBrokerReload: the same broker config keeps the hub across a
// reload; another broker replaces it.
func TestRedisBrokerReload(t *testing.T) {
	srv := redistest.Start(t)
	push := func(prefix string) string {
		return fmt.Sprintf("broker redis %s {\n\t\t\tprefix %s\n\t\t}", srv.URL(), prefix)
	}
	const site = "push_sse /events/* news"
	tc := startCaddy(t, push("one:"), site)
	first := tc.publish("news", "", "1")
	epoch := tc.stats()["epoch"]
	if h, _ := tc.stats()["history"].(map[string]any); h["broker"] != "redis" || h["last_id"] != first || h["retained"] != float64(1) {
		t.Fatalf("stats history: %v", tc.stats()["history"])
	}

	if err := tc.load(push("one:"), site+"\n\trespond /other 204"); err != nil {
		t.Fatal(err)
	}
	if got := tc.stats()["epoch"]; got != epoch {
		t.Fatalf("same broker, epoch %v then %v", epoch, got)
	}
	second := tc.publish("news", "", "2")
	c := mustSubscribe(t, tc.url("/events/"), lastID(first))
	if ev := c.next(t); ev.ID != second {
		t.Fatalf("resumed after reload: got %+v, want %s", ev, second)
	}

	// Another prefix is another hub, with its own epoch.
	if err := tc.load(push("two:"), site); err != nil {
		t.Fatal(err)
	}
	if got := tc.stats()["epoch"]; got == epoch {
		t.Fatal("another prefix kept the hub")
	}
	// Back to the first: its epoch and history come from Redis.
	if err := tc.load(push("one:"), site); err != nil {
		t.Fatal(err)
	}
	if got := tc.stats()["epoch"]; got != epoch {
		t.Fatalf("back to the first prefix: epoch %v, want %v", got, epoch)
	}
	c = mustSubscribe(t, tc.url("/events/"), lastID(first))
	if ev := c.next(t); ev.ID != second {
		t.Fatalf("resumed on the first prefix again: got %+v, want %s", ev, second)
	}
	// An unreachable Redis fails the load, naming the problem; the
	// running config stays.
	srv.Kill()
	if err := tc.load(push("three:"), site); err == nil || !strings.Contains(err.Error(), "redis") {
		t.Fatalf("loading with redis down: %v", err)
	}
}

// TestRedisBrokerMetrics: every call to Redis is a broker round trip in
// the metrics, and a failed one a broker error.
func TestRedisBrokerMetrics(t *testing.T) {
	srv := redistest.Start(t)
	tc := startCaddy(t, fmt.Sprintf("broker redis %s {\n\t\t\ttimeout 500ms\n\t\t}", srv.URL()), "push_sse /events/* news")
	admin := "http://" + tc.admin + "/metrics"
	const trips, errs = `caddy_push_broker_round_trip_duration_seconds_count`, `caddy_push_broker_errors_total`
	base := scrape(t, admin)
	tc.publish("news", "", "ok")
	if got := scrape(t, admin)[trips] - base[trips]; got < 1 {
		t.Fatalf("round trips moved by %v after a publish", got)
	}
	srv.Kill()
	if status, body := tc.adminDo(http.MethodPost, "/push/topics/news", "down"); status != http.StatusServiceUnavailable {
		t.Fatalf("publish with redis down: %d %s", status, body)
	}
	if got := scrape(t, admin)[errs] - base[errs]; got < 1 {
		t.Fatalf("broker errors moved by %v after a failed publish", got)
	}
}
