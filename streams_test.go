package push

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-push/push/hub"
)

// TestSlowCutsLoggedAtWarnSampled checks how the end of a stream is
// logged: at DEBUG with what it sent, but at WARN for a subscriber cut
// for being slow, at most slowWarnings lines a second, the next line
// counting those left out.
func TestSlowCutsLoggedAtWarnSampled(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	logger := zap.New(core)
	var s streamSet
	info := streamInfo{remote: "127.0.0.1:1", uri: "/e/", topics: []string{"news"}, begun: time.Now()}

	s.ended(logger, "event stream ended", info, 100, 3, errClientGone)
	for range 3 * slowWarnings {
		s.ended(logger, "event stream ended", info, 10, 1, hub.ErrSlow)
	}
	warns := logs.FilterLevelExact(zapcore.WarnLevel).All()
	debugs := logs.FilterLevelExact(zapcore.DebugLevel).All()
	if len(warns) != slowWarnings || len(debugs) != 1+2*slowWarnings {
		t.Fatalf("%d WARN and %d DEBUG lines, want %d and %d", len(warns), len(debugs), slowWarnings, 1+2*slowWarnings)
	}
	first := debugs[0].ContextMap()
	if first["bytes"] != int64(100) || first["messages"] != int64(3) || first["reason"] != errClientGone.Error() || first["uri"] != "/e/" {
		t.Fatalf("end logged as %v", first)
	}
	if _, ok := first["duration"]; !ok {
		t.Fatalf("end logged without duration: %v", first)
	}

	// A second later, the next cut is logged with the count of those that
	// were not.
	s.mu.Lock()
	s.slowWindow = s.slowWindow.Add(-time.Second)
	s.mu.Unlock()
	logs.TakeAll()
	s.ended(logger, "event stream ended", info, 10, 1, hub.ErrSlow)
	warns = logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warns) != 1 || warns[0].ContextMap()["not_logged_since"] != int64(2*slowWarnings) {
		t.Fatalf("after a second: %v", logs.All())
	}
}
