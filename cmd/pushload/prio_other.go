//go:build !linux

package main

// raisePriority is Linux only.
func raisePriority() string { return "normal" }
