package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"time"
)

// publisherFlag runs pushload as the publisher of another pushload: it
// reads the Config on stdin, publishes, and writes a pubResult on stdout.
const publisherFlag = "-publisher-of-parent"

// publisherGrace is how long a publisher process has to report once
// interrupted.
const publisherGrace = 10 * time.Second

// pubResult is what a publisher process reports to its parent.
type pubResult struct {
	OK       int           `json:"ok"`
	Failed   int           `json:"failed"`
	OKSeqs   []uint64      `json:"ok_seqs"`
	Buckets  map[int]int64 `json:"buckets"` // round-trip histogram, non-empty buckets
	MaxUS    int64         `json:"max_us"`
	Priority string        `json:"priority"` // what raisePriority got
	Err      string        `json:"err,omitempty"`
}

// publishFromProcess publishes as publishAll does, from a child process
// that runs at a real-time priority where it may, and reports what
// priority it got. Its round trips then measure the server, not this
// machine: in this process the publishers share a runtime with every
// subscriber, and when reading them takes a whole core, a publisher
// waits for the runtime to look at its socket (up to 10 ms); at a normal
// priority, the child waits for the core behind the subscribers'
// readers. An application publishing to a server is held up by neither.
func publishFromProcess(ctx context.Context, cfg Config, lat *histogram, okSeqs []uint64) (ok, failed int, priority string, err error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, 0, "", err
	}
	in, err := json.Marshal(cfg)
	if err != nil {
		return 0, 0, "", err
	}
	cmd := exec.CommandContext(ctx, exe, publisherFlag)
	// When the run ends (its timeout, an interrupt), the publisher stops
	// and reports what it did, as publishAll would; if it does not
	// within publisherGrace, or cannot be interrupted, it is killed.
	cmd.Cancel = func() error {
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			return cmd.Process.Kill()
		}
		return nil
	}
	cmd.WaitDelay = publisherGrace
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stderr = os.Stderr
	out, runErr := cmd.Output()
	if runErr != nil && ctx.Err() != nil && errors.Is(runErr, ctx.Err()) {
		runErr = nil // interrupted, and it exited as it should: its report counts
	}
	var res pubResult
	if err := json.Unmarshal(out, &res); err != nil {
		if runErr == nil {
			runErr = err
		}
		return 0, 0, "", fmt.Errorf("publisher process: %w", runErr)
	}
	if res.Err != "" {
		return 0, 0, "", fmt.Errorf("publisher process: %s", res.Err)
	}
	if runErr != nil {
		return 0, 0, "", fmt.Errorf("publisher process: %w", runErr)
	}
	if len(res.OKSeqs) != len(okSeqs) {
		return 0, 0, "", fmt.Errorf("publisher process: %d sequence words, want %d", len(res.OKSeqs), len(okSeqs))
	}
	copy(okSeqs, res.OKSeqs)
	for b, n := range res.Buckets {
		if b < 0 || b >= bucketCount {
			return 0, 0, "", fmt.Errorf("publisher process: bucket %d out of range", b)
		}
		lat.counts[b].Add(n)
	}
	lat.max.Store(res.MaxUS)
	return res.OK, res.Failed, res.Priority, nil
}

// publisherMain is the main of a publisher process: an interrupt ends
// its publishing, and it reports what it did.
func publisherMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return runPublisher(ctx, os.Stdin, os.Stdout)
}

// runPublisher is the child's side of publishFromProcess.
func runPublisher(ctx context.Context, stdin io.Reader, stdout io.Writer) int {
	var cfg Config
	var res pubResult
	if err := json.NewDecoder(stdin).Decode(&cfg); err != nil {
		res.Err = "reading the configuration: " + err.Error()
	} else if err := cfg.check(); err != nil {
		res.Err = err.Error()
	} else {
		res.Priority = raisePriority()
		ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		var lat histogram
		res.OKSeqs = make([]uint64, (cfg.Messages+63)/64)
		res.OK, res.Failed = publishAll(ctx, cfg, &lat, res.OKSeqs)
		res.Buckets = map[int]int64{}
		for i := range lat.counts {
			if n := lat.counts[i].Load(); n > 0 {
				res.Buckets[i] = n
			}
		}
		res.MaxUS = lat.max.Load()
	}
	if err := json.NewEncoder(stdout).Encode(&res); err != nil {
		return 2
	}
	if res.Err != "" {
		return 2
	}
	return 0
}
