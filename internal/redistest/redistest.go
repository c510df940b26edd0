//go:build unix

// Package redistest runs a real redis-server for tests, on a free
// loopback port, and stops it when the test ends.
package redistest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-push/push/internal/testcert"
	"github.com/caddy-push/push/internal/testnet"
)

// Server is a redis-server started by a test.
type Server struct {
	t    testing.TB
	path string
	dir  string
	port int
	args []string
	cmd  *exec.Cmd
	tls  bool
}

// Start runs redis-server with extra arguments (e.g. "--appendonly",
// "yes"). It skips the test if redis-server is not installed, unless
// PUSH_REQUIRE_REDIS is set.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("PUSH_REQUIRE_REDIS") != "" {
			t.Fatalf("PUSH_REQUIRE_REDIS is set but redis-server is missing: %v", err)
		}
		t.Skip("redis-server not installed (set PUSH_REQUIRE_REDIS=1 to fail instead)")
	}
	s := &Server{t: t, path: path, dir: t.TempDir(), port: testnet.FreePort(t), args: args}
	s.Restart()
	t.Cleanup(s.Kill)
	return s
}

// StartTLS runs redis-server serving TLS only, with a self-signed
// certificate for 127.0.0.1; clients are not asked for certificates.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	cert, key, _ := testcert.Write(t, t.TempDir())
	s := Start(t, "--port", "0", "--tls-port", "@PORT@", "--tls-cert-file", cert, "--tls-key-file", key,
		"--tls-ca-cert-file", cert, "--tls-auth-clients", "no")
	return s
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the redis:// (or, with TLS, rediss://) URL of the server.
func (s *Server) URL() string {
	if s.tls {
		return "rediss://" + s.Addr()
	}
	return "redis://" + s.Addr()
}

// Restart starts the server again (on the same port and directory, so
// that it finds what it persisted) after Kill; it waits until the server
// answers.
func (s *Server) Restart() {
	s.t.Helper()
	args := []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "no", "--logfile", "", "--loglevel", "warning",
	}
	for _, a := range s.args {
		if a == "@PORT@" {
			a = strconv.Itoa(s.port)
			s.tls = true
		}
		args = append(args, a)
	}
	s.cmd = exec.Command(s.path, args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.ping() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on %s did not answer within 10s", s.Addr())
}

// Kill stops the server at once (SIGKILL).
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Do sends one command and returns its reply line (first line only).
func (s *Server) Do(args ...string) string {
	s.t.Helper()
	c, err := s.dial(5 * time.Second)
	if err != nil {
		s.t.Fatalf("redis %v: %v", args, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		s.t.Fatalf("redis %v: %v", args, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		s.t.Fatalf("redis %v: %v", args, err)
	}
	return strings.TrimRight(line, "\r\n")
}

func (s *Server) ping() bool {
	c, err := s.dial(time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// Dir is where the server keeps its files.
func (s *Server) Dir() string { return s.dir }

// Pause stops the server without closing its connections (SIGSTOP), as a
// hung server or a network partition looks to clients.
func (s *Server) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume undoes Pause.
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

func (s *Server) dial(timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if s.tls {
		return tls.DialWithDialer(d, "tcp", s.Addr(), &tls.Config{InsecureSkipVerify: true})
	}
	return d.Dial("tcp", s.Addr())
}
