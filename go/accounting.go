package datacat

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
)

// Calls of this process that were not delivered, for the one line Close writes to stderr:
// monitoring that loses data without a word is worse than none.
var undelivered struct {
	dropped, failed, invalid atomic.Int64
}

// Undelivered is how many calls of this process were not delivered so far: dropped (an
// async buffer was full), failed (lost in transport, or not sendable: the session had
// ended, was never registered, or its deadline passed) and invalid (refused as invalid).
func Undelivered() (dropped, failed, invalid int64) {
	return undelivered.dropped.Load(), undelivered.failed.Load(), undelivered.invalid.Load()
}

// reportUndelivered writes one line about the calls not delivered, if there were any.
func reportUndelivered(w io.Writer) {
	dropped, failed, invalid := Undelivered()
	if total := dropped + failed + invalid; total > 0 {
		fmt.Fprintf(w, "datacat: %d call(s) of this process were not delivered (dropped %d, failed %d, invalid %d)\n",
			total, dropped, failed, invalid)
	}
}

var stderr io.Writer = os.Stderr
