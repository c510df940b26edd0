package push

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// skippedClients records the client tests that were skipped and why, so
// that TestMain can say so even without -v.
var skippedClients struct {
	sync.Mutex
	list []string
}

// skipClient skips t, noting the reason for the summary.
func skipClient(t *testing.T, reason string) {
	t.Helper()
	skippedClients.Lock()
	skippedClients.list = append(skippedClients.list, t.Name()+": "+reason)
	skippedClients.Unlock()
	t.Skip(reason)
}

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelperPublisher())
	}
	code := m.Run()
	skippedClients.Lock()
	list := skippedClients.list
	skippedClients.Unlock()
	if len(list) > 0 {
		sort.Strings(list)
		w := goCommandStderr()
		fmt.Fprintf(w, "caddy-push: %d client test(s) skipped (set PUSH_REQUIRE_NODE=1 to make this an error):\n", len(list))
		for _, l := range list {
			fmt.Fprintf(w, "  SKIP %s\n", l)
		}
	}
	os.Exit(code)
}

// goCommandStderr returns where a note reaches the person running the
// tests. In package list mode (go test ./...), go test shows nothing a
// passing test binary prints but its "ok" line; the go command's own
// stderr, the binary's parent's, is not captured. Elsewhere, or if it
// cannot be opened, the binary's stderr.
func goCommandStderr() io.Writer {
	ppid := os.Getppid()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", ppid))
	if err != nil || filepath.Base(exe) != "go" {
		return os.Stderr
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/2", ppid), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return os.Stderr
	}
	return f
}

// helperEnv makes the test binary act as an application in a process of
// its own that publishes over HTTP: PUSH_HELPER_URL is where it POSTs
// PUSH_HELPER_BODY, with Authorization PUSH_HELPER_AUTH if set. It prints
// the status and the body of the answer.
const helperEnv = "PUSH_HELPER_PUBLISH"

func runHelperPublisher() int {
	req, err := http.NewRequest(http.MethodPost, os.Getenv("PUSH_HELPER_URL"), strings.NewReader(os.Getenv("PUSH_HELPER_BODY")))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if auth := os.Getenv("PUSH_HELPER_AUTH"); auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %s", resp.StatusCode, body)
	return 0
}
