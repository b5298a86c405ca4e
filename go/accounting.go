package datacat

import (
	"fmt"
	"io"
	"os"
	"sync"
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

// reported is what reportUndelivered has written about so far.
var reported struct {
	sync.Mutex
	dropped, failed, invalid int64
}

// reportUndelivered writes one line about the calls not delivered since the last line, if
// there were any (each Close reports what is new, not the whole process again).
func reportUndelivered(w io.Writer) {
	reported.Lock()
	defer reported.Unlock()
	dropped, failed, invalid := Undelivered()
	newDropped, newFailed, newInvalid := dropped-reported.dropped, failed-reported.failed, invalid-reported.invalid
	reported.dropped, reported.failed, reported.invalid = dropped, failed, invalid
	if total := newDropped + newFailed + newInvalid; total > 0 {
		fmt.Fprintf(w, "datacat: %d call(s) were not delivered (dropped %d, failed %d, invalid %d)\n",
			total, newDropped, newFailed, newInvalid)
	}
}

var stderr io.Writer = os.Stderr
