package datacat

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"
)

// newSessionID mints a time-ordered UUID (version 7: 48 bits of Unix milliseconds, then
// random bits). The client names a session itself so that creating one never waits for the
// daemon or the network (an async session registers it from its goroutine), and a
// registration retried after a lost answer names the same session instead of a second one.
func newSessionID() string {
	var raw [16]byte
	var millis [8]byte
	binary.BigEndian.PutUint64(millis[:], uint64(time.Now().UnixMilli()))
	copy(raw[:6], millis[2:])
	if _, err := rand.Read(raw[6:]); err != nil {
		// No randomness from the OS: the clock's nanoseconds still keep ids apart.
		binary.BigEndian.PutUint64(raw[8:], uint64(time.Now().UnixNano()))
	}
	raw[6] = raw[6]&0x0F | 0x70 // version 7
	raw[8] = raw[8]&0x3F | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", raw[0:4], raw[4:6], raw[6:8], raw[8:10], raw[10:16])
}
