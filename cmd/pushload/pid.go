package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// resolvePID reads the -pid flag: a process ID, or a listening TCP port
// written as :8080 or host:8080, whose owner is found through /proc.
func resolvePID(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	if !strings.Contains(s, ":") {
		pid, err := strconv.Atoi(s)
		if err != nil || pid <= 0 {
			return 0, fmt.Errorf("-pid %q: a process ID, or a listening port as :8080", s)
		}
		return pid, nil
	}
	_, p, err := net.SplitHostPort(s)
	port, perr := strconv.ParseUint(p, 10, 16)
	if err != nil || perr != nil || port == 0 {
		return 0, fmt.Errorf("-pid %q: a process ID, or a listening port as :8080", s)
	}
	return listenerPID(uint16(port))
}

// listenerPID finds the process with a TCP socket listening on port.
func listenerPID(port uint16) (int, error) {
	inodes := make(map[string]bool)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if err := listeningInodes(f, port, inodes); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no process listens on TCP port %d", port)
	}
	procs, err := filepath.Glob("/proc/[0-9]*/fd")
	if err != nil {
		return 0, err
	}
	for _, dir := range procs {
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
				return strconv.Atoi(filepath.Base(filepath.Dir(dir)))
			}
		}
	}
	return 0, fmt.Errorf("TCP port %d is listened on by a process this user cannot see", port)
}

// listeningInodes adds the inodes of the sockets listening on port, from
// one of the /proc/net/tcp tables.
func listeningInodes(path string, port uint16, inodes map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" { // 0A: LISTEN
			continue
		}
		if strings.HasSuffix(fields[1], want) {
			inodes[fields[9]] = true
		}
	}
	return sc.Err()
}
